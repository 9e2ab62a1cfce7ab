"""The ablation sweep on a miniature trained toy model: every experiment row and the report."""
from core.eraser import EraserConfig
from core.models.load import load_adapter
from PIL import Image

from core.sweep import SweepConfig, report, run_sweep, tradeoff_figure
from core.toyworld.fitsets import toy_data
from core.toyworld.train import ToyModelConfig, load_world, train_toy
from core.toyworld.world import WorldConfig


def test_sweep_runs_every_experiment_and_reports(tmp_path, monkeypatch):
    world_cfg = WorldConfig(seed=4, n_people=10, n_real_scenes=1, n_train_scenes=2, images_per_person=1,
                            fact_repeats=1, option_drills=8, option_lookups=0, private_requests=0, mcq_per_question=1)
    model_cfg = ToyModelConfig(text_hidden=32, text_layers=3, text_heads=2, text_intermediate=64, vision_hidden=16,
                               vision_layers=1, vision_heads=2, steps=2, identity_steps=1, batch_size=8, warmup=1,
                               focus_steps=0)
    path = train_toy(tmp_path / "m", world_cfg, model_cfg)
    adapter, world = load_adapter(path), load_world(path)
    # fitted on layer 2 only: the sweep's layer rows keep the fitted layers (it failed half-way on such an eraser)
    base = EraserConfig(ratio=1.0, retain_weight=0.3, subject_gates=True, strength=1.0, steer_layers=[2], layers=[2],
                        mode="latched", direction_kind="recall", forget_split="forget_10", gate_retain=200)
    import core.sweep as sweep
    calls = []

    def spy(real):
        def wrapped(*args, **kw):
            calls.append((real.__name__, args[2] if real.__name__ == "direction_sets" else None, kw))
            if real.__name__ == "direction_sets" and args[2] == "text_only":
                raise ValueError("subject x0 has no name")  # what a photo-only subject raises
            return real(*args, **kw)
        return wrapped
    monkeypatch.setattr(sweep, "gate_sets", spy(sweep.gate_sets))
    monkeypatch.setattr(sweep, "direction_sets", spy(sweep.direction_sets))
    from core.eraser import Eraser
    applied, real_apply = [], Eraser.apply

    def apply_spy(self, adapter, strength=None, layers=None, mode=None, **kw):  # what each row steers with
        applied.append((strength, tuple(layers or ()), mode, kw.get("gated", True), kw.get("gate_fn") is not None))
        return real_apply(self, adapter, strength, layers, mode, **kw)
    monkeypatch.setattr(Eraser, "apply", apply_spy)
    base.seed, base.pgd_eps = 2, 12
    rows = run_sweep(adapter, toy_data(world, "forget_10"), base, SweepConfig(strengths=(0.5, 1.0), eps=(8,), n_people=1,
                                                      max_new_tokens=3, seed=5))
    # the default rows are the base eraser's recipe (they were the sweep's seed and 16/255), each budget run once
    assert calls[0] == ("gate_sets", None, dict(n_retain=200, seed=2, variants=0.0))
    assert [(k, kw["seed"], round(kw["pgd_cfg"].eps * 255)) for n, k, kw in calls[1:]] == [
        ("recall", 2, 12), ("refusal", 2, 12), ("text_only", 2, 12), ("image_only", 2, 12), ("refusal", 2, 8)]
    # the rows reach the steering: both strengths, the plain d_erase row ungated, the MLP row's own gate, prefill
    assert {0.5, 1.0} <= {st for st, *_ in applied}
    assert {(g, fn) for *_, g, fn in applied} == {(True, False), (False, False), (True, True)}
    assert {m for _, _, m, *_ in applied} == {"latched", "prefill"} and {ls for _, ls, *_ in applied} == {(2,)}
    experiments = {r.experiment for r in rows}
    assert experiments == {"baseline", "strength", "layers", "null space", "gate", "gate position", "mode",
                           "paper preset", "direction", "PGD eps"}
    assert [r.setting for r in rows if r.experiment == "layers"] == ["late", "all (1..L-1), fitted ones: [2]"]
    assert [r.setting for r in rows if r.experiment == "paper preset"] == [
        "layers 1..L-1, prefill, 0.3, last token (the base fit's gate), fitted ones: [2]"]
    assert [r.setting for r in rows if r.experiment == "gate position"] == [
        "last prompt token (method)", "mean prompt tokens"]
    assert [r.setting for r in rows if r.experiment == "gate"] == ["linear (method; the preset's fit)",
                                                                   "MLP (64 hidden, unconstrained)"]
    assert [r.setting for r in rows if r.experiment == "null space"] == [
        "null space only, ratio 0.6, one gate (the paper's form, the base fit's gamma)", "null space ratio 0.6 + retain rows (weight 1)",
        "retain rows (weight 1), no null space", "one gate per forget person, retain rows (weight 0.3) (preset)",
        "off (plain d_erase)"]
    # a construction the data cannot give is a labelled row, not the end of the sweep
    assert [r.setting for r in rows if r.experiment == "direction"] == [
        "recall", "refusal", "text_only: not built (subject x0 has no name)", "image_only"]
    for r in rows:
        if "not built" in r.setting:
            assert r.metrics == {}  # the report prints "-" there
            continue
        assert set(r.metrics) >= {"forget_cloze", "forget_refusal", "test_cloze", "retain_cloze", "real_cloze", "fluency"}
        assert all(v is None or 0.0 <= v <= 1.0 for v in r.metrics.values())
    text = report(rows, "t", "cmd")
    assert "## PGD eps" in text and "| 8/255 (refusal direction) |" in text and "`cmd`" in text
    tradeoff_figure(rows, tmp_path / "f.png")
    assert Image.open(tmp_path / "f.png").size == (1320, 528)  # two panels, 12 x 4.8 in at 110 dpi
    for r in rows:  # data without a real split: the figure drew 100 * None
        r.metrics["real_cloze"] = None
    tradeoff_figure(rows, tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").size == (1320, 528)
