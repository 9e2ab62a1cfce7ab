"""Which layers and what strength? An automatic sweep that answers with evidence.

For every (layer set, strength) candidate, steered greedy answers are compared with the
unsteered model's own answers:
- forget score: share of forget prompts answered with a refusal (the erasure took effect);
- retain score: share of retain prompts whose answer is UNCHANGED (utility kept);
- fluency: share of replies that are well formed.
The chosen setting maximises the forget score among those keeping retain >= `min_retain` and
fluency >= `min_fluency` (ties: smaller strength, fewer layers). No labels are needed, so the
same tuner works on real models. The whole grid is returned for plotting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

from core.activations import Prompt
from core.eraser import Eraser
from core.evaluation import is_fluent, is_refusal, replies
from core.models.base import VLMAdapter


@dataclass
class Candidate:
    layers: list[int]
    strength: float
    forget: float = 0.0
    retain: float = 0.0
    fluency: float = 0.0
    ok: bool = False


@dataclass
class TuneResult:
    best: Candidate | None
    mode: str
    grid: list[Candidate] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"best": None if self.best is None else asdict(self.best), "mode": self.mode,
                "grid": [asdict(c) for c in self.grid]}


def tune(adapter: VLMAdapter, eraser: Eraser, forget: Sequence[Prompt], retain: Sequence[Prompt],
         layer_sets: Sequence[Sequence[int]], strengths: Sequence[float], mode: str = "latched",
         min_retain: float = 0.97, min_fluency: float = 0.95, max_new_tokens: int = 16,
         progress: Callable[[int, int], None] | None = None,
         should_stop: Callable[[], bool] | None = None) -> TuneResult:
    """Sweep layer sets x strengths; return the best admissible setting and the grid."""
    if not forget or not retain:
        raise ValueError("the tuner needs forget and retain prompts")
    base_retain = replies(adapter, retain, max_new_tokens)
    grid, total = [], len(layer_sets) * len(strengths)
    for layers in layer_sets:
        for s in strengths:
            if should_stop is not None and should_stop():
                raise InterruptedError("tuning stopped")
            steer = lambda: eraser.apply(adapter, strength=s, layers=list(layers), mode=mode)  # noqa: E731
            f = replies(adapter, forget, max_new_tokens, steering=steer)
            r = replies(adapter, retain, max_new_tokens, steering=steer)
            c = Candidate(list(layers), float(s),
                          forget=sum(map(is_refusal, f)) / len(f),
                          retain=sum(a == b for a, b in zip(r, base_retain)) / len(r),
                          fluency=sum(map(is_fluent, f + r)) / len(f + r))
            c.ok = c.retain >= min_retain and c.fluency >= min_fluency
            grid.append(c)
            if progress is not None:
                progress(len(grid), total)
    admissible = [c for c in grid if c.ok]
    best = max(admissible, key=lambda c: (c.forget, -c.strength, -len(c.layers))) if admissible else None
    return TuneResult(best, mode, grid)
