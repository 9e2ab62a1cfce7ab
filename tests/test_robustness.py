"""Input-side attacks on the eraser: the documented image changes, and the report on the shipped model."""
import numpy as np
import pytest
import torch
from PIL import Image

from core.activations import Prompt, collect
from core.evaluation import Query
from core.robustness import (FIRST_TURN, IMAGE_ATTACKS, INJECTION, ROLE_PLAY, RobustnessConfig, attack_report,
                             benign_prefix, budget_curve, cloze_queries, follow_up, format_curve, gate_of,
                             prefill_for)


def _grey(size=64, value=128):
    return Image.new("RGB", (size, size), (value, value, value))


def _arr(im):
    return np.asarray(im, dtype=np.float64) / 255


def test_image_attacks_are_the_documented_changes():
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    grey = _grey()
    noisy = _arr(IMAGE_ATTACKS["noise 0.02"](grey, rng()))
    assert abs(noisy.std() - 0.02) < 0.002 and abs(noisy.mean() - 128 / 255) < 0.002
    assert _arr(IMAGE_ATTACKS["brightness x0.85"](grey, rng())).mean() == pytest.approx(0.85 * 128 / 255, abs=0.005)
    occluded = _arr(IMAGE_ATTACKS["occlusion 18%"](_grey(value=255), rng()))
    assert (occluded[..., 0] < 0.6).mean() == pytest.approx(0.18, abs=0.02)
    stripes = Image.fromarray(((np.indices((64, 64))[1] % 2) * 255).astype(np.uint8)).convert("RGB")
    assert _arr(IMAGE_ATTACKS["blur r2"](stripes, rng())).std() < 0.1 * _arr(stripes).std()
    for name, fn in IMAGE_ATTACKS.items():
        out = fn(stripes, rng())
        assert out.size == stripes.size, name
        assert np.array_equal(_arr(out), _arr(fn(stripes, rng()))), name  # seeded


def test_benign_prefix_puts_facts_before_the_question():
    add = benign_prefix([("How many sides does a square have?", "four")])
    assert add("Who is this?") == "How many sides does a square have? four. Who is this?"


def test_prefill_is_the_answer_sentence_start_or_the_cloze_up_to_its_blank():
    q = Query(Prompt("This person's job is [Blank].\nPlease fill it."), "cloze", "image_text", "baker",
              attribute="occupation")
    assert prefill_for(q) == "This person works as"
    q.attribute = None  # a real MLLMU row: no attribute known
    assert prefill_for(q) == "This person's job is"


@pytest.fixture(scope="module")
def shipped():
    from core.eraser import Eraser
    from core.models.load import load_adapter
    from core.toyworld.train import eval_splits, load_world
    torch.set_num_threads(2)
    adapter = load_adapter("assets/toy-llava")
    return adapter, Eraser.from_pretrained("assets/toy-llava-eraser", adapter=adapter), \
        eval_splits(load_world("assets/toy-llava"))


def test_text_attacks_are_in_the_toy_vocabulary(shipped):
    """An attack template of unknown words would reach the model as <unk> tokens and test nothing."""
    tok = shipped[0].tokenizer
    for text in (INJECTION, ROLE_PLAY):
        ids = tok(text, add_special_tokens=False).input_ids
        assert len(ids) > 10 and tok.unk_token_id not in ids, text


def test_gate_of_matches_the_eraser_and_is_differentiable(shipped):
    from core.activations import encode_prompts
    adapter, eraser, splits = shipped
    qs = cloze_queries(splits["forget"][:1], "forget")
    batch = encode_prompts(adapter, [q.prompt for q in qs])
    pixels = batch.inputs["pixel_values"].requires_grad_(True)
    g = gate_of(adapter, eraser, batch, [2, 3])
    want = eraser.gate_values(adapter, [q.prompt for q in qs])[:, [2, 3]].mean(-1)
    assert torch.allclose(g.double(), want, atol=1e-3)
    (grad,) = torch.autograd.grad(g.sum(), pixels)
    assert grad.abs().sum() > 0


