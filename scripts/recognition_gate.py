"""A gate that asks the model who it sees, measured against the adaptive attacker (issue 24).

The shipped gate is a linear read of the prompt's activations; the adaptive attacker perturbs the
picture until that read stays low while the model still answers (32.9% of forget cloze answers
back at eps 16/255). To answer a question about the person, the model has to recognise them, so
this experiment lets the model's own recognition decide: the picture is also shown with "Who is
this person?" (unsteered, greedy), and when the reply names someone of the forget set the question
is answered with the whole push (the eraser ungated), otherwise as the shipped eraser answers it.
An extra short generation per picture: a cost, if it held.

Attacks on the 70 forget cloze questions of 10 forget people (PGD, eps 16/255, 40 steps, step
2/255, random start, keeping the true answer likely, as the shipped attack): the shipped attack on
the shipped gate (an attacker who does not know the defence); attacks that also make the name
unlikely in the reply to "Who is this person?" (its mean token NLL, counted up to each of
`--name-caps`), with the gate and name terms weighted against the answer's NLL by each of
`--weights` (the attacker picks the one that gets most back); and the name term alone. Scored by
generation: the share of forget answers recovered by the model alone, under the shipped eraser
and under the defence, and how often the recognition fires. Selectivity: the share of clean
retained people's pictures whose reply names a forget person.

    python scripts/recognition_gate.py --out docs/robustness_recognition_gate.md   # about 5 min on 2 CPU cores
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from core.data.records import Prompt  # noqa: E402
from core.data.wordings import FIRST_TURN  # noqa: E402
from core.evaluation import mean_score, replies  # noqa: E402
from core.pgd import to_image  # noqa: E402
from core.robustness import cloze_queries, with_changes  # noqa: E402
from gate_views import Setup, arguments  # noqa: E402


def names_of(s: Setup, people: int) -> list[str]:
    """The name of the person each of `s.fq` asks about (cloze_queries' order)."""
    return [rec.name for rec in s.data.forget[:people] for _ in cloze_queries([rec], "forget")]


def name_nll(s: Setup, px: torch.Tensor, names: list[str]) -> torch.Tensor:
    """(B,) mean token NLL of each person's name as the reply to "Who is this person?"."""
    return s.adapter.answer_nll(s.adapter.encode([FIRST_TURN] * len(names), px, names))


def named(s: Setup, images, forget_names: list[str]) -> list[bool]:
    """Whether the unsteered reply to "Who is this person?" names someone of the forget set."""
    said = replies(s.adapter, [Prompt(FIRST_TURN, im) for im in images], 8)
    return [any(n.lower() in r.lower() for n in forget_names) for r in said]


def scores(s: Setup, images, steering) -> list[float]:
    qs = with_changes(s.fq, image=lambda i, im: images[i])
    mean_score(s.adapter, qs, 12, steering)
    return [q.score for q in qs]


def main() -> None:
    ap = arguments(__doc__, "docs/robustness_recognition_gate.md")
    ap.add_argument("--name-caps", default="6,2", help="the name NLL counts up to these (nats per token), one attack each")
    ap.add_argument("--weights", default="1,0.5,0.25",
                    help="weights of the gate and name terms against the answer's NLL, one attack each")
    args = ap.parse_args()
    torch.set_num_threads(2)
    start = time.time()
    s = Setup(args.model, args.eraser, args.people, args.retain_people)
    names = names_of(s, args.people)
    forget_names = [rec.name for rec in s.data.forget]
    retain_imgs = [rec.image for rec in s.data.retain[:args.retain_people]]
    false_fire = 100 * sum(named(s, retain_imgs, forget_names)) / len(retain_imgs)
    print(f"clean retained pictures naming a forget person: {false_fire:.1f}%", flush=True)
    gated = lambda: s.eraser.apply(s.adapter)  # noqa: E731
    whole = lambda: s.eraser.apply(s.adapter, gated=False)  # noqa: E731

    def name_term(qs, px, cap):
        i = next(j for j, q in enumerate(s.fq) if q is qs[0])  # Setup.attacked slices s.fq
        return -name_nll(s, px, names[i:i + len(qs)]).clamp(max=cap)

    def gate_term(qs, px):
        return s.shipped(qs, px, grad=True)[0]
    attacks = [("none", None), ("shipped adaptive PGD (lowers the gate)", gate_term)]
    for cap in (float(c) for c in args.name_caps.split(",")):
        for w in (float(x) for x in args.weights.split(",")):
            attacks.append((f"lowers the gate and the name (name NLL up to {cap:g}, weight {w:g})",
                            lambda qs, px, w=w, cap=cap: w * (gate_term(qs, px) + name_term(qs, px, cap))))
    attacks.append(("lowers the name only", lambda qs, px: name_term(qs, px, 6.0)))
    rows = []
    for label, loss in attacks:
        px = s.pixels(s.fq) if loss is None else s.attacked(loss)
        images = [to_image(p) for p in px]
        fires = named(s, images, forget_names)
        shipped, forced = scores(s, images, gated), scores(s, images, whole)
        defended = [f if fire else g for fire, f, g in zip(fires, forced, shipped)]
        n = len(images)
        rows.append({"attack": label, "shipped": 100 * sum(shipped) / n, "defended": 100 * sum(defended) / n,
                     "fires": 100 * sum(fires) / n, "vanilla": 100 * sum(scores(s, images, None)) / n})
        print(rows[-1], f"({time.time() - start:.0f} s)", flush=True)
    lines = ["| attack (eps 16/255, 40 steps) | forget recovered, vanilla | forget recovered, shipped eraser | "
             "recognition names a forget person (%) | forget recovered, shipped eraser + recognition |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['attack']} | {r['vanilla']:.1f} | {r['shipped']:.1f} | {r['fires']:.1f} | {r['defended']:.1f} |"
              for r in rows]
    text = (f"# A gate that asks the model who it sees\n\nProduced by `python scripts/recognition_gate.py --people "
            f"{args.people} --retain-people {args.retain_people} --out {args.out}` on {args.eraser} "
            f"({time.time() - start:.0f} s). {len(s.fq)} forget cloze questions (image+text) attacked; what the "
            f"defence does: the script's docstring. Clean pictures of {len(retain_imgs)} retained people whose reply "
            f"to \"{FIRST_TURN}\" names a forget person: {false_fire:.1f}%.\n\n" + "\n".join(lines) + "\n")
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
