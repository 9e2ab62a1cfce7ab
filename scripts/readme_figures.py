"""Make the README's figures from the shipped model and eraser (real data, not a sketch).

    python scripts/readme_figures.py [--model assets/toy-llava] [--eraser assets/toy-llava-eraser]

Writes docs/concept.png: forget vs retain activations at the most selective steered layer (PCA),
coloured by gate value, with d_erase drawn as an arrow; and the retain spectrum with the
null-space cut.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from core.activations import collect  # noqa: E402
from core.toyworld.fitsets import gate_sets  # noqa: E402
from core.eraser import Eraser  # noqa: E402
from core.models.load import load_adapter  # noqa: E402
from core.nullspace import gate_scores  # noqa: E402
from core.projection import pca_2d  # noqa: E402
from core.toyworld.train import load_world  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "assets" / "toy-llava"))
    ap.add_argument("--eraser", default=str(ROOT / "assets" / "toy-llava-eraser"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "concept.png"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    adapter = load_adapter(args.model)
    eraser = Eraser.from_pretrained(args.eraser, adapter=adapter)
    world = load_world(args.model)
    forget, retain = gate_sets(world, eraser.config.forget_split or "forget_10", per_person=6, n_retain=300, seed=99,
                              fact_draws=1)  # one of each general fact: the weighting would crowd the plot
    steered = eraser.steered_layers or eraser.fitted_layers
    d = eraser.diagnostics
    layer = max(steered, key=lambda l: float(d["forget_gates"][l].mean() - d["retain_gates"][l].abs().mean()))
    pos = eraser.gate_position  # where the gate reads: the points are what the gate sees
    Hf = collect(adapter, forget, layers=[layer], position=pos)[:, 0]
    Hr = collect(adapter, retain, layers=[layer], position=pos)[:, 0]
    gate = eraser.gate[layer]
    proj = pca_2d(torch.cat([Hf, Hr]), eraser.direction[layer])
    gf, gr = gate_scores(Hf.double(), gate), gate_scores(Hr.double(), gate)

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.4))
    pts = proj.coords
    sc = ax.scatter(pts[len(Hf):, 0], pts[len(Hf):, 1], c=gr, cmap="coolwarm", vmin=-0.2, vmax=1.2, s=14,
                    marker="o", label="retain (held-out prompts)", alpha=0.8)
    ax.scatter(pts[:len(Hf), 0], pts[:len(Hf), 1], c=gf, cmap="coolwarm", vmin=-0.2, vmax=1.2, s=36,
               marker="*", edgecolors="k", linewidths=0.3, label="forget (held-out prompts)")
    # d_erase drawn from the forget mean, a quarter of the plot wide (its 2-D shadow's direction)
    start = pts[:len(Hf)].mean(0)
    span = float((pts.max(0).values - pts.min(0).values).max())
    end = start + proj.arrow / proj.arrow.norm().clamp_min(1e-12) * span * 0.25
    ax.annotate("", xy=(float(end[0]), float(end[1])), xytext=(float(start[0]), float(start[1])),
                arrowprops=dict(arrowstyle="-|>", lw=2.2, color="black"))
    ax.text(float(end[0]), float(end[1]), "  d_erase", fontsize=10, weight="bold")
    fig.colorbar(sc, ax=ax, label="gate c(h) = h · u (max over subjects when per subject)")
    where = "prompt mean" if pos == "mean" else "last prompt token"
    ax.set_title(f"Layer {layer} input, {where} (PCA)")
    ax.set_xlabel(f"PC1 ({100 * float(proj.explained[0]):.0f}% var)")
    ax.set_ylabel(f"PC2 ({100 * float(proj.explained[1]):.0f}% var)")
    leg = ax.legend(loc="lower left", fontsize=8)
    for h in leg.legend_handles:  # legend markers in grey: colour means gate value, not the set
        h.set_color("grey")

    ev = d["eigenvalues"][layer].clamp_min(1e-12)
    k = int(d["k"][layer])
    bx.semilogy(range(len(ev)), ev.numpy(), lw=1.5)
    bx.axvspan(0, k, color="tab:green", alpha=0.15, label=f"null space: k = {k} smallest")
    bx.set_title(f"Retain Gram spectrum, layer {layer} (leakage {float(d['leakage'][layer]):.3f})")
    bx.set_xlabel("eigenvalue index (ascending)")
    bx.set_ylabel("eigenvalue (log)")
    bx.legend(fontsize=8)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} (layer {layer}; mean gate forget {float(gf.mean()):.2f}, retain {float(gr.mean()):.2f})")


if __name__ == "__main__":
    main()
