"""The Eraser object: fit from prompts, polarity, selectivity, artefacts, model checks."""
import hashlib
import json

import pytest
import torch

from conftest import random_image, tiny_adapter
from core.activations import Prompt, capture, collect, encode_prompts
from core.eraser import CONFIG_NAME, WEIGHTS_NAME, Eraser, EraserConfig, ModelMismatchError, erase_direction
from core.models.weights import state_hash
from core.models.tiny import build_tiny
from core.models.load import adapter_from_model


def _sets(n=6):
    forget = [Prompt("who is the person in this picture ?", random_image(i)) for i in range(n)]
    retain = [Prompt(q, random_image(100 + i)) for i, q in enumerate(
        ["what colour is the shape ?", "how many circle are in the picture ?", "what is this ?",
         "describe the image please", "what shape is this ?", "is this red ?", "tell me about the colour",
         "how many square ?", "what is the name of the shape ?", "is it blue ?"])]
    recall = [Prompt("tell me the name of this person please", random_image(200 + i)) for i in range(n)]
    erase = [Prompt("sorry cannot share the name", random_image(300 + i)) for i in range(n)]
    return forget, retain, recall, erase


@pytest.fixture(scope="module")
def fitted():
    a = tiny_adapter("llava", layers=2)
    before = state_hash(a.model)
    eraser = Eraser.fit(a, *_sets(), EraserConfig(ratio=0.5, gamma=1e-6, seed=7))  # tiny random activations: norm ~0.1
    return a, eraser, before


def test_fit_diagnostics_and_gates(fitted):
    a, eraser, _ = fitted
    d = eraser.diagnostics
    assert eraser.direction.shape == eraser.gate.shape == (a.num_layers, a.hidden_size)
    assert d["eigenvalues"].shape == (a.num_layers, a.hidden_size)
    # 10 retain prompts at width 64: ratio 0.5 asks for 32 dimensions inside a larger exact null
    # space, so the whole exact null space is used (layer 0: every retain input is the same
    # template token embedding, rank 1; layer 1: rank 10) and the diagnostics say so
    assert d["k"].tolist() == [a.hidden_size - 1, a.hidden_size - 10]
    assert d["exact_null_space"].tolist() == [True, True]
    assert d["forget_gates"].shape == (a.num_layers, 6) and d["retain_gates"].shape == (a.num_layers, 10)
    # layer 0's input at the last prompt token is the embedding of the same template token for
    # every prompt: nothing to separate, the gate stays shut (why the public code skips layer 0)
    assert d["forget_gates"][0].abs().max() < 1e-6
    # layer 1: forget inputs open the gate, retain inputs keep it shut (rank 10 < d/2: exact null space)
    assert (d["forget_gates"][1] - 1).abs().max() < 0.1
    assert d["retain_gates"].abs().max() < 1e-6
    assert (d["leakage"] < 1e-6).all()
    # the recorded gates are what gate_values measures on the same prompts
    forget, retain, _, _ = _sets()
    g = eraser.gate_values(a, forget)
    assert torch.allclose(g.T, d["forget_gates"], atol=1e-4)


def test_polarity_positive_strength_moves_recall_onto_erase(fitted):
    """direction = mean(erase) - mean(recall): +1 at a layer maps the recall mean onto the erase mean."""
    a, eraser, _ = fitted
    _, _, recall, erase = _sets()
    H_erase = collect(a, erase)
    batch = a.encode([p.question for p in recall], [p.image for p in recall])
    with eraser.apply(a, strength=1.0, layers=[1], gated=False):
        steered = capture(a, batch, layers=[1])[:, 0]
    assert torch.allclose(steered.mean(0), H_erase[:, 1].mean(0), atol=1e-4)
    assert eraser.config.polarity.startswith("direction = mean(D_erase) - mean(D_recall)")


def test_selective_effect_forget_moves_retain_stays(fitted):
    a, eraser, _ = fitted
    forget, retain, _, _ = _sets()
    fb = a.encode([p.question for p in forget], [p.image for p in forget])
    rb = a.encode([p.question for p in retain], [p.image for p in retain])
    with torch.no_grad():
        f0, r0 = a.logits(fb)[:, -1], a.logits(rb)[:, -1]
        with eraser.apply(a, strength=1.0, layers=[1]):
            f1, r1 = a.logits(fb)[:, -1], a.logits(rb)[:, -1]
    assert (f1 - f0).abs().mean() > 100 * (r1 - r0).abs().mean()


def test_weights_unchanged_after_fit_and_apply(fitted):
    a, eraser, before = fitted
    with eraser.apply(a, strength=0.5):
        a.generate(a.encode(["what is this ?"], [random_image(0)]), 3)
    assert state_hash(a.model) == before


def test_save_and_load_round_trip(fitted, tmp_path):
    a, eraser, _ = fitted
    eraser.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    cfg = json.loads((tmp_path / CONFIG_NAME).read_text())
    for key in ("ratio", "gamma", "seed", "site", "polarity", "model", "data_hash", "layers"):
        assert key in cfg
    assert cfg["model"]["hidden_size"] == a.hidden_size and cfg["model"]["num_layers"] == a.num_layers
    assert cfg["site"] == "blocks.{layer}.hook_resid_pre" and cfg["seed"] == 7
    loaded = Eraser.from_pretrained(tmp_path, adapter=a)
    # stored in float32, held in float64: the float32 rounding of the fit, nothing else
    assert loaded.gate.dtype == loaded.direction.dtype == torch.float64
    assert torch.equal(loaded.direction, eraser.direction.float().double())
    assert torch.equal(loaded.gate, eraser.gate.float().double())
    assert torch.equal(loaded.diagnostics["eigenvalues"], eraser.diagnostics["eigenvalues"].float().double())
    assert torch.equal(loaded.diagnostics["k"], eraser.diagnostics["k"])
    assert b"pickle" not in (tmp_path / WEIGHTS_NAME).read_bytes()[:200]
    # steering reads the direction in the model's dtype and the gate in float32: the float32
    # copy steers bit-identically to the float64 fit
    batch = a.encode(["who is the person in this picture ?"], [random_image(0)])
    with torch.no_grad():
        with eraser.apply(a, strength=3.0):
            before = a.logits(batch)
        with loaded.apply(a, strength=3.0):
            after = a.logits(batch)
    assert torch.equal(before, after)