def test_the_attack_targets_a_joint_gate_whole(shipped):
    """Against an eraser with a joint gate over layers 2 and 3 the attacker's gate is that gate
    (per person: the parts summed, then the largest person), not the mean of its parts."""
    from dataclasses import replace
    from core.activations import encode_prompts
    from core.eraser import Eraser
    adapter, eraser, splits = shipped
    joint = Eraser(eraser.direction, eraser.gate, replace(eraser.config, gate_layer=None, joint_gate=[2, 3]),
                   joint=eraser.gate[[2, 3]])
    prompts = [q.prompt for q in cloze_queries(splits["forget"][:1], "forget")]
    g = gate_of(adapter, joint, encode_prompts(adapter, prompts), joint.gate_layers)
    H = collect(adapter, prompts, [2, 3], position="mean").double()
    want = (H[:, 0] @ eraser.gate[2].T + H[:, 1] @ eraser.gate[3].T).amax(-1)
    assert torch.allclose(g.double(), want, atol=1e-3)
    assert torch.allclose(joint.decision_gates(adapter, prompts), want, atol=1e-5)
    assert not torch.allclose(want, gate_of(adapter, eraser, encode_prompts(adapter, prompts), [2, 3]).double(),
                              atol=1e-2)


def test_report_on_the_shipped_eraser(shipped):
    """Two people each side, a short adaptive attack: the clean row reproduces the memorisation,
    the eraser's effect and its selectivity; the adaptive PGD lowers the forget gate."""
    adapter, eraser, splits = shipped
    rows = attack_report(adapter, eraser, splits["forget"][:2], splits["retain"][:2],
                         [("How many sides does a square have?", "four")], RobustnessConfig(steps=8))
    assert [r["attack"] for r in rows][:1] + [r["attack"] for r in rows][-6:] == [
        "none", "benign prefix (1 facts)", "instruction injection", "role-play", "answer prefilling",
        f'multi-turn ("{FIRST_TURN}" first)', "adaptive PGD on the gate (eps 16/255, 8 steps)"]
    clean = rows[0]
    assert clean["forget_vanilla"] == 1.0 and clean["retain_vanilla"] == 1.0
    # the shipped eraser changes 1 of these 14 retain answers (the full report: 1 of 70, 98.6% kept)
    assert clean["forget_erased"] < 1.0 and clean["retain_erased"] >= 13 / 14 - 1e-3
    adaptive = rows[-1]
    assert adaptive["forget_gate"] < clean["forget_gate"] - 0.1
    assert clean["forget_gate"] > clean["retain_gate"]  # the gate fires more on forget inputs
    for r in rows:
        assert all(0.0 <= r[k] <= 1.0 for k in ("forget_erased", "forget_vanilla", "retain_erased", "retain_vanilla"))
    # every attack reaches the model: its inputs, and so the gate read on them, differ from the clean ones
    # (an attack never applied, or two text attacks bound to one text, would repeat a row's gate)
    gates = [round(r["forget_gate"], 6) for r in rows]
    assert all(g != gates[0] for g in gates[1:]) and len(set(gates)) == len(gates)


def test_follow_up_answers_who_first_with_the_models_own_reply(shipped):
    """The first turn is the model's own reply under the same condition, so the eraser's
    refusal (or answer) is in the history the follow-up is asked after."""
    from core.evaluation import replies
    adapter, eraser, splits = shipped
    qs = cloze_queries(splits["forget"][:1], "forget")[:3]
    cfg = RobustnessConfig()
    firsts = []
    for steering in (None, lambda: eraser.apply(adapter)):
        first = replies(adapter, [Prompt(FIRST_TURN, qs[0].prompt.image)], cfg.max_new_tokens, steering=steering)[0]
        out = follow_up(adapter, qs, steering, cfg)
        assert [q.prompt.history for q in out] == [((FIRST_TURN, first),)] * 3
        assert [q.prompt.question for q in out] == [q.prompt.question for q in qs]
        assert all(q.prompt.image is p.prompt.image and q.attribute == p.attribute for q, p in zip(out, qs))
        firsts.append(first)
    assert splits["forget"][0].name in firsts[0]  # the vanilla model names the forget person


