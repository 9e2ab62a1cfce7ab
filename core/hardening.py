"""Adversarial gate fitting: teach the gate the images an attacker would send.

A test-time eraser's whole security is its gate: an attacker who can run gradients through the
model perturbs the image until the gate stays shut (`core.robustness.adaptive_images`). Here the
defender runs that attack first, on the forget people's own gate prompts, adds the perturbed
images as forget rows of their subject, and solves the gates again (closed form, retain side
reused from the eraser's fit state); `rounds` repeats it against the hardened gate. The
evaluation must then attack the final gate, never the one the rows were made against
(`python -m core attack` does: it attacks the eraser it is given).

Two-sided hardening (`retain_prompts`): attacked forget images sit closer to the retained
people than clean ones, so a gate taught to fire on them also fires more on clean retained
pictures (3 rounds on the shipped model: retained image cloze 96.2% of vanilla). Each round can
therefore also perturb retained people's images the other way, to OPEN the gate (the same
budget), and add them as retain rows: the boundary is then pinned from both sides, as in
adversarial training of a detector on both classes.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

from core.activations import Prompt, collect_layers
from core.eraser import Eraser, prompts_hash, request_entry
from core.models.base import VLMAdapter
from core.pgd import PGDConfig, run_pgd, to_image
from core.requests import live_state, refit_with, with_forget_rows, with_retain_rows
from core.robustness import gate_of


def attacked_prompts(adapter: VLMAdapter, eraser: Eraser, prompts: Sequence[Prompt], cfg: PGDConfig,
                     should_stop: Callable[[], bool] | None = None, close: bool = True,
                     keep: str = "last") -> list[Prompt]:
    """The prompts with their images perturbed (L-inf `cfg.eps`) to close the eraser's gate (the
    adaptive attacker's gate term, without its answer term), or with `close=False` to open it;
    `keep="best"`: each image at the PGD step where its gate term was lowest (`core.pgd.run_pgd`)."""
    layers = eraser.gate_layers
    sign = 1.0 if close else -1.0
    out = []
    for s in range(0, len(prompts), 16):
        chunk = list(prompts[s:s + 16])
        last = run_pgd(adapter, [p.image for p in chunk], [p.question for p in chunk], ["yes"] * len(chunk), cfg,
                       should_stop=should_stop, extra_loss=lambda b: sign * gate_of(adapter, eraser, b, layers),
                       nll_weight=0.0, keep=keep)
        if should_stop is not None and should_stop():  # cut short: the images were never attacked, so no refit
            raise InterruptedError("hardening stopped before its attack ended")
        out += [Prompt(p.question, to_image(px), p.tag) for p, px in zip(chunk, last.image)]
    return out


def hardening_rows(forget: Sequence[Prompt], per_subject: int = 8) -> list[Prompt]:
    """The first `per_subject` image prompts of each forget subject: the rows every hardening round
    attacks (a few per person, so that a round costs one short PGD run per person)."""
    rows, seen = [], {}
    for p in forget:
        if p.image is not None and seen.get(p.tag, 0) < per_subject:
            seen[p.tag] = seen.get(p.tag, 0) + 1
            rows.append(p)
    return rows


def hardening_retain_rows(retain: Sequence[Prompt], n: int, seed: int = 0) -> list[Prompt]:
    """`n` tagged retain image prompts for two-sided hardening, spread over the tags (round robin
    over them in a seeded order): each retained subject, and in a toy world each scene kind
    (its scene pictures are tagged scene_qa, scene_mcq, ...: a share each, as a person's, so about
    one row in ten is a scene); untagged prompts (tag "") are left out. The runs in
    docs/robustness_hardening_two_sided.md were made with this choice."""
    by: dict[str, list[Prompt]] = {}
    for p in retain:
        if p.image is not None and p.tag:
            by.setdefault(p.tag, []).append(p)
    rng = random.Random(seed)
    pools = [rng.sample(v, len(v)) for _, v in sorted(by.items())]
    rng.shuffle(pools)
    out: list[Prompt] = []
    while len(out) < n and any(pools):
        for pool in pools:
            if pool and len(out) < n:
                out.append(pool.pop())
    return out


def harden(eraser: Eraser, adapter: VLMAdapter, prompts: Sequence[Prompt], rounds: int = 1,
           cfg: PGDConfig = PGDConfig(eps=16 / 255, step_size=2 / 255, steps=40, seed=0),
           log: Callable[[str], None] | None = None,
           should_stop: Callable[[], bool] | None = None,
           retain_prompts: Sequence[Prompt] = (), keep: str = "last") -> Eraser:
    """`rounds` of: attack the current gate on `prompts` (forget image prompts tagged with their
    subject), add the attacked images as forget rows, solve the gates again. Each round's attack
    runs against the gate the previous round produced. `retain_prompts` (retained subjects' image
    prompts, two-sided hardening): each round also perturbs them to open the gate and adds them
    as retain rows. `keep="best"` teaches the gate each image at its strongest PGD step (the
    step an attacker who keeps its best point would send) instead of the last one."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    prompts = [p for p in prompts if p.image is not None]
    if not prompts:
        raise ValueError("hardening needs forget prompts with images (the attacker perturbs the image)")
    retain_prompts = [p for p in retain_prompts if p.image is not None]
    current = eraser
    for r in range(rounds):
        state = live_state(current)
        unknown = sorted({p.tag for p in prompts} - set(current.config.subjects))
        if unknown:
            raise ValueError(f"hardening rows must be of forgotten subjects; not forgotten: {', '.join(unknown)}")
        forgotten = set(current.config.subjects) & {p.tag for p in retain_prompts}
        if forgotten:
            raise ValueError(f"two-sided hardening's retain rows must be of retained subjects; forgotten: "
                             f"{', '.join(sorted(forgotten))}")
        attacked = attacked_prompts(adapter, current, prompts, cfg, should_stop, keep=keep)
        H = collect_layers(adapter, attacked, current.config.layers, position=current.gate_position)
        before = current.decision_gates(adapter, attacked).mean().item()
        grown = with_forget_rows(state, H, [p.tag for p in attacked])
        if retain_prompts:
            opened = attacked_prompts(adapter, current, retain_prompts, cfg, should_stop, close=False, keep=keep)
            H_open = collect_layers(adapter, opened, current.config.layers, position=current.gate_position)
            grown = with_retain_rows(grown, H_open, [p.tag for p in opened])
        current = refit_with(current, grown, request_entry("harden", sorted({p.tag for p in attacked}),
                                                       prompts_hash(attacked)))
        if log is not None:
            after = current.decision_gates(adapter, attacked).mean().item()
            log(f"round {r + 1}: mean gate on this round's attacked images {before:.3f} -> {after:.3f} after refit")
    return current
