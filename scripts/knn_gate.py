"""An allow-list gate against the adaptive attacker (issue 24): nearest fit row, not kept.

Why it was tried: the ridge gate is one direction over the activations, and the attacker only
has to push them down along it. A nearest-neighbour rule asks for more: steer when the prompt's
activations (the shipped gate's: prompt mean over layers 0-3, each dimension standardised on the
retain rows) lie nearer to one of the gate's forget rows than to every retain row. To get past it
the attacker must bring a forget picture closer to some retained row (another person, a general
question) than to all of that person's own rows, while the model keeps answering as that person.

Scored like scripts/gate_views.py (its Setup, attack and table): the coefficient is 1 when the
rule steers and 0 when it does not. The adaptive attack lowers a soft version of the margin
(log-sum-exp nearest distances, temperature 0.05) divided by its median on clean held-out forget
prompts, so that it weighs about as much as the answer term. The figure that matters is printed
under the table: how many of the attacked questions the unsteered model still answers correctly
(with the rule silent on all of them, those are the answers that come back).

    python scripts/knn_gate.py --out docs/robustness_knn_gate.md   # about 3 min on 2 CPU cores
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gate_views import Setup, arguments, row, table  # noqa: E402

from core.activations import capture, collect  # noqa: E402
from core.contrast import fit_sets, heldout_sets  # noqa: E402
from core.evaluation import mean_score  # noqa: E402
from core.pgd import to_image  # noqa: E402
from core.robustness import with_changes  # noqa: E402


class NearestRow:
    """margin(h) = nearest retain row's distance - nearest forget row's (> 0: steer)."""

    def __init__(self, forget: torch.Tensor, retain: torch.Tensor):
        flat = retain.flatten(1).float()
        self.mean, self.std = flat.mean(0), flat.std(0) + 1e-3
        self.forget, self.retain = self.z(forget), self.z(retain)

    def z(self, h: torch.Tensor) -> torch.Tensor:
        return (h.flatten(1).float() - self.mean) / self.std

    @staticmethod
    def nearest(x: torch.Tensor, rows: torch.Tensor, tau: float | None) -> torch.Tensor:
        # squared distances written out, not torch.cdist: the soft-min needs them squared, and
        # cdist's square root has no gradient at a distance of zero
        d = (x.pow(2).sum(1, keepdim=True) - 2 * x @ rows.T + rows.pow(2).sum(1)).clamp_min(0) / x.shape[1]
        return d.min(1).values if tau is None else -tau * torch.logsumexp(-d / tau, 1)

    def margin(self, h: torch.Tensor, tau: float | None = None) -> torch.Tensor:
        x = self.z(h)
        return self.nearest(x, self.retain, tau) - self.nearest(x, self.forget, tau)


def main() -> None:
    args = arguments(__doc__, "docs/robustness_knn_gate.md").parse_args()
    torch.set_num_threads(2)
    start = time.time()
    s = Setup(args.model, args.eraser, args.people, args.retain_people)
    a, cfg, layers, pos = s.adapter, s.eraser.config, s.layers, s.eraser.gate_position
    sets = fit_sets(s.data, a, cfg.direction_kind, seed=cfg.seed, n_retain=cfg.gate_retain)
    rule = NearestRow(collect(a, sets.forget, layers, position=pos), collect(a, sets.retain, layers, position=pos))
    held_f, held_r = heldout_sets(s.data, cfg.seed, per_person=4, n_retain=288, draw=1)
    held = {name: (rule.margin(collect(a, ps, layers, position=pos)) > 0).double().mean().item()
            for name, ps in (("forget", held_f), ("retain", held_r))}
    scale = rule.margin(collect(a, held_f, layers, position=pos)).abs().median().item()

    def steers(qs, px) -> torch.Tensor:
        with torch.no_grad():
            return (rule.margin(capture(a, s.batch(qs, px), layers, pos)) > 0).double()

    def soft(qs, px) -> torch.Tensor:
        return rule.margin(capture(a, s.batch(qs, px), layers, pos, differentiable=True), tau=0.05) / scale

    plain = s.attacked(lambda qs, p: s.shipped(qs, p, grad=True)[0])
    adaptive = s.attacked(soft)
    retain_shipped = s.shipped(s.rq, s.pixels(s.rq))[1]
    retain_rule = steers(s.rq, s.pixels(s.rq))
    rows = [row("shipped gate", "lowers the shipped gate", s.shipped(s.fq, plain)[1], retain_shipped),
            row("nearest fit row", "none", steers(s.fq, s.pixels(s.fq)), retain_rule),
            row("nearest fit row", "lowers the shipped gate", steers(s.fq, plain), retain_rule),
            row("nearest fit row", "lowers the soft margin (adaptive)", steers(s.fq, adaptive), retain_rule)]
    images = [to_image(px) for px in adaptive]
    answered = mean_score(a, with_changes(s.fq, image=lambda i, im: images[i]), 12)
    text = (f"# An allow-list gate (nearest fit row) that an adaptive attacker gets around\n\nProduced by "
            f"`python scripts/knn_gate.py --people {args.people} --retain-people {args.retain_people} --out "
            f"{args.out}` on {args.eraser} ({time.time() - start:.0f} s). {len(s.fq)} forget cloze questions "
            f"attacked, {len(s.rq)} clean retained ones scored; what the rule is and why it was tried: the "
            "script's docstring.\n\n" + table(rows) + "\n\n"
            f"On the tuner's held-out prompts (never fit rows) the rule steers {100 * held['forget']:.1f}% of forget "
            f"prompts and {100 * held['retain']:.1f}% of retain prompts: cleaner than the ridge gate, whose ramp "
            "steers a few retained questions. Under the attack adapted to it, the unsteered model still answers "
            f"{100 * answered:.1f}% of the attacked forget questions correctly, and the rule steers "
            f"{100 * rows[-1]['coef']:.1f}% of them: one perturbation carries the picture's activations nearer to "
            "a retained row and keeps the answer (the shipped gate, attacked the same way, lets 32.9% back: "
            "docs/robustness.md). Not an option of the fit.\n")
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
