"""How selective is the gate? Share of evaluation questions whose gate passes 0.5, per split and
modality, for the paper's null-space fit, fits with retain rows, and one gate per forget person
(README, concepts 6 and 7). A second table is scale-free: with m the median gate of the forget
evaluation questions, the share of forget / test questions at or above 0.7 m (steered at least
70% as hard as a typical forget question) and of retain questions at or above 0.3 m.

    python scripts/gate_selectivity.py [--model assets/toy-llava] [--eraser assets/toy-llava-eraser] [--layer L]
                                       [--gate-retain N] [--data SPLIT=PATH ... | --forget-dir FOLDER]

The gate sets are the eraser's own (`contrast.eraser_gate_sets`; `--gate-retain` changes the retain
sample size), the evaluation questions are those of `python -m core evaluate`; nothing is
steered, so this takes a minute or two.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core.activations import collect  # noqa: E402
from core.__main__ import data_options, eraser_data  # noqa: E402
from core.contrast import eraser_gate_sets  # noqa: E402
from core.eraser import Eraser  # noqa: E402
from core.evaluation import record_queries  # noqa: E402
from core.models.load import load_adapter  # noqa: E402
from core.nullspace import gate_scores  # noqa: E402

# (ratio, gamma, retain weight, one gate per forget person)
SETTINGS = [(0.6, 10.0, 0.0, False), (0.6, 10.0, 1.0, False), (1.0, 10.0, 0.3, False), (1.0, 10.0, 1.0, False),
            (1.0, 10.0, 3.0, False), (1.0, 10.0, 0.3, True), (1.0, 10.0, 1.0, True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="assets/toy-llava")
    ap.add_argument("--eraser", default="assets/toy-llava-eraser")
    ap.add_argument("--layer", type=int, default=None, help="default: the first layer the eraser steers")
    ap.add_argument("--gate-retain", type=int, default=None, help="retain prompts sampled (default: the eraser's)")
    ap.add_argument("--threads", type=int, default=2)
    data_options(ap, " (default: the eraser's own)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    adapter = load_adapter(args.model)
    eraser = Eraser.from_pretrained(args.eraser, adapter=adapter)
    data = eraser_data(args, adapter, eraser.config)
    if args.layer is None:
        args.layer = (eraser.config.steer_layers or eraser.fitted_layers)[0]
    if args.gate_retain is not None:
        eraser.config.gate_retain = args.gate_retain
    forget, retain = eraser_gate_sets(data, eraser.config)
    pos = eraser.gate_position
    H_f, H_r = collect(adapter, forget, position=pos), collect(adapter, retain, position=pos)
    splits = data.splits()
    questions = {s: [q for rec in splits[s] for q in record_queries(rec, s)] for s in ("forget", "test", "retain")
                 if s in splits}
    acts = {s: collect(adapter, [q.prompt for q in qs], position=pos)[:, args.layer].double()
            for s, qs in questions.items()}
    cols = [(s, m) for s in questions for m in ("image_text", "text_only")
            if any(q.modality == m for q in questions[s])]  # a photo folder may hold picture questions only
    head = "| ratio | gamma | retain weight | gates | " + " | ".join(f"{s} {m.replace('_', ' ')}"
                                                                  for s, m in cols) + " |"
    absolute, relative = [], []
    for ratio, gamma, w, per_person in SETTINGS:
        u = eraser.refit_gate(H_f, H_r, ratio=ratio, gamma=gamma, retain_weight=w, subject_gates=per_person,
                              forget_subjects=[p.tag for p in forget]).gate[args.layer]
        gates = {s: gate_scores(acts[s], u) for s in questions}
        m = float(gates["forget"].median())
        share, rel = defaultdict(list), defaultdict(list)
        for s, qs in questions.items():
            for q, g in zip(qs, gates[s].tolist()):
                share[s, q.modality].append(g > 0.5)
                rel[s, q.modality].append(g >= (0.3 if s == "retain" else 0.7) * m)
        label = f"| {ratio} | {gamma:g} | {w:g} | {'one per person' if per_person else 'one'} | "
        absolute.append(label + " | ".join(f"{100 * sum(share[c]) / len(share[c]):.0f}" for c in cols) + " |")
        relative.append(label + " | ".join(f"{100 * sum(rel[c]) / len(rel[c]):.1f}" for c in cols) + " |")
    where = f"layer {args.layer}, gate read at the {eraser.config.position}, {len(retain)} retain gate prompts"
    print(f"{where}: % of evaluation questions with gate > 0.5\n{head}\n" + "|---" * (4 + len(cols)) + "|")
    print("\n".join(absolute))
    print(f"\n{where}: % of forget / test questions with gate >= 0.7 x the forget median, of retain questions "
          f">= 0.3 x it\n{head}\n" + "|---" * (4 + len(cols)) + "|")
    print("\n".join(relative))

if __name__ == "__main__":
    main()