def test_a_save_over_an_eraser_that_breaks_off_leaves_the_earlier_eraser_whole(fitted, tmp_path, monkeypatch):
    """Files are written under temporary names and swapped in at the end: a save interrupted while
    writing (a full disk, Ctrl-C during a state of GBs) used to leave new weights beside the old
    config. Nothing temporary stays behind."""
    import core.eraser as eraser_module
    _, eraser, _ = fitted
    eraser.save_pretrained(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    other = Eraser(eraser.direction * 2, eraser.gate * 3, EraserConfig(ratio=0.5, seed=8), eraser.diagnostics)
    real_save = eraser_module.save_file
    calls = []

    def breaks_on_the_second_file(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_save(tensors, path, metadata=metadata)
    monkeypatch.setattr(eraser_module, "save_file", breaks_on_the_second_file)
    other.state = eraser.state if eraser.state is not None else _a_state(eraser)
    with pytest.raises(KeyboardInterrupt):
        other.save_pretrained(tmp_path, state=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.setattr(eraser_module, "save_file", real_save)
    other.save_pretrained(tmp_path)  # and a save that completes replaces it
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)
    assert Eraser.from_pretrained(tmp_path).config.seed == 8


def _a_state(eraser):
    from core.eraser import FitState
    d = eraser.direction.shape[-1]
    return FitState(torch.zeros(2, eraser.num_layers, d), ["x", "x"], torch.zeros(3, eraser.num_layers, d), ["r"] * 3)


def test_an_eraser_of_real_width_is_about_a_megabyte_without_diagnostics(tmp_path):
    """32 layers x 4096 (LLaVA-1.5-7B): direction and one gate in float32 are 1 MB; the public
    code's per-layer d x d matrices would be 1.07 GB in fp16."""
    g = torch.Generator().manual_seed(0)
    big = Eraser(torch.randn(32, 4096, generator=g, dtype=torch.float64),
                 torch.randn(32, 4096, generator=g, dtype=torch.float64), EraserConfig())
    big.save_pretrained(tmp_path / "off", diagnostics=False)
    size = sum(f.stat().st_size for f in (tmp_path / "off").iterdir())
    assert 1.0 * 2**20 <= size <= 1.1 * 2**20
    assert set(Eraser.from_pretrained(tmp_path / "off").diagnostics) == set()


def test_mismatched_model_is_refused(fitted, tmp_path):
    _, eraser, _ = fitted
    eraser.save_pretrained(tmp_path)
    other = adapter_from_model(*build_tiny("llava", seed=5, layers=2))
    with pytest.raises(ModelMismatchError, match="fingerprint"):
        Eraser.from_pretrained(tmp_path, adapter=other)
    Eraser.from_pretrained(tmp_path, adapter=other, strict=False)  # same shape: allowed on request
    deeper = adapter_from_model(*build_tiny("llava", seed=0, layers=3))
    with pytest.raises(ModelMismatchError, match="3 layers"):
        Eraser.from_pretrained(tmp_path, adapter=deeper, strict=False)


def test_bad_artefacts_and_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an eraser folder"):
        Eraser.from_pretrained(tmp_path)
    (tmp_path / CONFIG_NAME).write_text("{not json")
    (tmp_path / WEIGHTS_NAME).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="damaged"):
        Eraser.from_pretrained(tmp_path)
    a = tiny_adapter("llava")
    forget, retain, recall, erase = _sets(2)
    with pytest.raises(ValueError, match="retain set is empty"):
        Eraser.fit(a, forget, [], recall, erase)
    seen = []
    with pytest.raises(ValueError, match=r"layers \[4, 5\] out of range: the model has 2 decoder layers"):
        Eraser.fit(a, forget, retain, recall, erase, EraserConfig(layers=[4, 5]),
                   progress=lambda *x: seen.append(x))
    assert seen == []  # refused before any activation was collected


def test_from_activations_and_layer_mask():
    g = torch.Generator().manual_seed(0)
    Hf, Hr = torch.randn(5, 3, 16, generator=g), torch.randn(9, 3, 16, generator=g)
    Hrec, Her = torch.randn(4, 3, 16, generator=g), torch.randn(4, 3, 16, generator=g)
    e = Eraser.from_activations(Hf, Hr, Hrec, Her, EraserConfig(layers=[1, 2]))
    assert torch.equal(e.gate[0], torch.zeros(16))
    assert torch.allclose(e.direction, erase_direction(Hrec, Her))
    assert e.strengths(0.4) == (0.0, 0.4, 0.4)
    assert e.strengths(0.4, layers=[2]) == (0.0, 0.0, 0.4)
    # layer 0 was not fitted: asked for, it steered nothing without a word (an unsteered model reported as steered)
    for kwargs in ({"layers": [0, 2]}, {"strength": {0: 1.0, 2: 0.4}}):
        with pytest.raises(ValueError, match=r"layer\(s\) \[0\] were not fitted by this eraser, which can steer "
                                             r"layer\(s\) \[1, 2\]"):
            e.strengths(**{"strength": 0.4, **kwargs})
    assert e.strengths({0: 0.0, 2: 0.4}) == (0.0, 0.0, 0.4)  # a zero for it asks nothing of it
    assert e.config.counts == {"forget": 5, "retain": 9, "recall": 4, "erase": 4}


def test_default_steered_layers_come_from_the_config():
    e = Eraser(torch.ones(3, 4, dtype=torch.float64), torch.ones(3, 4, dtype=torch.float64),
               EraserConfig(strength=0.5, steer_layers=[2]))
    assert e.strengths() == (0.0, 0.0, 0.5)
    assert e.strengths(1.0, layers=[0, 1]) == (1.0, 1.0, 0.0)


def test_refit_gate_keeps_the_direction_and_matches_a_fresh_fit():
    g = torch.Generator().manual_seed(1)
    Hf, Hr = torch.randn(6, 2, 12, generator=g), torch.randn(20, 2, 12, generator=g)
    Hrec, Her = torch.randn(4, 2, 12, generator=g), torch.randn(4, 2, 12, generator=g)
    e = Eraser.from_activations(Hf, Hr, Hrec, Her, EraserConfig(ratio=0.3, gamma=0.1, strength=0.7))
    again = e.refit_gate(Hf, Hr)
    assert torch.allclose(again.gate, e.gate) and again.config.strength == 0.7
    other = e.refit_gate(Hf, Hr, ratio=0.8, gamma=0.01)
    fresh = Eraser.from_activations(Hf, Hr, Hrec, Her, EraserConfig(ratio=0.8, gamma=0.01))
    assert torch.allclose(other.gate, fresh.gate) and torch.equal(other.direction, e.direction)
    assert int(other.diagnostics["k"][0]) == int(0.8 * 12) and e.config.ratio == 0.3  # original untouched
    weighted = e.refit_gate(Hf, Hr, retain_weight=2.0)
    assert weighted.config.retain_weight == 2.0 and e.config.retain_weight == 0.0
    assert torch.allclose(weighted.gate, Eraser.from_activations(
        Hf, Hr, Hrec, Her, EraserConfig(ratio=0.3, gamma=0.1, retain_weight=2.0)).gate)
    assert not torch.allclose(weighted.gate, e.gate)
    by_threshold = e.refit_gate(Hf, Hr, threshold=0.5)
    assert by_threshold.config.ratio is None and by_threshold.config.threshold == 0.5


def test_refit_gate_to_a_joint_gate_and_back():
    """The inspector's refit can read one gate over several layers (as the shipped eraser does)
    or go back to each steered layer's own; equal to a fresh fit each way, checked before fitting."""
    g = torch.Generator().manual_seed(2)
    Hf, Hr = torch.randn(6, 3, 12, generator=g), torch.randn(30, 3, 12, generator=g)
    Hrec, Her = torch.randn(4, 3, 12, generator=g), torch.randn(4, 3, 12, generator=g)
    recipe = dict(ratio=1.0, gamma=10.0, retain_weight=0.3, steer_layers=[1], strength=2.0)
    e = Eraser.from_activations(Hf, Hr, Hrec, Her, EraserConfig(**recipe))
    joint = e.refit_gate(Hf, Hr, joint_gate=[2, 0])
    fresh = Eraser.from_activations(Hf, Hr, Hrec, Her, EraserConfig(**recipe, joint_gate=[0, 2]))
    assert joint.config.joint_gate == [0, 2] and joint.gate_layers == [0, 2] and e.config.joint_gate is None
    assert torch.allclose(joint.joint, fresh.joint) and torch.equal(joint.direction, e.direction)
    assert joint.refit_gate(Hf, Hr, gamma=1.0).config.joint_gate == [0, 2]  # None keeps the reading
    back = joint.refit_gate(Hf, Hr, joint_gate=[])
    assert back.config.joint_gate is None and back.joint is None and torch.allclose(back.gate, e.gate)
    for bad in ([1], [0, 3]):  # one layer is not a joint gate; layer 3 does not exist
        with pytest.raises(ValueError, match="joint_gate"):
            e.refit_gate(Hf, Hr, joint_gate=bad)


def test_prompt_mean_gate_is_fitted_applied_and_saved_at_the_mean(tmp_path):
    a = tiny_adapter("llava", layers=2)
    sets = _sets()
    eraser = Eraser.fit(a, *sets, EraserConfig(ratio=0.5, gamma=1e-6, seed=7, position="mean_prompt_tokens"))
    assert eraser.gate_position == "mean"
    # the gate was trained on prompt means: forget -> 1 on its own training prompts, read the same way
    Hf = collect(a, sets[0], position="mean").double()
    assert torch.allclose(eraser.gate_values(a, sets[0]), torch.einsum("nld,ld->nl", Hf, eraser.gate))
    assert (eraser.gate_values(a, sets[0])[:, 1] - 1).abs().max() < 0.05
    # the direction stays a last-token difference
    want = erase_direction(collect(a, sets[2]), collect(a, sets[3]))
    assert torch.allclose(eraser.direction, want)
    batch = a.encode([sets[0][0].question], [sets[0][0].image])
    with torch.no_grad(), eraser.apply(a, strength=1.0, layers=[1], mode="latched") as h:
        a.logits(batch)
    assert abs(float(h.gates[1][0]) - float(eraser.gate_values(a, sets[0][:1])[0, 1])) < 1e-3
    eraser.save_pretrained(tmp_path)
    assert Eraser.from_pretrained(tmp_path, adapter=a).gate_position == "mean"
    with pytest.raises(ValueError, match="field 'position' must be one of"):
        Eraser.fit(a, *sets, EraserConfig(position="first_token"))


def test_subject_gates_fit_one_gate_per_tag_steer_with_the_largest_and_round_trip(tmp_path):
    a = tiny_adapter("llava", layers=2)
    forget, retain, recall, erase = _sets()
    forget = [Prompt(p.question, p.image, tag=f"p{i % 2}") for i, p in enumerate(forget)]  # two subjects
    cfg = EraserConfig(ratio=1.0, gamma=1e-6, retain_weight=0.5, subject_gates=True, seed=7)
    eraser = Eraser.fit(a, forget, retain, recall, erase, cfg)
    assert eraser.gate.shape == (2, 2, a.hidden_size) and eraser.config.subjects == ["p0", "p1"]
    Hf = collect(a, forget).double()
    want = torch.stack([(Hf[:, l] @ eraser.gate[l].T).max(1).values for l in range(2)], 1)
    assert torch.allclose(eraser.gate_values(a, forget), want)
    assert torch.allclose(eraser.diagnostics["forget_gates"].T, want)
    # each subject's gate is a ridge with that subject's rows as the forget rows
    from core.nullspace import fit_gate
    one = fit_gate(Hf[:, 1], collect(a, retain)[:, 1], 1.0, 1e-6, retain_weight=0.5,
                   subjects=torch.tensor([i % 2 for i in range(len(forget))]))
    assert torch.allclose(eraser.gate[1], one.u)
    batch = a.encode([forget[0].question], [forget[0].image])
    with torch.no_grad(), eraser.apply(a, strength=1.0, layers=[1]) as h:
        a.logits(batch)
    assert abs(float(h.gates[1][0]) - float(want[0, 1])) < 1e-3
    eraser.save_pretrained(tmp_path)
    loaded = Eraser.from_pretrained(tmp_path, adapter=a)
    assert torch.equal(loaded.gate, eraser.gate.float().double()) and loaded.config.subjects == ["p0", "p1"]
    # refitting reuses the stored subjects; switching to one gate drops them
    H_r = collect(a, retain)
    again = loaded.refit_gate(Hf, H_r)
    assert torch.allclose(again.gate, eraser.gate)
    single = loaded.refit_gate(Hf, H_r, subject_gates=False)
    assert single.gate.shape == (2, a.hidden_size) and single.config.subjects == []
    back = single.refit_gate(Hf, H_r, subject_gates=True, forget_subjects=[p.tag for p in forget])
    assert back.gate.shape == (2, 2, a.hidden_size)
    with pytest.raises(ValueError, match="subject"):
        single.refit_gate(Hf, H_r, subject_gates=True)
    with pytest.raises(ValueError, match="tagged"):
        Eraser.fit(a, _sets()[0], retain, recall, erase, cfg)


def test_prompts_hash_keeps_single_turn_hashes_and_sees_turns():
    from core.eraser import prompts_hash
    one = [Prompt("who is it ?")]
    assert prompts_hash(one) == prompts_hash([Prompt("who is it ?", tag="other")])
    assert prompts_hash(one) != prompts_hash([Prompt("who is it ?", prefill="a")])
    assert prompts_hash(one) != prompts_hash([Prompt("who is it ?", history=(("what ?", "a"),))])
    # single-turn hashes are what they were before turns existed (saved erasers stay valid)
    assert prompts_hash(one) == hashlib.sha256(b"|1|who is it ?-").hexdigest()[:16]


def test_task_strengths_are_validated_saved_and_used_per_task(fitted, tmp_path):
    """The public code's lambda per task: each MLLMU task's factory steers with its own strength."""
    a, eraser, _ = fitted
    with pytest.raises(ValueError, match="MLLMU tasks"):
        EraserConfig(task_strengths={"summary": 1.0})
    e = Eraser(eraser.direction, eraser.gate, EraserConfig(strength=0.5, task_strengths={"classification": 1.25}))
    assert e.strength_for("classification") == 1.25 and e.strength_for("cloze") == 0.5 and e.strength_for(None) == 0.5
    by_task = e.task_steering(a, layers=[1])
    assert set(by_task) == {"classification", "generation", "cloze", "refusal"}
    for task, want in [("classification", 1.25), ("generation", 0.5), ("refusal", 0.5)]:
        with by_task[task]() as h:
            assert h.config.strengths == (0.0, want)
    override = e.task_steering(a, layers=[1], strength=0.0, task_strengths={"cloze": 2.0})
    with override["classification"]() as h0, override["cloze"]() as h2:
        assert h0.config.strengths == (0.0, 0.0) and h2.config.strengths == (0.0, 2.0)
    one = e.task_steering(a, layers=[1], task_strengths={})  # no per-task strengths: one factory for every query
    with one() as h:
        assert h.config.strengths == (0.0, 0.5)
    e.save_pretrained(tmp_path)
    assert Eraser.from_pretrained(tmp_path).config.task_strengths == {"classification": 1.25}
    cfg = json.loads((tmp_path / CONFIG_NAME).read_text())
    del cfg["task_strengths"]  # an eraser saved before per-task strengths existed
    (tmp_path / CONFIG_NAME).write_text(json.dumps(cfg))
    assert Eraser.from_pretrained(tmp_path).strength_for("classification") == 0.5


@pytest.mark.parametrize("field, value, message", [
    ("layers", [99], r"layers \[99\] out of range"), ("mode", "bogus", "field 'mode' must be one of"),
    ("position", "nowhere", "field 'position'"), ("forget_split", "../../etc", "field 'forget_split'"),
    ("ratio", 5, "field 'ratio' must be a number"), ("gate_retain", 0, "'gate_retain' must be a positive"),
    ("strength", "strong", "field 'strength'"), ("steer_layers", "all", "field 'steer_layers'"),
    ("subjects", ["a", "b"], "2 subjects for a gate of shape"),
    # an artefact of a newer format, or vectors fitted at another site, used to load and steer at this one
    ("version", 2, "field 'version' is 2: this workbench reads erasers of format 1 and older"),
    ("site", "blocks.{layer}.hook_mlp_out", "field 'site' is 'blocks.{layer}.hook_mlp_out'"),
    ("seed", -3, "field 'seed' must be a whole number >= 0"),
    # threshold 0 keeps no null-space direction (the fit refused it only at the next refit); a model
    # entry that is not an object failed as an AttributeError inside check_model
    ("threshold", 0, "field 'threshold' must be a number"), ("model", "oops", "field 'model' must be an object"),
    ("model", {"fingerprint": 5}, "field 'model' must be an object"),
    ("adversarial_keep", "worst", "field 'adversarial_keep' must be 'last' or 'best'"),
    ("adversarial_per_person", 0, r"field 'adversarial_per_person' must be an integer in \[1, 1000\]"),
    # types checked on load, not where they break later (subject ids as numbers: a TypeError in `forget --remove`)
    ("subjects", [0, 1], r"'subjects' \(a list of subject ids\)"), ("layers", [0, 0, 1], "names a layer twice"),
    ("counts", "many", "'counts' must map"), ("direction_kind", 5, "'direction_kind' must be text"),
    ("model", {"fingerprint": "w1-00", "num_layers": 32}, "its config says num_layers 32, its tensors hold 2")])
def test_a_foreign_or_tampered_eraser_is_refused_naming_the_field(fitted, tmp_path, field, value, message):
    """An uploaded eraser is untrusted: every config field is checked on load (issue 22)."""
    _, eraser, _ = fitted
    eraser.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / CONFIG_NAME).read_text())
    raw[field] = value
    if field == "subjects":
        raw["subject_gates"] = True
    (tmp_path / CONFIG_NAME).write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=message):
        Eraser.from_pretrained(tmp_path)


