"""How selective is the gate? Share of evaluation questions whose gate passes 0.5, per split and
modality, for the paper's null-space fit and for fits with retain rows (README, concept 6).

    python scripts/gate_selectivity.py [--model assets/toy-llava] [--eraser assets/toy-llava-eraser] [--layer 3]

The gate sets are the eraser's own (`contrast.gate_sets` with its seed), the evaluation questions
are those of `python -m core evaluate`; nothing is steered, so this takes about half a minute.
"""
from __future__ import annotations

import argparse
from collections import defaultdict

import torch

from core.activations import collect
from core.contrast import gate_sets
from core.eraser import Eraser
from core.evaluation import record_queries
from core.models.load import load_adapter
from core.toyworld.train import eval_splits, load_world

SETTINGS = [(0.6, 10.0, 0.0), (0.6, 10.0, 1.0), (1.0, 10.0, 0.3), (1.0, 10.0, 1.0), (1.0, 10.0, 3.0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="assets/toy-llava")
    ap.add_argument("--eraser", default="assets/toy-llava-eraser")
    ap.add_argument("--layer", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    adapter, world = load_adapter(args.model), load_world(args.model)
    eraser = Eraser.from_pretrained(args.eraser, adapter=adapter)
    forget, retain = gate_sets(world, eraser.config.forget_split, seed=eraser.config.seed,
                               variants=eraser.config.gate_variants)
    pos = eraser.gate_position
    H_f, H_r = collect(adapter, forget, position=pos), collect(adapter, retain, position=pos)
    splits = eval_splits(world, eraser.config.forget_split)
    questions = {s: [q for rec in splits[s] for q in record_queries(rec, s)] for s in ("forget", "test", "retain")}
    acts = {s: collect(adapter, [q.prompt for q in qs], position=pos)[:, args.layer].double()
            for s, qs in questions.items()}
    cols = [(s, m) for s in questions for m in ("image_text", "text_only")]
    print(f"layer {args.layer}, gate read at the {eraser.config.position}: % of evaluation questions with gate > 0.5")
    print("| ratio | gamma | retain weight | " + " | ".join(f"{s} {m.replace('_', ' ')}" for s, m in cols) + " |")
    print("|---" * (3 + len(cols)) + "|")
    for ratio, gamma, w in SETTINGS:
        u = eraser.refit_gate(H_f, H_r, ratio=ratio, gamma=gamma, retain_weight=w).gate[args.layer]
        share = defaultdict(list)
        for s, qs in questions.items():
            for q, g in zip(qs, (acts[s] @ u).tolist()):
                share[s, q.modality].append(g > 0.5)
        print(f"| {ratio} | {gamma:g} | {w:g} | " + " | ".join(f"{100 * sum(share[c]) / len(share[c]):.0f}"
                                                               for c in cols) + " |")


if __name__ == "__main__":
    main()
