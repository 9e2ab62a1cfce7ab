"""Render the bench's JSON (`python -m core bench --json ...`) into docs/performance.md and the
README's performance table.

    python -m core bench --json results/bench.json
    python -m core bench --shape llava-1.5-7b --json results/bench_llava-1.5-7b-shape.json
    python -m core bench --shape qwen2.5-vl-7b --parts shared_starts --json results/bench_qwen2.5-vl-7b-shape.json
    python scripts/bench_tables.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from core.bench import gate_reading, table  # noqa: E402
from results_table import write_between  # noqa: E402


def headline(shipped: dict, shape: dict | None, qwen: dict | None = None) -> str:
    """The README's few lines: the ratios a reader asks about first."""
    fit = next(f for f in shipped["fit"] if f["width"] == 4096)
    art = next(a for a in shipped["artefact"] if a["width"] == 4096)
    lines = ["| measurement (2-core CPU; each ratio from two timings of one run) | value |", "|---|---|"]
    for res, where in ((shipped, "the shipped model (4 layers of width 256)"),
                       (shape, "a model of LLaVA-1.5-7B's width (2 layers, random weights)")):
        if res:
            rows8 = [r for r in res["steering"] if r["batch"] == 8]
            groups = {(r.get("inputs", "random pictures"), r.get("gate_layer")) for r in rows8}
            for inputs, deep in sorted(groups, key=lambda g: (g[0] != "random pictures", g[1] is None, g[0])):
                picked = [r for r in rows8 if (r.get("inputs", "random pictures"), r.get("gate_layer")) == (inputs, deep)]
                how = "each steered layer reading its own gate" if deep is None else gate_reading(deep)
                said = inputs if inputs == "random pictures" else f"portraits of {inputs}"
                if all(r.get("gate_open", 1) == 0 for r in picked):
                    said += " (the gate stays shut)"
                elif "gate_open" in picked[0] and inputs != "random pictures":
                    said += (f" (the gate opens on {100 * picked[0]['gate_open']:g}% of them; the rows whose gate "
                             "opens run the blocks from the steered layer up to the deepest gate layer again, steered)")
                lines.append(f"| steering overhead on greedy generation, {where}, batch 8, {how}, "
                             f"{said}: " + " / ".join(f"`{r['mode']}`" for r in picked) + " | "
                             + " / ".join(f"{r['overhead']:.2f}x" for r in picked) + " |")
    for res, where in ((shipped, "the shipped model"), (shape, "a model of LLaVA-1.5-7B's width and picture length"),
                       (qwen, "a model of Qwen2.5-VL-7B's width with a 448 x 448 picture")):
        sh = (res or {}).get("shared_starts")
        if sh and sh["shared"]:
            lines.append(f"| collecting activations for {sh['prompts'] // sh['pictures']} questions about each picture, "
                         f"{where} ({sh['image_tokens']} image tokens), each picture's start run once vs every prompt "
                         f"whole | {sh['speedup']:.1f}x more prompts/s, same activations to "
                         f"{sh['max_relative_diff']:.0e} |")
    lines += [f"| gate fit at d 4096 (256 forget, 1024 retain rows) vs the paper's formula | "
              f"{fit['speedup']:.0f}x faster, same gate to {fit['relative_diff']:.0e} |",
              f"| eraser file at 32 x 4096 vs the public code's fp16 matrices | {art['eraser_bytes'] / 1e6:.2f} MB vs "
              f"{art['public_code_bytes'] / 1e9:.2f} GB |"]
    if "build" in shipped:
        b = shipped["build"]
        lines.append(f"| building the shipped eraser vs training IdkNLL on the shipped model | "
                     f"{b['idk_over_eraser']:.1f}x cheaper with every layer fitted"
                     + (f", {b['idk_over_steered']:.1f}x at the layers it uses only ({', '.join(map(str, b['steered_layers']))}; same steering)" if "idk_over_steered" in b else "")
                     + (f", {b['idk_over_own_gate']:.1f}x for an eraser that reads its gate at the steered layer "
                        f"(layer {b['own_gate_layer']} only)" if "idk_over_own_gate" in b else "")
                     + " |")
    return "\n".join(lines)


def main() -> None:
    shipped = json.loads((ROOT / "results" / "bench.json").read_text())
    shape_file = ROOT / "results" / "bench_llava-1.5-7b-shape.json"
    shape = json.loads(shape_file.read_text()) if shape_file.is_file() else None
    qwen_file = ROOT / "results" / "bench_qwen2.5-vl-7b-shape.json"
    qwen = json.loads(qwen_file.read_text()) if qwen_file.is_file() else None
    doc = ROOT / "docs" / "performance.md"
    write_between(doc, "<!-- bench-shipped:start -->", "<!-- bench-shipped:end -->", table(shipped))
    if shape:
        write_between(doc, "<!-- bench-shape:start -->", "<!-- bench-shape:end -->", table(shape))
    if qwen:
        write_between(doc, "<!-- bench-qwen-shape:start -->", "<!-- bench-qwen-shape:end -->", table(qwen))
    write_between(ROOT / "README.md", "<!-- bench:start -->", "<!-- bench:end -->", headline(shipped, shape, qwen))
    print(headline(shipped, shape, qwen))


if __name__ == "__main__":
    main()
