"""Generic "real world" scenes: a few coloured shapes.

Why: the MLLMU `real` split measures general ability that unlearning must not damage. Our
stand-in for "general knowledge" is counting, naming colours and naming shapes in simple
pictures, which no person-specific edit should touch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .drawing import OUTLINE, SUPERSAMPLE, downsample, photometric_jitter

SCENE_SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SCENE_COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
SCENE_COUNTS: tuple[int, ...] = (1, 2, 3, 4)
COUNT_WORDS: dict[int, str] = {1: "one", 2: "two", 3: "three", 4: "four"}
SCENE_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 160, 60), "blue": (40, 90, 220),
    "yellow": (240, 210, 30), "purple": (140, 60, 180), "orange": (245, 135, 25),
}
SCENE_BACKGROUND = (236, 236, 232)
# Four quadrant cells (x0, y0) of 32x32 units; one shape per cell, so shapes never overlap.
_CELLS = ((0.0, 0.0), (32.0, 0.0), (0.0, 32.0), (32.0, 32.0))


@dataclass(frozen=True)
class SceneSpec:
    """What a scene shows: `count` shapes, all the same `shape` and `colour`."""

    shape: str
    colour: str
    count: int

    def __post_init__(self) -> None:
        if self.shape not in SCENE_SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}")
        if self.colour not in SCENE_COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}")
        if self.count not in SCENE_COUNTS:
            raise ValueError(f"count must be in {SCENE_COUNTS}")

    @property
    def count_word(self) -> str:
        return COUNT_WORDS[self.count]


def random_scene_spec(rng: np.random.Generator) -> SceneSpec:
    return SceneSpec(shape=SCENE_SHAPES[int(rng.integers(len(SCENE_SHAPES)))],
                     colour=SCENE_COLOURS[int(rng.integers(len(SCENE_COLOURS)))],
                     count=int(SCENE_COUNTS[int(rng.integers(len(SCENE_COUNTS)))]))


def all_scene_specs() -> list[SceneSpec]:
    return [SceneSpec(s, c, n) for s in SCENE_SHAPES for c in SCENE_COLOURS for n in SCENE_COUNTS]


def render_scene(spec: SceneSpec, rng: np.random.Generator | None = None, size: int = 64) -> Image.Image:
    """Draw `spec` as an RGB picture. rng=None: canonical layout; else random cells/sizes/light."""
    k = size * SUPERSAMPLE / 64.0
    img = Image.new("RGB", (size * SUPERSAMPLE, size * SUPERSAMPLE), SCENE_BACKGROUND)
    d = ImageDraw.Draw(img)
    if rng is None:
        cells = list(range(spec.count))
    else:
        cells = [int(i) for i in rng.permutation(4)[: spec.count]]
    fill = SCENE_RGB[spec.colour]
    width = max(1, round(0.9 * k))
    for c in cells:
        x0, y0 = _CELLS[c]
        if rng is None:
            r, cx, cy = 10.0, x0 + 16.0, y0 + 16.0
        else:
            r = float(rng.uniform(8.0, 12.0))
            cx = x0 + 16.0 + float(rng.uniform(-(14.0 - r), 14.0 - r))
            cy = y0 + 16.0 + float(rng.uniform(-(14.0 - r), 14.0 - r))
        if spec.shape == "circle":
            d.ellipse([(cx - r) * k, (cy - r) * k, (cx + r) * k, (cy + r) * k], fill=fill, outline=OUTLINE, width=width)
        elif spec.shape == "square":
            s = r * 0.88
            d.rectangle([(cx - s) * k, (cy - s) * k, (cx + s) * k, (cy + s) * k], fill=fill, outline=OUTLINE, width=width)
        else:
            pts = [(cx, cy - r), (cx + r * 0.95, cy + r * 0.8), (cx - r * 0.95, cy + r * 0.8)]
            d.polygon([(x * k, y * k) for x, y in pts], fill=fill, outline=OUTLINE, width=width)
    out = downsample(img, size)
    if rng is not None:
        out = photometric_jitter(out, rng)
    return out
