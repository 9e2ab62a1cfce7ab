"""Does PGD really move the shipped model? Figures for the README (printed, not asserted).

    python scripts/pgd_flips.py [--model assets/toy-llava] [--people 20] [--eps 16] [--steps 60]

For each of the first N people: ask "Who is this person?" about their canonical portrait, take
the model's answer, and build the target by swapping in ANOTHER person's name (same sentence
shape). Run L-inf PGD toward that target and report
- the mean target log-probability every 10 steps (it should rise: monotone in expectation),
- the share of images whose greedy answer now names the target person, read back from the
  perturbed pixels and from the perturbed image saved as 8-bit PNG (what a user uploads),
- the share whose answer no longer names the true person.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core.models.load import load_adapter  # noqa: E402
from core.pgd import PGDConfig, pgd, to_image  # noqa: E402
from core.toyworld.train import load_world  # noqa: E402

QUESTION = "Who is this person?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="assets/toy-llava")
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--eps", type=int, default=16, help="L-inf budget in 1/255")
    ap.add_argument("--step-size", type=int, default=1, help="in 1/255")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    adapter, world = load_adapter(args.model), load_world(args.model)
    people = world.people[: args.people]
    images = [world.canonical_image(p) for p in people]
    answers = adapter.generate(adapter.encode([QUESTION] * len(people), images), 24)
    targets, decoys = [], []
    for i, a in enumerate(answers):
        decoy = people[(i + 1) % len(people)]
        said = next((q.name for q in world.people if q.name in a), None)  # keep the answer's own wording
        decoys.append(decoy)
        targets.append(a.replace(said, decoy.name) if said else decoy.name)
    cfg = PGDConfig(eps=args.eps / 255, step_size=args.step_size / 255, steps=args.steps, seed=0)
    curve, last = [], None
    for st in pgd(adapter, images, [QUESTION] * len(people), targets, cfg):
        if st.step % 10 == 0:
            curve.append((st.step, float(st.target_logprob.mean())))
        last = st
    after = adapter.generate(adapter.encode([QUESTION] * len(people), last.image), 24)
    png = [to_image(x) for x in last.image]
    after_png = adapter.generate(adapter.encode([QUESTION] * len(people), png), 24)
    n = len(people)
    knew = sum(p.name in a for p, a in zip(people, answers))
    flips = sum(d.name in a for d, a in zip(decoys, after))
    flips_png = sum(d.name in a for d, a in zip(decoys, after_png))
    lost = sum(p.name in a and p.name not in b for p, a, b in zip(people, answers, after_png))
    rises = sum(b > a for (_, a), (_, b) in zip(curve, curve[1:]))
    print(f"model {args.model}; {n} portraits; PGD eps {args.eps}/255, step {args.step_size}/255, {args.steps} steps")
    print(f"clean answers naming the right person: {knew}/{n}")
    print("mean target log-prob by step: " + ", ".join(f"{s}: {v:.2f}" for s, v in curve))
    print(f"the mean rose in {rises} of {len(curve) - 1} 10-step intervals")
    print(f"greedy answer names the target person: {flips}/{n} = {100 * flips / n:.0f}% (float pixels), "
          f"{flips_png}/{n} = {100 * flips_png / n:.0f}% (saved as 8-bit PNG)")
    print(f"of the {knew} recognised, no longer named after PGD (PNG): {lost}/{max(knew, 1)}")
    print(f"example: {answers[0]!r} -> {after_png[0]!r} (target {targets[0]!r})")


if __name__ == "__main__":
    main()