def test_non_finite_tensors_are_refused(fitted, tmp_path):
    from safetensors.torch import save_file
    _, eraser, _ = fitted
    eraser.save_pretrained(tmp_path)
    bad = eraser.direction.clone()
    bad[0, 0] = float("nan")
    save_file({"direction": bad, "gate": eraser.gate.clone()}, str(tmp_path / WEIGHTS_NAME))
    with pytest.raises(ValueError, match="direction tensor .* NaN / inf"):
        Eraser.from_pretrained(tmp_path)


def test_a_fit_of_some_layers_equals_the_full_fit_there(fitted):
    a, full, _ = fitted
    one = Eraser.fit(a, *_sets(), EraserConfig(ratio=0.5, gamma=1e-6, seed=7, layers=[0]))
    assert one.fitted_layers == [0]
    assert torch.allclose(one.gate[0], full.gate[0], rtol=1e-6, atol=1e-9)
    assert torch.equal(one.direction[0], full.direction[0])
    assert not one.gate[1].any() and one.strengths(1.0) == (1.0, 0.0)


def test_a_joint_gate_is_fitted_on_the_layers_side_by_side_and_read_whole(tmp_path):
    """joint_gate [0, 1]: one ridge gate on the two layers' activations concatenated, stored as its
    two halves (`joint`) beside each layer's own gate (`gate`, as without it); steering reads the
    whole (`read_gate`), the saved eraser keeps it (validated), and a layer's own gate can still
    be read instead."""
    from core.nullspace import fit_gate
    a = tiny_adapter("llava", layers=2)
    sets = _sets()
    cfg = dict(ratio=1.0, gamma=1e-3, retain_weight=0.5, seed=7, position="mean_prompt_tokens", steer_layers=[0],
               strength=1.0)
    acts = {}
    eraser = Eraser.fit(a, *sets, EraserConfig(**cfg, joint_gate=[1, 0]), activations=acts)
    assert eraser.config.joint_gate == [0, 1] and eraser.gate_layers == [0, 1]
    fit = fit_gate(acts["forget"].flatten(1), acts["retain"].flatten(1), 1.0, 1e-3, None, 0.5)
    d = a.hidden_size
    assert torch.allclose(eraser.joint[0], fit.u[:d]) and torch.allclose(eraser.joint[1], fit.u[d:])
    per_layer = Eraser.fit(a, *sets, EraserConfig(**cfg))
    assert torch.allclose(eraser.gate, per_layer.gate)  # each layer's own gate, untouched
    prompts = sets[0][:2] + sets[1][:2]
    f_rows, r_rows = eraser.row_gates()  # the joint gate on the fit's own rows (the inspector's histogram)
    assert torch.allclose(f_rows, acts["forget"][:, :2].double().flatten(1) @ fit.u, atol=1e-6)
    assert torch.allclose(r_rows, acts["retain"][:, :2].double().flatten(1) @ fit.u, atol=1e-6)
    assert Eraser(eraser.direction, eraser.gate, eraser.config, {}, joint=eraser.joint).row_gates() is None
    want = eraser.decision_gates(a, prompts)
    H = collect(a, prompts, position="mean").double()
    assert torch.allclose(want, H[:, 0] @ eraser.joint[0] + H[:, 1] @ eraser.joint[1])
    batch = encode_prompts(a, prompts)
    with torch.no_grad(), eraser.apply(a) as h:
        a.logits(batch)
    assert torch.allclose(h.gates[0].double(), want, atol=1e-3)
    with torch.no_grad(), eraser.apply(a, gate_layer=1) as own:
        a.logits(batch)
    assert torch.allclose(own.gates[0].double(), eraser.gate_values(a, prompts)[:, 1], atol=1e-3)
    eraser.save_pretrained(tmp_path)
    again = Eraser.from_pretrained(tmp_path, adapter=a)
    assert again.config.joint_gate == [0, 1] and torch.allclose(again.decision_gates(a, prompts), want, atol=1e-5)
    from safetensors.torch import load_file, save_file
    tensors = load_file(str(tmp_path / WEIGHTS_NAME))
    del tensors["joint_gate"]
    save_file(tensors, str(tmp_path / WEIGHTS_NAME))
    with pytest.raises(ValueError, match="invalid eraser: its joint_gate tensor is missing"):
        Eraser.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="joint_gate layer.*5.*must be fitted"):
        Eraser.fit(a, *sets, EraserConfig(joint_gate=[0, 5]))
    for bad, msg in (([1], "at least two"), ([1, 1], "at least two"), ("0,1", "at least two")):
        with pytest.raises(ValueError, match=msg):
            EraserConfig(joint_gate=bad)
    with pytest.raises(ValueError, match="not both"):
        EraserConfig(joint_gate=[0, 1], gate_layer=1)
    with pytest.raises(ValueError, match="latched"):
        EraserConfig(joint_gate=[0, 1], mode="every_step")
    with pytest.raises(ValueError, match="needs that gate"):
        Eraser(eraser.direction, eraser.gate, eraser.config)


