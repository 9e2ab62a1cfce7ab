"""The ablation sweep on a miniature trained toy model: every experiment row and the report."""
from core.eraser import EraserConfig
from core.models.load import load_adapter
from PIL import Image

from core.sweep import SweepConfig, report, run_sweep, tradeoff_figure
from core.toyworld.fitsets import toy_data
from core.toyworld.train import ToyModelConfig, load_world, train_toy
from core.toyworld.world import WorldConfig


def test_sweep_runs_every_experiment_and_reports(tmp_path):
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
    rows = run_sweep(adapter, toy_data(world, "forget_10"), base, SweepConfig(strengths=(0.5, 1.0), eps=(8,), n_people=1,
                                                      max_new_tokens=3))
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
    assert [r.setting for r in rows if r.experiment == "direction"] == ["recall", "refusal", "text_only",
                                                                        "image_only"]
    for r in rows:
        assert set(r.metrics) >= {"forget_cloze", "forget_refusal", "test_cloze", "retain_cloze", "real_cloze", "fluency"}
        assert all(v is None or 0.0 <= v <= 1.0 for v in r.metrics.values())
    text = report(rows, "t", "cmd")
    assert "## PGD eps" in text and "| 8/255 (refusal direction) |" in text and "`cmd`" in text
    tradeoff_figure(rows, tmp_path / "f.png")
    assert Image.open(tmp_path / "f.png").size == (1320, 528)  # two panels, 12 x 4.8 in at 110 dpi
