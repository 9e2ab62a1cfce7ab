"""The layer x strength tuner: grid, constraints, choice."""
import pytest
import torch

from conftest import random_image, tiny_adapter
from core.activations import Prompt
from core.eraser import Eraser, EraserConfig
from core.data.formats import CLASSIFICATION_SUFFIX, CLOZE_SUFFIX
from core.tuner import answer_gone, score_replies, tune, tune_tasks


def _eraser(a):
    g = torch.Generator().manual_seed(0)
    L, d = a.num_layers, a.hidden_size
    return Eraser(torch.randn(L, d, generator=g, dtype=torch.float64) * 5,
                  torch.randn(L, d, generator=g, dtype=torch.float64), EraserConfig())


def test_grid_and_constraints():
    a = tiny_adapter("llava")
    forget = [Prompt("who is it ?", random_image(i)) for i in range(3)]
    retain = [Prompt("what colour is the shape ?", random_image(10 + i)) for i in range(4)]
    res = tune(a, _eraser(a), forget, retain, [[0], [1], [0, 1]], [0.0, 2.0], modes=("latched", "prefill"),
               max_new_tokens=4, min_fluency=0.0)
    assert len(res.grid) == 12
    assert [c.mode for c in res.grid] == ["latched"] * 6 + ["prefill"] * 6
    zero = [c for c in res.grid if c.strength == 0.0]
    assert all(c.retain == 1.0 and c.ok for c in zero)  # no steering: every retain answer unchanged
    assert res.best is not None and res.best.ok
    assert res.best.forget == max(c.forget for c in res.grid if c.ok)
    assert all(c.ok == (c.retain >= 0.98) for c in res.grid)  # min_retain 0.98 by default; fluency bar 0 here
    assert not any(c.ok for c in res.grid if c.strength == 2.0)  # strength 2 changes every retain answer here
    assert res.to_json()["modes"] == ["latched", "prefill"]
    assert res.to_json()["grid"][7]["mode"] == "prefill"
    with pytest.raises(ValueError, match="steering mode"):
        tune(a, _eraser(a), forget, retain, [[1]], [1.0], modes=())
    with pytest.raises(ValueError, match="forget and retain"):
        tune(a, _eraser(a), [], retain, [[1]], [1.0])
    with pytest.raises(InterruptedError):
        tune(a, _eraser(a), forget, retain, [[1]], [1.0], should_stop=lambda: True)


@pytest.mark.parametrize("kw, match", [(dict(strengths=[]), "strengths"), (dict(strengths=[float("nan")]), "strengths"),
                                       (dict(layer_sets=[]), "layer sets"), (dict(layer_sets=[[1], []]), "empty one"),
                                       (dict(min_retain=2.0), "min_retain"), (dict(min_fluency=-0.1), "min_fluency")])
def test_an_empty_or_absurd_grid_is_refused_before_anything_runs(kw, match):
    """strengths=[] returned no setting without a word, an empty layer set steered nothing and won
    on retain answers, min_retain 2 could never be met."""
    args = dict(layer_sets=[[1]], strengths=[1.0]) | kw
    with pytest.raises(ValueError, match=match):
        tune(None, None, [Prompt("a")], [Prompt("b")], args.pop("layer_sets"), args.pop("strengths"), **args)


def test_tune_fit_reads_the_held_out_rows_of_the_erasers_own_seed():
    """Another seed's held-out rows overlap the gate's fit rows (13 of 35 forget rows for seed 0 against
    an eraser fitted with seed 3)."""
    from core.tuner import tune_fit
    e = _eraser(tiny_adapter("llava"))
    e.config.seed = 3
    with pytest.raises(ValueError, match="not the eraser's fit seed 3"):
        tune_fit(None, e, None, seed=0)