def test_gate_layer_reads_the_prompt_mean_gate_deeper_and_steers_the_earlier_layer(tmp_path):
    a = tiny_adapter("llava", layers=2)
    sets = _sets()
    eraser = Eraser.fit(a, *sets, EraserConfig(ratio=0.5, gamma=1e-6, seed=7, position="mean_prompt_tokens",
                                                steer_layers=[0], gate_layer=1, strength=1.0))
    prompts = [sets[0][0], Prompt("who is the person in this picture , tell me please ?", sets[0][1].image)]
    from core.activations import encode_prompts
    batch = encode_prompts(a, prompts)  # two lengths: the mean skips the padding
    with torch.no_grad(), eraser.apply(a) as h:
        a.logits(batch)
    assert torch.allclose(h.gates[0].double(), eraser.gate_values(a, prompts)[:, 1], atol=1e-3)
    eraser.save_pretrained(tmp_path)
    assert Eraser.from_pretrained(tmp_path, adapter=a).config.gate_layer == 1
    with pytest.raises(ValueError, match="gate_layer 5 must be a fitted layer"):
        Eraser.fit(a, *sets, EraserConfig(gate_layer=5))
    with pytest.raises(ValueError, match="'gate_layer' is latched"):
        EraserConfig(gate_layer=1, mode="every_step")


