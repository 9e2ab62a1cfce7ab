"""The bench's parts on tiny shapes: they measure what they say (the figures are printed by
`python -m core bench`, never asserted as timings here)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import random_image, tiny_adapter
from core.activations import Prompt
from core.bench import (BenchConfig, artefact_sizes, bench_capture, bench_fit, bench_pgd, bench_shared_starts,
                        bench_steering, fit_rows, random_eraser, run, table)

ROOT = Path(__file__).resolve().parents[1]


def test_fit_rows_compare_our_fit_with_the_papers_formula():
    rows = bench_fit([(8, 40, 32), (8, 20, 48)], layers=4)
    for r in rows:
        assert r["relative_diff"] < 1e-8  # the same gate where the formula is well defined
        assert r["fit_s"] > 0 and r["reference_s"] > 0 and r["speedup"] == r["reference_s"] / r["fit_s"]
        assert r["fit_4_layers_s"] == 4 * r["fit_s"]
    H_f, H_r = fit_rows(8, 20, 48)
    assert torch.linalg.matrix_rank(H_r) == 20 and H_f.shape == (8, 48)


def test_an_eraser_at_real_width_against_the_public_matrices():
    a = artefact_sizes(32, 4096)
    assert a["eraser_bytes"] <= 1.1e6 and a["public_code_bytes"] == 32 * 4096 * 4096 * 2  # 1.07 GB
    assert 1000 < a["ratio"] < 1030


def test_steering_capture_and_pgd_figures_on_a_tiny_model():
    adapter = tiny_adapter("llava")
    eraser = random_eraser(adapter)
    gated = [Prompt("who is this ?", random_image(7))]
    steering = bench_steering(adapter, eraser, new_tokens=2, repeats=1, portraits={"people to forget": gated})
    assert [(r["inputs"], r["batch"], r["mode"]) for r in steering] == [
        *[("random pictures", b, m) for b in (1, 8) for m in ("prefill", "latched", "every_step")],
        ("people to forget", 1, "prefill"), ("people to forget", 8, "prefill")]
    assert all(r["overhead"] > 0 and r["on_s"] > 0 and r["off_s"] > 0 for r in steering)
    # no floor: every row with a positive gate steers; a batch of 8 copies of one prompt opens all or none
    assert steering[-1]["gate_open"] in (0.0, 1.0) and all(0 <= r["gate_open"] <= 1 for r in steering)
    capture = bench_capture(adapter, 8, [0, 1])
    assert abs(capture["speedup"] - capture["batch16_per_s"] / capture["batch1_per_s"]) < 1e-9
    pgd = bench_pgd(adapter, steps=1)
    res = {"model": {"folder": "tiny", "layers": 2, "width": adapter.hidden_size}, "device": "cpu", "threads": 1,
           "steering": steering, "capture": capture, "pgd": pgd, "fit": bench_fit([(4, 10, 16)]),
           "artefact": [artefact_sizes(2, adapter.hidden_size)]}
    text = table(res)
    assert "`every_step`, random pictures (gate open on" in text and "people to forget" in text and "capture, batch 16 vs batch 1" in text
    assert BenchConfig().model == "assets/toy-llava"


def test_shared_starts_figure_compares_the_same_activations_both_ways():
    """Questions about the same pictures: the figure says whether the family shares the pictures'
    starts, and both ways give the same activations (float rounding apart)."""
    llava = bench_shared_starts(tiny_adapter("llava"), pictures=2, questions=3, layers=[0, 1])
    assert llava["shared"] and llava["prompts"] == 6 and llava["image_tokens"] == 17
    assert llava["max_relative_diff"] < 1e-5 and llava["speedup"] == pytest.approx(llava["shared_per_s"] / llava["whole_per_s"])
    pali = bench_shared_starts(tiny_adapter("paligemma"), pictures=2, questions=3, layers=[0, 1])
    assert not pali["shared"] and pali["max_relative_diff"] == 0.0  # prefix-LM: every prompt runs whole


def test_the_bench_runs_the_parts_asked_for_and_refuses_unknown_ones(tmp_path):
    """`--parts` runs only the named measurements (the whole bench at 7B width takes ~27 min on
    this CPU; spaces around the names are ignored) and the table shows what ran; an unknown name is refused before any model loads,
    naming the parts there are."""
    res = run(BenchConfig(parts=("artefact",)))
    assert set(res) == {"device", "device_name", "threads", "model", "artefact"}
    assert [a["width"] for a in res["artefact"]] == [256, 4096]
    text = table(res)
    assert "eraser file at 32 x 4096" in text and "steering overhead" not in text and "PGD" not in text
    # what measured it, named (on a GPU: its name, so that the figures can be marked as the GPU's)
    assert res["device_name"] in text and res["device_name"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                                                                 else f"CPU, {os.cpu_count()} cores")
    with pytest.raises(ValueError, match="unknown bench part.*'speed'.*choose among steering, capture, shared_starts"):
        run(BenchConfig(parts=("speed", "fit")))
    cli = subprocess.run([sys.executable, "-m", "core", "bench", "--parts", " artefact", "--json", str(tmp_path / "b.json")],
                         capture_output=True, text=True, cwd=ROOT)
    assert cli.returncode == 0, cli.stderr
    assert json.loads((tmp_path / "b.json").read_text())["artefact"] == res["artefact"]
    bad = subprocess.run([sys.executable, "-m", "core", "bench", "--parts", "speed"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "unknown bench part" in bad.stderr and "Traceback" not in bad.stderr


def test_a_shape_bench_builds_no_model_for_parts_that_need_none(monkeypatch):
    """At a real width, the fit and the artefact need no model: `--parts fit,artefact` builds none
    (a Qwen-width model is ~6 GB here) and still names the shape it reports on."""
    import core.bench as bench
    built = []
    monkeypatch.setattr(bench, "real_shape", lambda *a, **k: built.append(a))
    res = run(BenchConfig(shape="qwen2.5-vl-7b", parts=("artefact",)))
    layers = 28 if torch.cuda.is_available() else 2  # every layer on a GPU, two on a CPU
    assert built == [] and res["model"] == {"shape": "qwen2.5-vl-7b", "layers": layers, "width": 3584}
    assert res["artefact"][0]["layers"] == layers and res["artefact"][0]["width"] == 3584
    with pytest.raises(ValueError, match="unknown shape 'gpt-5'"):
        run(BenchConfig(shape="gpt-5", parts=("fit",)))


def test_portrait_rows_come_from_the_forget_set_it_is_given_and_the_build_needs_one():
    """The bench reads no toy world itself (the CLI passes the forget set the eraser was fitted on):
    portrait rows ask about that set's people, and without a set the build is skipped, saying why."""
    from core.bench import portrait_prompts
    from core.toyworld.fitsets import toy_data
    from core.toyworld.train import load_world
    data = toy_data(load_world(ROOT / "assets" / "toy-llava"), "forget_10")
    rows = portrait_prompts(data)
    assert len(rows["people to forget"]) == len(data.forget) == 10 and len(rows["retained people"]) == 40
    assert rows["one person to forget among seven retained people"][0] is rows["people to forget"][0]
    assert rows["people to forget"][0].image is data.forget[0].images[0] and portrait_prompts(None) is None
    said = []
    res = run(BenchConfig(parts=("build",), data=None), log=said.append)
    assert "build" not in res and any("build: skipped, no forget set" in line for line in said)