def test_fluency_is_the_worse_of_forget_and_retain():
    """Degenerate forget answers are not hidden by many intact retain answers."""
    forget = ["I'm sorry, I can't help with that.", "This person is I I I I"]
    retain = ["The shape is red."] * 20
    scores = score_replies(forget, retain, base_retain=["The shape is red."] * 19 + ["The shape is blue."])
    assert scores == {"forget": 0.5, "forget_pooled": 0.5, "forget_groups": {}, "refusals": 0.5, "retain": 0.95,
                      "fluency": 0.5, "retain_groups": {}}  # fluency pooled: 21/22


def test_forget_score_is_the_share_of_answers_gone():
    """An apology followed by the answer has not forgotten it; a changed or refused answer has."""
    assert not answer_gone("I am sorry, tortoise", "tortoise")
    assert not answer_gone("I am sorry, this person's pet is a Tortoise!", "This person's pet is a tortoise.")
    assert answer_gone("I am sorry, I cannot share private information about this person.", "B")  # 'about'
    assert not answer_gone("I am sorry, B", "B") and answer_gone("C", "B")
    # an MCQ letter is read as the metric reads it or written alone, never inside a word or as the article
    assert answer_gone("Sorry, I cannot help with a question like this.", "A")
    assert not answer_gone("a. The red one", "A") and not answer_gone("The answer is A.", "A")
    # the end of a sentence answer after the apology is the answer
    assert not answer_gone("I am sorry, kayaking.", "This person's hobby is kayaking.")
    assert not answer_gone("I'm sorry, the year 1963", "This person was born in the year 1963.")
    assert answer_gone("I am sorry, this person", "This person's hobby is kayaking.")  # not the value
    assert answer_gone("I am sorry, kayaking and chess.", "This person's hobby is kayaking.")  # other words
    assert not answer_gone("Kayaking!", "This person's hobby is kayaking.")  # no apology: still the value
    assert answer_gone("This person", "This person's hobby is kayaking.")
    base = ["tortoise", "tortoise", "This person is a baker."]
    steered = ["I am sorry, tortoise", "I am sorry, I cannot share that.", "This person is a farmer."]
    scores = score_replies(steered, ["x"], ["x"], base_forget=base)
    assert scores["forget"] == 2 / 3 and scores["refusals"] == 2 / 3
    # a prompt the unsteered model left unanswered is left out: it counted as forgotten with no steering at all
    assert score_replies(["y", "I am sorry."], ["x"], ["x"], base_forget=["y", ""])["forget"] == 0.0


def test_retain_score_is_the_worst_group():
    """A cost concentrated on one kind of retain question is not hidden by the others."""
    base = ["The shape is red."] * 20
    retain = base[:19] + ["I'm sorry, I can't help with that."]
    groups = ["general"] * 10 + ["people"] * 10
    scores = score_replies(["I'm sorry."], retain, base, groups)
    assert scores["retain"] == 0.9 and scores["retain_groups"] == {"general": 1.0, "people": 0.9}
    assert score_replies(["I'm sorry."], retain, base)["retain"] == 0.95  # pooled
    with pytest.raises(ValueError, match="group labels"):
        score_replies(["I'm sorry."], retain, base, groups[:3])


def test_forget_score_is_the_worst_task_group_of_five_answered_prompts_or_more():
    """A setting that forgets the open questions and clozes but not the text MCQs is not hidden by
    them: pooled, such a setting outscored one that forgot all three and was chosen (MLLMU-Bench
    files without names on the toy model: text MCQ answered 35% against 3%)."""
    from core.activations import Prompt
    from core.data.formats import classification_prompt, cloze_prompt
    from core.tuner import forget_groups
    pic = random_image(0)
    mcq = classification_prompt({"Question": "Where was Ann born?", "Options": dict(zip("ABCD", "wxyz"))})
    prompts = [Prompt(mcq, None)] * 6 + [Prompt(cloze_prompt({"Question": "Ann was born in __."}), None)] * 6 \
        + [Prompt("Who is this?", pic)] * 6 + [Prompt(mcq, pic)] * 2
    labels = forget_groups(prompts)
    assert labels[0] == "classification, text" and labels[6] == "cloze, text" and labels[12] == "generation, image"
    base = ["B"] * 6 + ["Oslo"] * 6 + ["Ann Lee"] * 6 + ["B", "B"]
    steered = ["B"] * 3 + ["I am sorry."] * 3 + ["I am sorry."] * 6 + ["I am sorry."] * 6 + ["B", "B"]
    scores = score_replies(steered, ["x"], ["x"], base_forget=base, forget_labels=labels)
    # the image MCQs (2 prompts) are too few to be a group of their own; they count in the pooled share
    assert scores["forget_groups"] == {"classification, text": 0.5, "cloze, text": 1.0, "generation, image": 1.0}
    assert scores["forget"] == 0.5 and scores["forget_pooled"] == 15 / 20
    with pytest.raises(ValueError, match="3 forget group labels for 20 forget replies"):
        score_replies(steered, ["x"], ["x"], base_forget=base, forget_labels=labels[:3])