def test_a_gate_floor_is_stored_applied_and_overridable(fitted, tmp_path):
    """gate_floor travels with the eraser (validated on load) and reaches the steering; apply(floor=)
    replaces it. Under a floor of 0.5 the retain prompts (gate ~0 at both layers) get exactly the
    unsteered logits and the forget prompts (gate ~1 at layer 1) are still steered."""
    a, eraser, _ = fitted
    prompts = _sets()[0][:2] + _sets()[1][:2]
    batch = encode_prompts(a, prompts)
    with torch.no_grad():
        plain = a.logits(batch)
        with eraser.apply(a, 1.0) as h:
            steered = a.logits(batch)
        with eraser.apply(a, 1.0, floor=0.5):
            floored = a.logits(batch)
    low = torch.stack(list(h.gates.values())).amax(0) < 0.5  # under the floor at every steered layer
    assert low.tolist() == [False, False, True, True]
    assert torch.equal(floored[low], plain[low]) and not torch.allclose(floored[~low], plain[~low])
    eraser.config.gate_floor = 0.5
    try:
        eraser.save_pretrained(tmp_path)
    finally:
        eraser.config.gate_floor = 0.0
    again = Eraser.from_pretrained(tmp_path, adapter=a)
    assert again.config.gate_floor == 0.5
    with torch.no_grad():
        with again.apply(a, 1.0):
            assert torch.equal(a.logits(batch), floored)
        with again.apply(a, 1.0, floor=0.0):
            assert torch.allclose(a.logits(batch), steered)
    for bad in (1.0, -0.5, "0.2"):
        with pytest.raises(ValueError, match="gate_floor"):
            EraserConfig(gate_floor=bad)
    with pytest.raises(ValueError, match="'gate_full' .* must be above 'gate_floor'"):
        EraserConfig(gate_floor=0.5, gate_full=0.4)
    with torch.no_grad(), again.apply(a, 1.0, floor=0.5, full=0.6):  # a ramp from 0.5 to 0.6, capped at 1
        ramped = a.logits(batch)
    assert torch.equal(ramped[low], plain[low]) and not torch.allclose(ramped[~low], plain[~low])


