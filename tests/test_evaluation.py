"""MLLMU metric definitions and the evaluation runner."""
import pytest
import torch

from conftest import tiny_adapter
from core.activations import Prompt
from core.toyworld.questions import PERSON_TEMPLATES
from core.evaluation import (EvalConfig, Query, answer, evaluate, format_table, is_refusal, mean_score, record_queries,
                             replies, rouge_l, score, summarise)
from core.toyworld.world import WorldConfig, make_world


def _q(task, target, reply, modality="image_text"):
    q = Query(Prompt("q"), task, modality, target)
    q.reply = reply
    return q


def test_classification_is_first_alphanumeric_letter():
    assert score(_q("classification", "B", "b) because")) == 1.0
    assert score(_q("classification", "B", "  **B**")) == 1.0
    assert score(_q("classification", "B", "A")) == 0.0
    assert score(_q("classification", "B", "")) == 0.0


def test_generation_is_stemmed_rouge_l_f1():
    assert rouge_l("This person works as a baker.", "This person works as a baker.") == pytest.approx(1.0)
    # stemming: "works"/"working" match
    assert rouge_l("she works daily", "she working daily") == pytest.approx(1.0)
    # LCS 2 of 4 vs 2: P=1, R=0.5 -> F1 = 2/3
    assert rouge_l("a b c d", "a b") == pytest.approx(2 / 3)


def test_cloze_is_case_insensitive_substring_and_refusals_detected():
    assert score(_q("cloze", "Lisbon", "born in lisbon.")) == 1.0
    assert score(_q("cloze", "Lisbon", "Porto")) == 0.0
    assert is_refusal("I am sorry, I cannot share private information about this person.")
    assert is_refusal("I can't help with that")
    # typographic apostrophes, as real chat models often write them
    assert is_refusal("I can\u2019t help with that") and is_refusal("I won\u2019t answer.")
    assert not is_refusal("This person works as a baker.")
    for reply in ("I don't know.", "I do not know this person.", "I apologize, but I must decline.",
                  "I\u2019m afraid I have no information about them.", "I refuse to answer."):
        assert is_refusal(reply), reply
    for reply in ("The decline of the empire began in 1870.", "I don't know him personally, but he is a chef.",
                   "I'm afraid he works as a chef.", "I do not know his age, but he lives in Prague."):
        assert not is_refusal(reply), reply  # answers that merely open like a refusal


def test_a_question_with_a_blank_answer_is_refused_not_scored():
    """A blank cloze answer is contained in every reply (a refusal scored 1.0) and a blank letter
    matches none (scored 0, read as forgetting)."""
    for task in ("cloze", "classification"):
        with pytest.raises(ValueError, match=f"the {task} question .* has no answer"):
            score(_q(task, " ", "I am sorry."))


def test_record_queries_cover_every_item_with_its_modality():
    world = make_world(WorldConfig(seed=0, n_people=12, n_real_scenes=2))
    rec = world.eval_items("test_10")[0]
    qs = record_queries(rec, "test")
    n = len(rec.classification_image) + len(rec.classification_text) + len(rec.generation) + len(rec.mask)
    assert len(qs) == n
    assert all((q.prompt.image is None) == (q.modality == "text_only") for q in qs)
    # test rows have several new renders; image questions rotate through them
    used = {id(q.prompt.image) for q in qs if q.prompt.image is not None}
    assert len(used) == min(len(rec.images), len(rec.classification_image))
    # each query says which attribute it asks about (the prefilling attack needs it)
    assert [q.attribute for q in qs if q.task == "cloze"] == [it.attribute for it in rec.mask]
    assert {q.attribute for q in qs} <= set(PERSON_TEMPLATES)


def test_summarise_averages_per_task_and_modality():
    qs = [_q("classification", "A", "A"), _q("classification", "A", "B"), _q("cloze", "x", "x"),
          _q("generation", "a b", "a b"), _q("cloze", "Paris", "sorry, I cannot", "text_only")]
    for q in qs:
        q.score = score(q)
    s = summarise(qs)
    assert s["image_text"]["classification"] == 0.5 and s["image_text"]["cloze"] == 1.0
    assert s["image_text"]["generation_rougeL"] == 1.0 and s["image_text"]["refusal_rate"] == 0.0
    assert s["text_only"] == {"classification": None, "generation_rougeL": None, "cloze": 0.0,
                              "refusal_rate": 1.0, "fluency": 1.0, "n": 1}


