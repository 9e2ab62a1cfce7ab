"""Generic scene pictures (a few shapes of one colour) for the built-in general-knowledge retain rows.

Why: the gate must stay near 0 on ordinary picture questions, and a forget set of photos often
comes without a `real` split. These pictures are drawn here, seeded, so any model can be given
the same general-knowledge rows without a download.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 200, 30),
           "purple": (140, 50, 170), "orange": (240, 130, 20)}
SHAPES = ("circle", "square", "triangle")


def draw_scene(rng: np.random.Generator, size: int = 224) -> Image.Image:
    """1-4 shapes of one colour, one kind, at random places on a light background."""
    colour = list(COLOURS.values())[int(rng.integers(len(COLOURS)))]
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    im = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(225, 256, 3)))
    d = ImageDraw.Draw(im)
    r = size // 9
    for _ in range(int(rng.integers(1, 5))):
        x, y = (int(v) for v in rng.integers(r, size - r, 2))
        box = (x - r, y - r, x + r, y + r)
        if shape == "circle":
            d.ellipse(box, fill=colour)
        elif shape == "square":
            d.rectangle(box, fill=colour)
        else:
            d.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour)
    return im


def scenes(n: int, seed: int = 0, size: int = 224) -> list[Image.Image]:
    rng = np.random.default_rng([seed, 23])
    return [draw_scene(rng, size) for _ in range(n)]