def test_the_gate_ramp_read_off_the_fit_rows_separates_them():
    """ramp_from_rows: the floor is the 95th percentile of the retain rows' gates and full steering
    starts at the 5th percentile of the forget rows'; without a fit state, or when the rows
    overlap, it is a clear error."""
    import dataclasses
    a = tiny_adapter("llava", layers=2)
    forget, retain, recall, erase = _sets()
    forget = [Prompt(p.question, p.image, f"s{i % 2}") for i, p in enumerate(forget)]  # two subjects
    eraser = Eraser.fit(a, forget, retain, recall, erase,
                        EraserConfig(ratio=1.0, gamma=1e-3, retain_weight=0.5, seed=7, subject_gates=True))
    L = eraser.gate_layers
    retain = eraser.read_gate(eraser.state.H_retain[:, L].double(), L)
    forget = eraser.read_gate(eraser.state.H_forget[:, L].double(), L)
    assert all(torch.allclose(got, want, atol=1e-6) for got, want in zip(eraser.row_gates(), (forget, retain)))
    floor, full = eraser.ramp_from_rows()
    assert floor == pytest.approx(max(0.0, float(retain.quantile(0.95))), abs=1e-3)
    assert full == pytest.approx(min(1.0, float(forget.quantile(0.05))), abs=1e-3)
    assert 0 <= floor < full <= 1
    swapped = Eraser(eraser.direction, eraser.gate, eraser.config, eraser.diagnostics,
                     dataclasses.replace(eraser.state, H_forget=eraser.state.H_retain, H_retain=eraser.state.H_forget,
                                         forget_tags=eraser.state.retain_tags, retain_tags=eraser.state.forget_tags))
    with pytest.raises(ValueError, match="overlap"):
        swapped.ramp_from_rows()
    # without the fit state (saved with --no-state, or one gate for all) the diagnostics' row gates give the same ramp
    assert Eraser(eraser.direction, eraser.gate, eraser.config, eraser.diagnostics).ramp_from_rows() == (floor, full)
    with pytest.raises(ValueError, match="neither its fit state nor its diagnostics"):
        Eraser(eraser.direction, eraser.gate, eraser.config).ramp_from_rows()
    # at strength 0 nothing is steered, so no gate decides: a clear error (was a RuntimeError from an
    # empty stack with one gate per subject, a silent (0, 1) ramp from a mean over no layer without)
    off = Eraser(eraser.direction, eraser.gate, dataclasses.replace(eraser.config, strength=0.0, gate_ramp=True), eraser.diagnostics,
                 eraser.state)
    with pytest.raises(ValueError, match="steers no layer"):
        off.ramp_from_rows()
    assert off.follow_ramp() is off and (off.config.gate_floor, off.config.gate_full) == (eraser.config.gate_floor,
                                                                         eraser.config.gate_full)  # the ramp it held