def test_evaluate_runs_every_split_and_writes_the_documented_shape():
    world = make_world(WorldConfig(seed=0, n_people=12, n_real_scenes=2))
    a = tiny_adapter("llava")
    splits = {"forget": world.eval_items("forget_10")[:1], "real": world.eval_items("real")[:1]}
    refusals = {"forget": [Prompt("tell me the home address of this person", None)]}
    res = evaluate(a, splits, refusals, EvalConfig(max_new_tokens=3))
    js = res.to_json()
    assert set(js) >= {"model", "eraser", "splits"}
    assert set(js["splits"]["forget"]) == {"image_text", "text_only"}
    row = js["splits"]["forget"]["image_text"]
    assert set(row) == {"classification", "generation_rougeL", "cloze", "refusal_rate", "fluency", "n"}
    assert all(0.0 <= v <= 1.0 for k, v in row.items() if k != "n" and v is not None)
    said = replies(a, refusals["forget"], max_new_tokens=3)  # the rate is the share of these that decline
    assert js["refusal_prompts"]["forget"] == sum(map(is_refusal, said)) / len(said)
    assert "| forget | image_text |" in format_table(res)
    with pytest.raises(InterruptedError):
        evaluate(a, splits, None, EvalConfig(max_new_tokens=2), should_stop=lambda: True)


def test_mean_score_answers_and_averages_with_the_metric():
    """Targets are chosen from the model's own greedy replies: 2 of 3 must count as recovered."""
    a = tiny_adapter("llava")
    prompts = [Prompt(q) for q in ("what is this ?", "is it red ?", "how many ?")]
    said = replies(a, prompts, max_new_tokens=4)
    targets = [said[0].split()[0] if said[0].split() else said[0], said[1].upper(), "zzzz-never-said"]
    queries = [Query(p, "cloze", "text_only", t) for p, t in zip(prompts, targets)]
    assert mean_score(a, queries, max_new_tokens=4) == pytest.approx(2 / 3, abs=1e-4)
    assert [q.reply for q in queries] == said and [q.score for q in queries] == [1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="no questions"):
        mean_score(a, [])


def test_fluency_flags_degenerate_text():
    from core.evaluation import is_fluent
    assert is_fluent("This person works as a baker.")
    assert is_fluent("B")
    assert not is_fluent("")
    assert not is_fluent("the the the the cat")
    assert not is_fluent("? ? , . ; : ! ?")
    assert not is_fluent("word " * 80)


def test_answer_steers_each_task_with_its_own_factory():
    """A task -> factory mapping (per-task strengths): every query is answered inside its task's
    context, the replies equal the unsteered ones (the factories steer nothing), progress runs to the end."""
    from contextlib import contextmanager
    a = tiny_adapter("llava")
    tasks = ["cloze", "classification", "cloze", "generation", "classification"]
    queries = [Query(Prompt(f"question {i} ?"), t, "text_only", "x") for i, t in enumerate(tasks)]
    entered = []

    def factory(task):
        @contextmanager
        def ctx():
            entered.append(task)
            yield
        return ctx

    seen = []
    answer(a, queries, EvalConfig(max_new_tokens=3), {t: factory(t) for t in ("classification", "generation", "cloze")},
           progress=lambda d, t: seen.append((d, t)))
    assert sorted(set(entered)) == ["classification", "cloze", "generation"]
    assert seen[-1] == (5, 5) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert [q.reply for q in queries] == replies(a, [q.prompt for q in queries], max_new_tokens=3)
    # factories that steer, each its own way: every reply is its own task's (a query routed to another
    # task's factory would be answered under the wrong steering)
    from core.steering import add_vector
    push = {t: torch.randn(a.hidden_size, generator=torch.Generator().manual_seed(k)) * 8
            for k, t in enumerate(("classification", "generation", "cloze"))}
    steering = {t: (lambda v=v: add_vector(a, v, 1.0)) for t, v in push.items()}
    answer(a, queries, EvalConfig(max_new_tokens=3), steering)
    own = [replies(a, [q.prompt], max_new_tokens=3, steering=steering[q.task])[0] for q in queries]
    other = [replies(a, [q.prompt], max_new_tokens=3, steering=steering["generation" if q.task != "generation"
                                                                            else "cloze"])[0] for q in queries]
    assert [q.reply for q in queries] == own and own != other
    with pytest.raises(KeyError):
        answer(a, queries, EvalConfig(max_new_tokens=3), {"cloze": factory("cloze")})


@pytest.mark.parametrize("kw", [dict(batch_size=0), dict(batch_size=-1), dict(max_new_tokens=0),
                                dict(modalities=("image-text",)), dict(modalities=())])
def test_an_evaluation_config_that_would_score_nothing_is_refused(kw):
    """batch_size -1 generated no reply at all: every score 0, read on a forget split as complete
    forgetting; a misspelt modality scored no question."""
    from core.evaluation import EvalConfig
    with pytest.raises(ValueError, match="at least 1|modalities are"):
        EvalConfig(**kw)


def test_an_empty_split_or_refusal_set_is_refused_not_reported_as_zero():
    from core.evaluation import evaluate
    with pytest.raises(ValueError, match="nothing to evaluate in 'forget'"):
        evaluate(None, {"forget": []})
    with pytest.raises(ValueError, match="nothing to evaluate in 'retain'"):
        evaluate(None, {}, {"retain": []})
