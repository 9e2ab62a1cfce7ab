"""Adversarial gate fitting on the shipped model (issue 24): does a gate fitted on the attacker's
own images hold against an adaptive attacker who attacks THAT gate?

    python scripts/adversarial_gate.py [--rounds 2] [--per-person 8] [--steps 40] [--out docs/robustness_hardening.md]

For the shipped eraser and its hardened versions (core.hardening: `rounds` rounds of PGD that
closes the gate on 8 of each forget person's gate prompts, added as forget rows): forget cloze
answers recovered with no attack and under adaptive PGD on the gate (eps 16/255, run against the
eraser being measured), retained people's cloze kept, and the mean gate on attacked inputs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core.contrast import eraser_gate_sets  # noqa: E402
from core.eraser import Eraser  # noqa: E402
from core.hardening import harden, hardening_retain_rows  # noqa: E402
from core.models.load import load_adapter  # noqa: E402
from core.pgd import PGDConfig  # noqa: E402
from core.requests import collect_state  # noqa: E402
from core.robustness import (RobustnessConfig, _mean_gate, _recovery, adaptive_images, cloze_queries,  # noqa: E402
                             with_changes)
from core.toyworld.fitsets import forget_spec, toy_data  # noqa: E402
from core.toyworld.train import load_world  # noqa: E402


def measure(adapter, eraser, fq, rq, cfg: RobustnessConfig) -> dict:
    steer = lambda: eraser.apply(adapter)  # noqa: E731
    layers = eraser.gate_layers
    attacked = with_changes(fq, image=lambda i, im, imgs=adaptive_images(adapter, eraser, fq, layers, cfg): imgs[i])
    return {"forget_no_attack": _recovery(adapter, with_changes(fq), steer, cfg),
            "forget_adaptive": _recovery(adapter, attacked, steer, cfg),
            "retain_kept": _recovery(adapter, with_changes(rq), steer, cfg),
            "gate_clean": _mean_gate(adapter, eraser, fq, layers),
            "gate_attacked": _mean_gate(adapter, eraser, attacked, layers)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="assets/toy-llava")
    ap.add_argument("--eraser", default="assets/toy-llava-eraser")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--per-person", type=int, default=8)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--retain-people", type=int, default=10)
    ap.add_argument("--open-rows", type=int, default=0,
                    help="two-sided hardening: retained people's image prompts perturbed to open the gate, added "
                         "as retain rows each round (0: one-sided)")
    ap.add_argument("--out", default="docs/robustness_hardening.md")
    args = ap.parse_args()
    torch.set_num_threads(2)
    adapter = load_adapter(args.model)
    eraser = Eraser.from_pretrained(args.eraser, adapter=adapter)
    data = toy_data(load_world(args.model), forget_spec(eraser.config.forget_split))
    f, r = eraser_gate_sets(data, eraser.config)
    print(f"fit state: collecting {len(f)} forget and {len(r)} retain gate prompts once")
    eraser.state = collect_state(eraser, adapter, f, r)
    rows = []
    seen: dict[str, int] = {}
    for p in f:
        if p.image is not None and seen.get(p.tag, 0) < args.per_person:
            seen[p.tag] = seen.get(p.tag, 0) + 1
            rows.append(p)
    opening = hardening_retain_rows(r, args.open_rows, seed=0)
    cfg = RobustnessConfig(steps=args.steps)
    fq, rq = cloze_queries(data.forget, "forget"), cloze_queries(data.retain[:args.retain_people], "retain")
    start = f"{Path(args.eraser).name}, not hardened"  # it said "shipped eraser" of whatever --eraser was
    results = {start: measure(adapter, eraser, fq, rq, cfg)}
    print(start, results[start])
    current = eraser
    for k in range(1, args.rounds + 1):
        current = harden(current, adapter, rows, 1, PGDConfig(eps=cfg.eps, step_size=cfg.step_size, steps=args.steps,
                                                               seed=k), log=print,
                         retain_prompts=opening)
        name = f"{'two-sided ' if opening else ''}hardened, {k} round{'s' if k > 1 else ''}"
        results[name] = measure(adapter, current, fq, rq, cfg)
        print(name, results[name])
    lines = ["# Adversarial gate fitting on the shipped model\n\n`python scripts/adversarial_gate.py"
             + ("" if args.eraser == "assets/toy-llava-eraser" else f" --eraser {args.eraser}")
             + f" --rounds {args.rounds} --per-person {args.per_person} --steps {args.steps}"
             + (f" --open-rows {args.open_rows}" if args.open_rows else "")
             + ("" if args.out == "docs/robustness_hardening.md" else f" --out {args.out}")
             + "` (the eraser: gate read at "
             + (f"layers {', '.join(map(str, eraser.config.joint_gate))} together (one joint gate)"
                if eraser.config.joint_gate else
                f"layer {eraser.config.gate_layer}" if eraser.config.gate_layer is not None else "each steered layer")
             + f"): each round attacks the current "
             f"gate on {args.per_person} gate prompts per forget person (PGD closing the gate, eps 16/255, "
             f"{args.steps} steps) and adds them as forget rows"
             + (f", and perturbs {len(opening)} retained people's gate prompts to open it (same budget), added as "
                "retain rows" if opening else "") + "; the evaluation attack (adaptive PGD on the gate "
             "and the answer, eps 16/255) runs against the eraser in the row. Cloze on image+text questions: "
             f"{len(fq)} forget questions, {len(rq)} of {args.retain_people} retained people.\n",
             "| eraser | forget recovered, no attack | forget recovered, adaptive PGD | retain kept | gate, clean | "
             "gate, attacked |", "|---|---|---|---|---|---|"]
    for name, m in results.items():
        lines.append(f"| {name} | {100 * m['forget_no_attack']:.1f} | {100 * m['forget_adaptive']:.1f} | "
                     f"{100 * m['retain_kept']:.1f} | {m['gate_clean']:.2f} | {m['gate_attacked']:.2f} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