def test_a_cross_fitted_floor_is_read_off_retained_subjects_the_gate_was_not_fitted_on():
    """floor_folds: each retained subject's rows read by a gate fitted without its fold, the floor
    at their 95th percentile (checked against plain fits without each fold). On people it never
    saw the gate reads higher than on its own rows, so the floor sits higher than the in-sample
    one; without the subjects to fold it is a clear error, not the stored ramp kept silently."""
    g = torch.Generator().manual_seed(0)
    L, d, people = 2, 16, [f"r{i}" for i in range(6)]
    H_r = torch.cat([torch.randn(20, L, d, generator=g) + torch.randn(1, L, d, generator=g) for _ in people]
                    + [torch.randn(10, L, d, generator=g)])
    tags = [p for p in people for _ in range(20)] + ["scene"] * 10
    H_f = torch.randn(30, L, d, generator=g) + 4 * torch.randn(1, L, d, generator=g)
    subjects = ["f0"] * 15 + ["f1"] * 15
    H_rec, H_era = torch.randn(8, L, d, generator=g), torch.randn(8, L, d, generator=g) + 1

    def config(**kw):
        return EraserConfig(ratio=1.0, gamma=1.0, retain_weight=0.3, subject_gates=True, gate_ramp=True, **kw)
    crossed = Eraser.from_activations(H_f, H_r, H_rec, H_era, config(floor_folds=3, floor_subjects=people),
                                      subjects, tags)
    layers = crossed.gate_layers
    reads = []
    for k in range(3):
        held = torch.tensor([t in set(people[k::3]) for t in tags])
        plain = Eraser.from_activations(H_f, H_r[~held], H_rec, H_era, config(), subjects,
                                        [t for t, h in zip(tags, held.tolist()) if not h])
        reads.append(plain.read_gate(H_r[held][:, layers].double(), layers))
    want = round(max(0.0, float(torch.cat(reads).quantile(0.95))), 3)
    in_sample = Eraser.from_activations(H_f, H_r, H_rec, H_era, config(), subjects, tags)
    assert crossed.config.gate_floor == pytest.approx(want, abs=1e-3)
    assert crossed.config.gate_floor > in_sample.config.gate_floor + 0.05
    assert crossed.config.gate_full == in_sample.config.gate_full  # the forget side is read as before
    # a refit folds again given the rows' tags; without them, or without subjects to fold, it is an error (the
    # ramp stayed at values the config no longer described)
    from core.eraser import FloorFoldsError
    wider = crossed.refit_gate(H_f, H_r, gamma=10.0, retain_tags=tags)
    assert wider.config.gate_floor != crossed.config.gate_floor
    with pytest.raises(FloorFoldsError, match="needs the retain rows' tags"):
        crossed.refit_gate(H_f, H_r, gamma=10.0)
    with pytest.raises(FloorFoldsError, match=r"\('floor_subjects', core.contrast.retained_subjects\); these rows "
                                              "hold 0"):
        Eraser.from_activations(H_f, H_r, H_rec, H_era, config(floor_folds=3), subjects, tags)
    # one gate for all cannot carry the folds: refused, not saved to fail at loading
    with pytest.raises(ValueError, match="'floor_folds' refits the gate on the fit's rows.*set 'subject_gates'"):
        crossed.refit_gate(H_f, H_r, subject_gates=False, retain_tags=tags)
    # the fold gates are fitted once per rows, whatever layers are read (the tuner reads every layer set)
    calls = []
    import core.eraser as eraser_module
    real = eraser_module.fit_gates
    try:
        eraser_module.fit_gates = lambda *a, **k: calls.append(1) or real(*a, **k)
        crossed.crossfit_retain_gates(H_f, H_r, tags)
        assert calls == []  # the fit's own fold gates
        crossed._folds_cache.clear()
        for _ in range(3):
            crossed.crossfit_retain_gates(H_f, H_r, tags)
    finally:
        eraser_module.fit_gates = real
    assert len(calls) == 3  # three folds, once
    # saved without diagnostics, the folds take each forget row's subject from the fit state
    bare = Eraser(crossed.direction, crossed.gate, crossed.config, {}, crossed.state, crossed.joint)
    assert torch.allclose(bare.crossfit_retain_gates(H_f, H_r, tags), crossed.crossfit_retain_gates(H_f, H_r, tags))
    with pytest.raises(ValueError, match="needs rows of at least 3 retained subjects.*these rows hold 2"):
        crossed.crossfit_retain_gates(H_f, H_r[:40], tags[:40])
    for bad in (1, -1, True, 2.0, 21):
        with pytest.raises(ValueError, match="'floor_folds' must be 0 \\(off\\) or a number of folds"):
            config(floor_folds=bad)
    with pytest.raises(ValueError, match="'floor_folds' cross-fits the gate ramp's floor; set 'gate_ramp'"):
        EraserConfig(floor_folds=3, floor_subjects=people)
    with pytest.raises(ValueError, match="'floor_folds' refits the gate on the fit's rows.*set 'subject_gates'"):
        EraserConfig(floor_folds=3, gate_ramp=True, subject_gates=False)


