"""Where should the gate be read? A held-out answer (docs/sequential.md, "Choosing where the gate
is read"): for each reading (one layer, or a joint gate over several), how often the gate fires
on people it never saw, and how well it separates people requested so far from people not yet.

Held-out people: the retained people are split into 9 folds; each fold's rows leave the gate's
retain side, the gates of the 10 forget people are solved on the rest (the shipped recipe), and
the gate is read on the fold's own questions. A row "fires" when its gate exceeds half the
median gate of the forget people's image questions. The reading chosen is the one with the lowest
held-out fire rate (`chosen` in the JSON). The forget people are not used to choose:
the sequential columns (the first K requested in the benchmark's order, read on the image
questions of requested and pending people) are reported beside, as the test.

    python scripts/gate_heldout.py   ->  results/gate_heldout.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.activations import collect  # noqa: E402
from core.contrast import eraser_gate_sets  # noqa: E402
from core.eraser import Eraser, subject_labels  # noqa: E402
from core.models.load import load_adapter  # noqa: E402
from core.nullspace import fit_gate, joint_gate_scores  # noqa: E402
from core.requests import collect_state  # noqa: E402
from core.sequential import _image_prompts  # noqa: E402
from core.toyworld.fitsets import forget_spec, toy_data  # noqa: E402
from core.toyworld.train import load_world  # noqa: E402

READINGS = ([0], [1], [2], [3], [2, 3], [1, 3], [1, 2, 3], [0, 1, 2, 3])
FOLDS = 9


def _gates(H_f, H_r, labels, layers, cfg):
    """(n, K, d) parts of the gate read over `layers` (one layer: its own gate)."""
    fit = fit_gate(H_f[:, layers].flatten(1), H_r[:, layers].flatten(1), cfg.ratio, cfg.gamma, cfg.threshold,
                   cfg.retain_weight, labels)
    return fit.u.reshape(fit.u.shape[0], len(layers), -1).movedim(1, 0)


def main() -> None:
    adapter = load_adapter(ROOT / "assets" / "toy-llava")
    shipped = Eraser.from_pretrained(ROOT / "assets" / "toy-llava-eraser", adapter=adapter)
    cfg = shipped.config
    data = toy_data(load_world(ROOT / "assets" / "toy-llava"), forget_spec("forget_10"))
    state = collect_state(shipped, adapter, *eraser_gate_sets(data, cfg))
    H_f, H_r = state.H_forget.double(), state.H_retain.double()
    order = data.forget_ids  # the sequential benchmark's request order
    questions = {p: collect(adapter, [q for rec in data.pick([p]).forget for q in _image_prompts(rec)],
                            position="mean").double() for p in order}
    people = sorted({t for t in state.retain_tags if t in {r.id for r in data.retain}})
    folds = [people[i::FOLDS] for i in range(FOLDS)]
    names, labels = subject_labels(state.forget_tags)
    rows = []
    for layers in READINGS:
        fire, q99 = [], []
        for fold in folds:
            keep = torch.tensor([t not in fold for t in state.retain_tags])
            u = _gates(H_f, H_r[keep], labels, layers, cfg)
            median = torch.cat([joint_gate_scores(questions[p][:, layers], u) for p in names]).median()
            held = joint_gate_scores(H_r[~keep][:, layers], u) / median
            fire.append(float((held > 0.5).double().mean()))
            q99.append(float(held.quantile(0.99)))
        seq = []
        for k in range(1, len(order)):
            rows_k = [i for i, t in enumerate(state.forget_tags) if t in order[:k]]
            _, lab = subject_labels([state.forget_tags[i] for i in rows_k])
            u = _gates(H_f[rows_k], H_r, lab, layers, cfg)
            req = torch.cat([joint_gate_scores(questions[p][:, layers], u) for p in order[:k]])
            pen = torch.cat([joint_gate_scores(questions[p][:, layers], u) for p in order[k:]])
            seq.append({"requested": k, "requested_min": round(float(req.min() / req.median()), 3),
                        "pending_max": round(float(pen.max() / req.median()), 3)})
        f = torch.tensor(fire) * 100
        rows.append({"layers": layers, "heldout_fire_pct": round(float(f.mean()), 2),
                     "heldout_fire_se": round(float(f.std() / FOLDS ** 0.5), 2),
                     "heldout_q99": round(sum(q99) / FOLDS, 3), "sequential": seq})
        print(rows[-1]["layers"], rows[-1]["heldout_fire_pct"], rows[-1]["heldout_fire_se"], rows[-1]["heldout_q99"],
              " ".join(f"{s['requested_min']:.2f}|{s['pending_max']:.2f}" for s in seq), flush=True)
    best = min(rows, key=lambda r: r["heldout_fire_pct"])
    print(f"lowest held-out fire rate: layers {best['layers']}")
    out = ROOT / "results" / "gate_heldout.json"
    out.write_text(json.dumps({"folds": FOLDS, "recipe": {k: getattr(cfg, k) for k in
                                                         ("ratio", "gamma", "retain_weight", "gate_retain")},
                               "chosen": best["layers"], "readings": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