def test_a_real_shape_is_drawn_on_the_device_and_in_the_dtype_asked_for(monkeypatch):
    """On a GPU the 7B shapes are built there in bfloat16 (drawn on the CPU in float32 first, a 7B
    model is 28 GB, and the timings would have been the CPU's); here a small shape on the meta
    device (no memory) shows where the weights are drawn, and on the CPU in bfloat16 it runs."""
    import core.bench as bench
    monkeypatch.setitem(bench.SHAPES, "small", dict(family="llava", hidden=64, intermediate=128, heads=4, kv_heads=4,
                                                   vocab=32064, layers=2))
    meta = bench.real_shape("small", device="meta")
    assert {p.device.type for p in meta.model.parameters()} == {"meta"} and meta.dtype == torch.bfloat16
    cpu = bench.real_shape("small", device="cpu")
    assert cpu.dtype == torch.float32 and cpu.hidden_size == 64 and cpu.num_layers == 2
    half = bench.real_shape("small", dtype=torch.bfloat16)
    assert half.device.type == ("cuda" if torch.cuda.is_available() else "cpu") and half.dtype == torch.bfloat16
    assert bench.bench_pgd(half, steps=1)["step_s"] > 0  # a bfloat16 model runs the bench's parts


def test_peak_memory_is_what_the_call_allocates_even_when_it_is_brief():
    """Sampled every 5 ms after earlier work, a 16 ms fit read 0 MB next to the reference formula's
    86 MB; the peak is now the kernel's high-water mark, reset before each run."""
    import torch

    from core.bench import measure
    waste = [torch.ones(2**18) for _ in range(400)]  # 400 MB of earlier work, freed: the allocator may keep it
    del waste
    t = measure(lambda: torch.ones(64 * 2**18).add_(1).sum(), repeats=2)  # 64 MB, a few ms
    assert 48 < t.peak_mb < 160