def test_a_preset_gives_its_settings_and_names_itself():
    from core.eraser import PRESETS
    work = EraserConfig.from_preset("workbench", 4)
    assert work.preset == "workbench" and work.subject_gates and work.steer_layers is None
    assert all(getattr(work, k) == v for k, v in PRESETS["workbench"].items() if k != "tune")
    paper = EraserConfig.from_preset("paper", 6)
    assert paper.steer_layers == [1, 2, 3, 4, 5] and paper.position == "last_prompt_token" and not paper.subject_gates
    assert EraserConfig.from_preset("paper").steer_layers is None  # no model yet: every fitted layer
    with pytest.raises(ValueError, match="unknown preset 'best'; choose one of workbench, paper"):
        EraserConfig.from_preset("best")


def test_an_empty_contrast_set_is_refused_not_a_nan_direction():
    """`from_activations` with no erase row gave a direction of NaN, which steered every answer."""
    with pytest.raises(ValueError, match=r"a contrast set is empty \(3 recall, 0 erase rows\)"):
        erase_direction(torch.randn(3, 2, 8), torch.randn(0, 2, 8))



def _tampered(eraser, folder, config=None, **tensors):
    from safetensors.torch import save_file
    eraser.save_pretrained(folder)
    if config is not None:
        raw = json.loads((folder / CONFIG_NAME).read_text())
        (folder / CONFIG_NAME).write_text(json.dumps(config(raw)))
    if tensors:
        from safetensors.torch import load_file
        saved = load_file(str(folder / WEIGHTS_NAME))
        save_file({**saved, **tensors}, str(folder / WEIGHTS_NAME))
    return folder


def test_an_eraser_whose_tensors_contradict_its_config_is_refused(fitted, tmp_path):
    """Each of these loaded and steered: an empty config (defaults stood in), a joint-gate tensor its
    config does not name (dropped silently), a per-subject gate with subject_gates false; a 0-d
    direction and a gate of no subject ended in an IndexError, NaN diagnostics gave a wrong ramp."""
    _, eraser, _ = fitted
    g = eraser.gate.float()
    cases = [
        (dict(config=lambda raw: {}), "its config lacks version, site, model"),
        (dict(joint_gate=g), "a joint gate its config does not name"),
        (dict(gate=g[:, None].repeat(1, 2, 1)), "one part per subject while subject_gates is false"),
        (dict(direction=torch.tensor(1.0)), r"direction has shape \(\)"),
        (dict(config=lambda raw: {**raw, "subject_gates": True, "subjects": []}, gate=g[:, None][:, :0]),
         r"gate has shape \(2, 0, 64\)"),
        (dict(**{"diagnostics.eigenvalues": torch.full((2, 64), float("nan"))}), "diagnostics.eigenvalues hold NaN"),
    ]
    for i, (kw, message) in enumerate(cases):
        with pytest.raises(ValueError, match=message):
            Eraser.from_pretrained(_tampered(eraser, tmp_path / str(i), **kw))


def test_a_saved_eraser_without_a_fingerprint_is_not_checked_as_if_it_matched(fitted, tmp_path):
    """With the fingerprint removed, the check was skipped: any model of the same shape passed."""
    a, eraser, _ = fitted
    folder = _tampered(eraser, tmp_path, config=lambda raw: {**raw, "model": {}})
    with pytest.raises(ModelMismatchError, match="names no weights fingerprint"):
        Eraser.from_pretrained(folder, adapter=a)
    assert Eraser.from_pretrained(folder, adapter=a, strict=False).num_layers == 2  # the caller vouches for it


def test_a_config_no_command_could_steer_is_refused_when_made():
    """fit saved these, and every later command refused them: steering a layer it did not fit, and
    a prompt-mean gate in a mode that reads the gate at every step."""
    with pytest.raises(ValueError, match=r"steer_layers \[2\] are not among the fitted layers \[1\]"):
        EraserConfig(layers=[1], steer_layers=[2])
    with pytest.raises(ValueError, match="mode 'every_step' cannot use it"):
        EraserConfig(mode="every_step", position="mean_prompt_tokens")


def test_an_eraser_saved_before_later_fields_existed_still_loads(fitted, tmp_path):
    """Format 1 grew fields (steer_layers, subject_gates, joint_gate, ...): a file written before
    them names only the first ones and loads with their defaults, as it did."""
    _, eraser, _ = fitted
    first = ("version", "site", "model", "layers", "mode", "position", "strength", "polarity", "ratio", "gamma",
             "threshold", "seed", "direction_kind", "data_hash", "counts")
    folder = _tampered(eraser, tmp_path, config=lambda raw: {k: raw[k] for k in first})
    back = Eraser.from_pretrained(folder)
    assert back.config.joint_gate is None and back.config.subject_gates is False
    assert torch.allclose(back.gate, eraser.gate.float().double())  # stored in float32