def test_small_forget_groups_join_their_task_then_one_other_group_instead_of_dropping_out():
    """Three photo-folder people's held-out rows held 3 text and 2 image clozes: left out of the
    score, a setting that forgot none of them could win on the MCQs."""
    from core.activations import Prompt
    from core.data.formats import classification_prompt, cloze_prompt
    from core.tuner import forget_groups, merge_small
    pic = random_image(0)
    mcq = classification_prompt({"Question": "Where was Ann born?", "Options": dict(zip("ABCD", "wxyz"))})
    cloze = cloze_prompt({"Question": "Ann was born in __."})
    prompts = ([Prompt(mcq, None)] * 6 + [Prompt(cloze, None)] * 3 + [Prompt(cloze, pic)] * 2
               + [Prompt("Who is this?", pic)] * 2 + [Prompt("Who is Ann?", None)] * 1 + [Prompt(mcq, pic)] * 1)
    labels = forget_groups(prompts)
    assert merge_small(labels) == ["classification, text"] * 6 + ["cloze"] * 5 + ["other"] * 4
    base = ["B"] * 6 + ["Oslo"] * 5 + ["Ann Lee"] * 3 + ["B"]
    mcqs_only = ["I am sorry."] * 6 + ["Oslo"] * 5 + ["I am sorry."] * 4
    scores = score_replies(mcqs_only, ["x"], ["x"], base_forget=base, forget_labels=labels)
    assert scores["forget_groups"] == {"classification, text": 1.0, "cloze": 0.0} and scores["forget"] == 0.0
    # merged among the answered prompts: a cloze the model left unanswered does not take the others out
    # (5 text clozes, one unanswered, and 2 image ones: merged before the filter, the text clozes kept their own
    # group of 5, fell to 4 and left the score with the image ones)
    two_more = [Prompt(cloze, None)] * 2 + prompts
    scores = score_replies(["x", "Oslo"] + mcqs_only, ["x"], ["x"], base_forget=["", "Oslo"] + base,
                           forget_labels=forget_groups(two_more))
    assert scores["forget_groups"] == {"classification, text": 1.0, "cloze": 0.0} and scores["forget"] == 0.0


def test_settings_equal_on_the_worst_group_are_told_apart_by_the_pooled_share(monkeypatch):
    from types import SimpleNamespace

    import core.tuner as tuner
    from core.activations import Prompt
    from core.data.formats import classification_prompt, cloze_prompt
    mcq = Prompt(classification_prompt({"Question": "Where was Ann born?", "Options": dict(zip("ABCD", "wxyz"))}), None)
    cloze = Prompt(cloze_prompt({"Question": "Ann was born in __."}), None)
    forget, retain = [mcq] * 10 + [cloze] * 10, [Prompt("What colour is the sky?", None)] * 5
    gone = {1.0: (5, 5), 2.0: (5, 10), 1.5: (5, 8)}  # strength -> (MCQs, clozes forgotten): worst 0.5 for all

    def replies(adapter, prompts, max_new_tokens, steering=None, **kw):
        if prompts is retain:
            return ["Blue."] * len(prompts)
        m, c = (0, 0) if steering is None else gone[steering()["strength"]]
        return ["I am sorry."] * m + ["B"] * (10 - m) + ["I am sorry."] * c + ["Oslo"] * (10 - c)
    monkeypatch.setattr(tuner, "replies", replies)
    eraser = SimpleNamespace(config=SimpleNamespace(gate_ramp=False, joint_gate=None, gate_layer=None),
                             apply=lambda adapter, **kw: kw)
    res = tuner.tune(None, eraser, forget, retain, [[1]], [1.0, 2.0, 1.5])
    assert {c.forget for c in res.grid} == {0.5} and res.best.strength == 2.0 and res.best.forget_pooled == 0.75


