"""A gate on the answer as it is written, measured against the adaptive attacker (issue 24).

The shipped gate reads the prompt: an attacker who perturbs the picture until that gate stays shut
gets the person's facts back (32.9% of forget cloze answers at eps 16/255). But to get a fact out,
the model has to write it. This experiment fits a second joint gate (layers 0-3, one per forget
person, the shipped ridge and ramp rule) on the mean activation over the ANSWER's tokens, teacher
forced: forget rows are the forget people's fine-tuning answers (their `qa` pairs, with their
photo), retain rows those of retained people who are not scored below. Used as a defence, the
generation would be checked as it goes and, where the answer gate fires, be redone steered.

Scored without generation, on the ramp coefficient either gate would steer with (1 = the whole
push), for the 70 forget cloze questions with their true answer written after them: clean, after
the shipped adaptive PGD (it lowers the prompt gate and keeps the answer likely), and after PGD
that also lowers the answer gate (the attacker adapted to this defence). Selectivity: the share of
clean cloze questions of 40 retained people (true answers) whose answer gate steers at all. At
layer 0 the answer's activations are its token embeddings, which no picture can change: the
experiment asks how much of the gate the ridge puts there, and what that costs retained people
who share a fact (many people are bakers).

    python scripts/answer_gate.py --out docs/robustness_answer_gate.md   # about 8 min on 2 CPU cores
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from core.activations import capture  # noqa: E402
from core.data.records import Prompt  # noqa: E402
from gate_views import Setup, arguments, ramp, row, table  # noqa: E402


READ: list[int] = []  # the gate layers the answer gate reads (the others are zeroed): --answer-layers


def answer_means(s: Setup, batch, grad: bool = False) -> torch.Tensor:
    """(B, n, d) mean activation over each row's answer tokens at the gate layers (zero at the
    gate layers left out of READ)."""
    h = capture(s.adapter, batch, s.layers, positions="all", differentiable=grad)  # (B, n, T, d)
    answer = (batch.labels != -100).float()[:, None, :, None]
    keep = torch.tensor([float(l in READ) for l in s.layers], dtype=h.dtype)[None, :, None]
    return (h * answer).sum(2) / answer.sum(2).clamp(min=1) * keep


def qa_rows(s: Setup, records, tag_of) -> tuple[torch.Tensor, list[str]]:
    """Answer-token means (N, L, d) of every fine-tuning pair of `records`, asked with their photo."""
    items = [(Prompt(qa.question, rec.image), qa.answer, tag_of(rec)) for rec in records for qa in rec.qa if rec.image]
    rows = []
    for i in range(0, len(items), 16):
        chunk = items[i:i + 16]
        b = s.adapter.encode([p.question for p, _, _ in chunk], [p.image for p, _, _ in chunk], [a for _, a, _ in chunk])
        with torch.no_grad():
            rows.append(answer_means(s, b))
    h = torch.cat(rows)
    full = torch.zeros(len(h), s.adapter.num_layers, h.shape[-1], dtype=torch.float64)
    full[:, s.layers] = h.double()
    return full, [t for _, _, t in items]


def main() -> None:
    ap = arguments(__doc__, "docs/robustness_answer_gate.md")
    ap.add_argument("--fit-retain", type=int, default=400, help="other retained people whose answers are retain rows")
    ap.add_argument("--answer-layers", default=None,
                    help="gate layers the answer gate reads, comma-separated (default: all of the eraser's)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    start = time.time()
    s = Setup(args.model, args.eraser, args.people, args.retain_people)
    READ[:] = s.layers if args.answer_layers is None else [int(x) for x in args.answer_layers.split(",")]
    forget_recs = s.data.forget[:args.people]
    H_f, tags = qa_rows(s, forget_recs, lambda rec: rec.id)
    others = s.data.retain[args.retain_people:args.retain_people + args.fit_retain]
    H_r, _ = qa_rows(s, others, lambda rec: "retain")
    print(f"answer rows: {len(H_f)} forget, {len(H_r)} retain ({time.time() - start:.0f} s)", flush=True)
    gate = s.eraser.refit_gate(H_f, H_r, forget_subjects=tags)
    try:
        floor, full = gate.ramp_from_rows(rows=(H_f, H_r))
    except ValueError as exc:  # the answers' rows overlap: no gate to attack
        text = (f"# A gate on the answer, reading layer{'s' * (len(READ) > 1)} {', '.join(map(str, READ))}\n\n"
                f"Produced by `python "
                f"scripts/answer_gate.py --answer-layers {args.answer_layers} --out {args.out}`: fitted on {len(H_f)} "
                f"forget and {len(H_r)} retain answers, the gate does not tell them apart ({exc}).\n")
        Path(args.out).write_text(text)
        print(text)
        return
    parts = {l: float(gate.joint[i].norm()) for i, l in enumerate(s.layers)} if gate.joint is not None else {}
    print("answer gate ramp", floor, full, "per-layer norm of the joint gate", parts, flush=True)

    def answer_gate(qs, px, grad=False):
        return gate.read_gate(answer_means(s, s.batch(qs, px), grad).double(), s.layers)

    def coefs(qs, px):
        with torch.no_grad():
            prompt_c = s.shipped(qs, px)[1]
            answer_c = ramp(answer_gate(qs, px), floor, full)
        return prompt_c, answer_c, torch.maximum(prompt_c, answer_c)

    clean_f, clean_r = s.pixels(s.fq), s.pixels(s.rq)
    retain = coefs(s.rq, clean_r)
    rows = []
    for attack, px in (("none", clean_f),
                       ("lowers the prompt gate (the shipped adaptive PGD)",
                        s.attacked(lambda qs, p: s.shipped(qs, p, grad=True)[0])),
                       ("lowers both gates (adapted to this defence)",
                        s.attacked(lambda qs, p: s.shipped(qs, p, grad=True)[0]
                                   + ((answer_gate(qs, p, grad=True) - floor) / (full - floor)).float()))):
        forget = coefs(s.fq, px)
        for name, f, r in (("prompt gate (shipped)", forget[0], retain[0]), ("answer gate", forget[1], retain[1]),
                           ("the larger of the two", forget[2], retain[2])):
            rows.append(row(name, attack, f, r))
            print(rows[-1], flush=True)
    text = (f"# A gate on the answer, against the adaptive attacker\n\nProduced by `python scripts/answer_gate.py "
            f"--people {args.people} --retain-people {args.retain_people} --fit-retain {args.fit_retain} "
            + (f"--answer-layers {args.answer_layers} " if args.answer_layers else "")
            + f"--out {args.out}` on {args.eraser} ({time.time() - start:.0f} s). Answer gate (reading layers "
            f"{', '.join(map(str, READ))}) fitted on "
            f"{len(H_f)} forget and {len(H_r)} retain answers (other retained people than those scored), "
            f"ramp {floor:.3f} / {full:.3f} read off its rows; per-layer norms of its joint gate: "
            + ", ".join(f"layer {l} {v:.2f}" for l, v in parts.items())
            + f". {len(s.fq)} forget cloze questions (true answers teacher-forced) attacked with PGD at eps 16/255, "
            f"40 steps; {len(s.rq)} clean retained ones scored. What the columns mean: the script's docstring and "
            "scripts/gate_views.py.\n\n" + table(rows).replace("| defence |", "| gate |") + "\n")
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
