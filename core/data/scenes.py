"""Generic scene pictures (a few shapes of one colour) for the built-in general-knowledge retain rows,
and the same kind of picture with scored questions for evaluation.

Why: the gate must stay near 0 on ordinary picture questions, and a forget set of photos often
comes without a `real` split. These pictures are drawn here, seeded, so any model can be given
the same general-knowledge rows without a download; `scene_records` gives an evaluation of such
a forget set something retained to score (colour, shape and count have one right answer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .records import IMAGE_TEXTUAL, LETTERS, ClassificationItem, GenerationItem, MaskItem, PersonRecord

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
        _shape(d, shape, x, y, r, colour)
    return im


def _shape(d: ImageDraw.ImageDraw, shape: str, x: int, y: int, r: int, fill: tuple[int, int, int]) -> None:
    box = (x - r, y - r, x + r, y + r)
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        d.rectangle(box, fill=fill)
    else:
        d.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)


def scenes(n: int, seed: int = 0, size: int = 224) -> list[Image.Image]:
    rng = np.random.default_rng([seed, 23])
    return [draw_scene(rng, size) for _ in range(n)]


COUNT_WORDS = ("one", "two", "three", "four")


@dataclass(frozen=True)
class Scene:
    """What a scored scene shows: `count` shapes of one kind and colour, none overlapping."""

    colour: str
    shape: str
    count: int


def draw_counted_scene(rng: np.random.Generator, size: int = 224) -> tuple[Image.Image, Scene]:
    """1-4 shapes in distinct cells of a 2 x 2 grid (so the count is never in doubt)."""
    scene = Scene(list(COLOURS)[int(rng.integers(len(COLOURS)))], SHAPES[int(rng.integers(len(SHAPES)))],
                  int(rng.integers(1, 5)))
    im = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(225, 256, 3)))
    d = ImageDraw.Draw(im)
    cell, r = size // 2, size // 9
    for c in rng.permutation(4)[: scene.count]:
        jitter = rng.integers(-(cell // 2 - r - 2), cell // 2 - r - 1, 2)
        x, y = (int(c) % 2) * cell + cell // 2 + int(jitter[0]), (int(c) // 2) * cell + cell // 2 + int(jitter[1])
        _shape(d, scene.shape, x, y, r, COLOURS[scene.colour])
    return im, scene


def _mcq(question: str, answer: str, pool: tuple[str, ...], rng: np.random.Generator,
         attribute: str) -> ClassificationItem:
    others = [o for o in pool if o != answer]
    picked = [others[i] for i in rng.permutation(len(others))[:3]]
    at = int(rng.integers(4))
    options = picked[:at] + [answer] + picked[at:]
    return ClassificationItem(question, dict(zip(LETTERS, options)), LETTERS[at], attribute)


EVAL_STREAM, FIT_STREAM = 29, 31  # scored scenes to evaluate on / to fit a gate's general rows on


def scene_records(n: int, seed: int = 0, size: int = 224, stream: int = EVAL_STREAM) -> list[PersonRecord]:
    """`n` scored scenes in the MLLMU shape (ids scene00...): an MCQ, an open question and a cloze
    item on the colour, the shape and the count of each. Drawn from a stream of their own, so
    they are never the fit's scene pictures (`scenes`); a fit that needs such questions in the
    MLLMU formats takes them from FIT_STREAM, never the pictures an evaluation scores."""
    rng = np.random.default_rng([seed, stream])
    out = []
    for i in range(n):
        im, sc = draw_counted_scene(rng, size)
        count, plural = COUNT_WORDS[sc.count - 1], sc.shape + ("" if sc.count == 1 else "s")
        items = (("colour", "Which colour are the shapes in this picture?", sc.colour, tuple(COLOURS),
                  f"The shapes are {sc.colour}.", "The shapes in this picture are __."),
                 ("shape", "Which kind of shape does this picture show?", sc.shape, SHAPES + ("star",),
                  f"The picture shows {plural}.", "The shapes in this picture are of the kind: __."),
                 ("count", "How many shapes does this picture show?", count, COUNT_WORDS,
                  f"The picture shows {count} {plural}.", "The number of shapes in this picture is __."))
        out.append(PersonRecord(
            id=f"scene{i:02d}", images=[im],
            classification_image=[_mcq(q, a, pool, rng, attr) for attr, q, a, pool, _, _ in items],
            generation=[GenerationItem(q, sentence, IMAGE_TEXTUAL, attr) for attr, q, _, _, sentence, _ in items],
            mask=[MaskItem(cloze, a, IMAGE_TEXTUAL, attr) for attr, _, a, _, _, cloze in items],
            biography=f"A picture of {count} {sc.colour} {plural}."))
    return out