def test_the_tuner_chooses_by_the_worst_task_group_not_the_pooled_share(monkeypatch):
    """Strength 1 forgets every cloze and no MCQ (pooled 0.70), strength 2 five MCQs of six and
    eight clozes of fourteen (pooled 0.65): the pooled share chose strength 1."""
    from types import SimpleNamespace

    import core.tuner as tuner
    from core.activations import Prompt
    from core.data.formats import classification_prompt, cloze_prompt
    mcq = Prompt(classification_prompt({"Question": "Where was Ann born?", "Options": dict(zip("ABCD", "wxyz"))}), None)
    cloze = Prompt(cloze_prompt({"Question": "Ann was born in __."}), None)
    forget, retain = [mcq] * 6 + [cloze] * 14, [Prompt("What colour is the sky?", None)] * 5
    gone = {1.0: (0, 14), 2.0: (5, 8)}  # strength -> (MCQs forgotten, clozes forgotten)

    def replies(adapter, prompts, max_new_tokens, steering=None, **kw):
        if prompts is retain:
            return ["Blue."] * len(prompts)
        if steering is None:
            return ["B"] * 6 + ["Oslo"] * 14
        m, c = gone[steering()["strength"]]
        return ["I am sorry."] * m + ["B"] * (6 - m) + ["I am sorry."] * c + ["Oslo"] * (14 - c)
    monkeypatch.setattr(tuner, "replies", replies)
    eraser = SimpleNamespace(config=SimpleNamespace(gate_ramp=False, joint_gate=None, gate_layer=None),
                             apply=lambda adapter, **kw: kw)  # steering() hands the replies its settings
    res = tuner.tune(None, eraser, forget, retain, [[1]], [1.0, 2.0])
    assert [(c.forget, c.forget_pooled) for c in res.grid] == [(0.0, 0.7), (8 / 14, 0.65)]  # worst: the clozes
    assert res.best.strength == 2.0


def test_ties_prefer_the_earlier_mode():
    """Two modes that score the same (at strength 0 every mode leaves the replies alone): the first listed wins."""
    a = tiny_adapter("llava")
    forget = [Prompt("who is it ?", random_image(i)) for i in range(2)]
    retain = [Prompt("what colour is the shape ?", random_image(10 + i)) for i in range(2)]
    for modes in [("latched", "every_step"), ("every_step", "latched")]:
        res = tune(a, _eraser(a), forget, retain, [[1]], [0.0], modes=modes, max_new_tokens=2, min_fluency=0.0)
        assert res.grid[0].forget == res.grid[1].forget and res.best.mode == modes[0]