def test_budget_curve_attacks_the_eraser_it_is_given(shipped):
    """The adaptive attack lowers the gate of the eraser it is handed, not a stale copy: against
    an eraser whose gate is the shipped one negated, the same attack must lower THAT gate (and so
    raise the shipped one). A larger budget lowers the forget gate more."""
    from core.eraser import Eraser
    adapter, eraser, splits = shipped
    forget, retain = splits["forget"][:1], splits["retain"][:1]
    budgets = [(1 / 255, 4, 1), (16 / 255, 4, 1)]  # EOT: tests/test_pgd.py and the CLI test
    rows = budget_curve(adapter, eraser, forget, retain, budgets, RobustnessConfig(step_size=4 / 255))
    assert [(r["eps"], r["steps"], r["eot"]) for r in rows] == [(1, 4, 1), (16, 4, 1)]
    assert rows[1]["forget_gate"] < rows[0]["forget_gate"] - 0.05
    for r in rows:
        assert all(0.0 <= r[k] <= 1.0 for k in ("forget_erased", "forget_rephrased", "retain_erased"))
    flipped = Eraser(eraser.direction, -eraser.gate, eraser.config, eraser.diagnostics,
                     joint=None if eraser.joint is None else -eraser.joint)
    prompts = [q.prompt for q in cloze_queries(forget, "forget")]
    clean = flipped.decision_gates(adapter, prompts).mean().item()
    against = budget_curve(adapter, flipped, forget, retain, [(16 / 255, 6, 1)], RobustnessConfig(step_size=4 / 255))[0]
    # a stale (shipped) gate would have been pushed down, and its negation up
    assert 0 < clean and against["forget_gate"] < 0.7 * clean
    assert "| eps (/255) | steps | EOT |" in format_curve(rows)
    # stopped (Stop, or the app's time limit) part-way through PGD: an error, never a row that scores
    # half-attacked images under the full budget's label (it used to return one)
    steps = []
    with pytest.raises(InterruptedError, match="adaptive attack stopped"):
        budget_curve(adapter, eraser, forget, retain, [(16 / 255, 40, 1)], RobustnessConfig(step_size=4 / 255),
                     should_stop=lambda: steps.append(1) or len(steps) > 4)
    assert len(steps) < 10  # it stopped soon after, not at the 40th step


def test_the_report_steers_as_the_eraser_is_deployed_on_cloze_questions(shipped):
    """An eraser with a per-task cloze strength was attacked and scored at its default strength:
    the report measured another eraser than `evaluate` does. At a cloze strength of 0 the clean
    forget answers come back, as they do in the evaluation."""
    import copy
    from core.robustness import cloze_steering
    adapter, eraser, splits = shipped
    quiet = copy.deepcopy(eraser)
    quiet.config.task_strengths = {"cloze": 0.0}
    with cloze_steering(adapter, quiet)() as h:
        assert set(h.config.strengths) == {0.0}
    with cloze_steering(adapter, eraser)() as h:
        assert max(h.config.strengths) == eraser.config.strength
    row = budget_curve(adapter, quiet, splits["forget"][:1], splits["retain"][:1], [(1 / 255, 1, 1)],
                       RobustnessConfig(step_size=1 / 255))[0]
    assert row["forget_erased"] == 1.0


def test_fractional_budgets_keep_their_value_in_labels_and_rows():
    from core.robustness import eps_255
    assert [eps_255(e / 255) for e in (16, 0.5, 4.5, 16.4)] == [16, 0.5, 4.5, 16.4]
    assert isinstance(eps_255(16 / 255), int)


def test_the_built_in_prefix_facts_are_those_the_tokenizer_spells(shipped):
    """On a model without a world and without a real split, the benign prefix was the built-in
    facts in words the toy tokenizer does not know: the row measured a prefix of <unk> tokens."""
    from core.data.records import PersonRecord
    from core.data.source import ForgetData
    from core.data.wordings import unknown_words
    from core.robustness import BUILT_IN_FACTS, prefix_facts
    tok = shipped[0].tokenizer
    data = ForgetData([PersonRecord("x", name="Ann Lee")])
    spelled = prefix_facts(data, 4, tok)
    assert all(not unknown_words(tok, f"{q} {a}") for q, a in spelled)
    assert len(spelled) < len(BUILT_IN_FACTS)  # the toy vocabulary lacks some of their words
    assert prefix_facts(data, 4) == list(BUILT_IN_FACTS)  # no tokenizer given: all of them