def test_tune_tasks_tunes_each_task_on_its_own_prompts():
    a = tiny_adapter("llava")
    forget = [Prompt(f"who is it ?\nA: x\nB: y\n{CLASSIFICATION_SUFFIX}", random_image(i)) for i in range(2)]
    forget += [Prompt(f"this person is [Blank].\n{CLOZE_SUFFIX}", random_image(5 + i)) for i in range(3)]
    retain = [Prompt(f"what colour ?\nA: red\nB: blue\n{CLASSIFICATION_SUFFIX}", random_image(10 + i)) for i in range(4)]
    retain += [Prompt(f"the shape is [Blank].\n{CLOZE_SUFFIX}", random_image(20))]
    seen = []
    groups = ["g1", "g2", "g1", "g2", "g1"]
    res = tune_tasks(a, _eraser(a), forget, retain, [1], "prefill", [0.0, 2.0], max_new_tokens=2, min_fluency=0.0,
                     progress=lambda d, t: seen.append((d, t)), retain_groups=groups)
    assert set(res) == {"classification", "cloze"}  # no generation prompts: left out
    assert all([c.layers for c in r.grid] == [[1], [1]] and r.modes == ["prefill"] for r in res.values())
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert res["cloze"].grid[0].retain == 1.0 and res["classification"].best is not None
    assert set(res["classification"].grid[0].retain_groups) == {"g1", "g2"}  # each task keeps its prompts' labels
    assert set(res["cloze"].grid[0].retain_groups) == {"g1"}


def test_a_fits_tuner_tries_each_layer_the_last_two_the_back_half_and_all_but_the_first():
    from core.tuner import layer_candidates
    assert layer_candidates(4) == [[1], [2], [3], [2, 3], [1, 2, 3]]  # the back half is the last two here
    assert layer_candidates(8)[-3:] == [[6, 7], [4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7]]
    assert layer_candidates(2) == [[1]] and layer_candidates(1) == [[0]]  # layer 0 only when it is the only one


def test_a_fits_tuner_tries_only_fitted_layers():
    """An unfitted layer steers nothing, so it always kept the retain answers and could win: an
    eraser fitted at layer 3 was saved steering layer 1."""
    from core.tuner import fitted_candidates, layer_candidates
    a = tiny_adapter("llava")
    e = _eraser(a)
    assert fitted_candidates(e, a.num_layers) == layer_candidates(a.num_layers)
    e.config.layers = [a.num_layers - 1]
    assert fitted_candidates(e, a.num_layers) == [[a.num_layers - 1]]
    e.config.layers = [0]  # no candidate left (layer 0 is never tried): the fitted layers are the one
    assert fitted_candidates(e, a.num_layers) == [[0]]


def test_each_candidate_is_measured_with_the_ramp_of_its_own_gate():
    """Without a joint gate each steered layer reads its own gate: the tuner measured every
    candidate with the ramp read for the layers fitted before tuning."""
    from dataclasses import replace

    from core.tuner import ramp_for
    a = tiny_adapter("llava")
    forget = [Prompt("who is it ?", random_image(i), "p0") for i in range(6)]
    retain = [Prompt("what colour is the shape ?", random_image(10 + i), f"r{i % 3}") for i in range(12)]
    recall, erase = forget[:3], [Prompt("sorry cannot share", random_image(30 + i)) for i in range(3)]
    e = Eraser.fit(a, forget, retain, recall, erase, EraserConfig(ratio=1.0, gamma=1e-6, retain_weight=5.0,
                                                                 subject_gates=True, gate_ramp=True))
    sets = ([1], [0, 1])
    ramps = [ramp_for(e, layers) for layers in sets]
    assert ramps[1] == (e.config.gate_floor, e.config.gate_full)  # the fit read its ramp for every fitted layer
    assert ramps[0] != ramps[1] and None not in ramps[0]
    seen, apply = [], e.apply
    e.apply = lambda *args, **kw: (seen.append((kw["layers"], kw["floor"], kw["full"])), apply(*args, **kw))[1]
    tune(a, e, forget[:2], retain[:2], sets, [0.0], max_new_tokens=2, min_fluency=0.0)
    # one apply for the forget replies and one for the retain replies of each candidate
    assert [(tuple(layers), (f, t)) for layers, f, t in seen] == [(tuple(l), r) for l, r in zip(sets, ramps) for _ in "fr"]
    joint = Eraser(e.direction, e.gate, replace(e.config, joint_gate=[0, 1]), e.diagnostics, e.state,
                   e.gate[[0, 1]])
    assert ramp_for(joint, [1]) == (None, None)  # a joint gate is read the same whatever is steered
