"""Procedural face portraits of the toy world's people.

Why: a multimodal model must recognise WHO is in the picture, so every person needs a stable
look (face shape, skin, hair, eyes, accessory, shirt, background) that survives augmentation.
With `rng=None` the render is canonical (the "training photo"); with an rng it is shifted,
scaled, slightly rotated, re-lit and noised, so memorising pixels does not work.

Every visual attribute is drawn inside a safe area that stays on canvas under the largest
jitter, every shape has a dark outline (so white hair on a lemon background, or a black shirt
on dark skin, is still visible), and no accessory covers another attribute: glasses are
see-through rings, earrings hang in front of long hair, the headband crosses the hair without
hiding its style or colour.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from .drawing import (OUTLINE, SUPERSAMPLE, affine_jitter, downsample, image_grid,
                      photometric_jitter, shade)
from .people import Person
from .scenes import SceneSpec, render_scene  # noqa: F401  (re-exported: one place to render)

SKIN_RGB: dict[str, tuple[int, int, int]] = {
    "pale": (252, 226, 208), "fair": (236, 192, 158), "tan": (204, 148, 100),
    "brown": (150, 96, 60), "dark": (96, 62, 42),
}
HAIR_RGB: dict[str, tuple[int, int, int]] = {
    "black": (28, 26, 26), "brown": (112, 66, 30), "blonde": (236, 202, 88),
    "red": (196, 58, 28), "grey": (150, 150, 155), "white": (248, 248, 248),
}
EYE_RGB: dict[str, tuple[int, int, int]] = {
    "brown": (105, 58, 20), "blue": (40, 110, 235), "green": (30, 165, 60), "amber": (235, 150, 0),
}
SHIRT_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35), "orange": (245, 130, 20), "yellow": (245, 215, 30),
    "green": (40, 150, 60), "blue": (35, 80, 215), "purple": (130, 50, 170),
    "pink": (240, 120, 180), "black": (30, 30, 35),
}
BACKGROUND_RGB: dict[str, tuple[int, int, int]] = {
    "mint": (170, 232, 192), "peach": (252, 204, 166), "lavender": (206, 186, 244),
    "sky": (164, 212, 248), "lemon": (246, 240, 150),
}
ACCENT_RGB = (0, 160, 160)        # headband and bowtie: teal, a colour no hair/shirt uses
GOLD_RGB = (240, 190, 40)
PEARL_RGB = (250, 250, 245)

# Face bounding boxes (x0, y0, x1, y1) in 64-pixel units. Different widths and chin heights
# make the shape readable even though the hair covers the forehead.
FACE_BOX: dict[str, tuple[float, float, float, float]] = {
    "round": (18.5, 17.0, 45.5, 45.0),
    "oval": (22.0, 16.5, 42.0, 48.5),
    "square": (19.5, 17.0, 44.5, 45.0),
    "heart": (18.5, 17.0, 45.5, 47.0),
}
CENTRE = (32.0, 32.0)          # jitter pivot, in 64-pixel units
MAX_SHIFT = 3.0                # 64-pixel units
SCALE_RANGE = (0.92, 1.08)
MAX_ROTATE_DEG = 4.0


class _Pen:
    """ImageDraw in 64-pixel units, so the layout is written once for any output size."""

    def __init__(self, img: Image.Image, size: int) -> None:
        self.d = ImageDraw.Draw(img)
        self.k = size * SUPERSAMPLE / 64.0
        self.w = max(1, round(0.9 * self.k))  # outline width ~0.9 output pixels

    def box(self, b: tuple[float, float, float, float]) -> list[float]:
        return [v * self.k for v in b]

    def pts(self, pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(x * self.k, y * self.k) for x, y in pts]

    def ellipse(self, b, fill, outline=OUTLINE, width=None):
        self.d.ellipse(self.box(b), fill=fill, outline=outline, width=self.w if width is None else width)

    def circle(self, cx, cy, r, fill, outline=OUTLINE):
        self.ellipse((cx - r, cy - r, cx + r, cy + r), fill, outline)

    def polygon(self, pts, fill, outline=OUTLINE):
        self.d.polygon(self.pts(pts), fill=fill, outline=outline, width=self.w)

    def rrect(self, b, r, fill, outline=OUTLINE):
        self.d.rounded_rectangle(self.box(b), radius=r * self.k, fill=fill, outline=outline, width=self.w)

    def chord(self, b, start, end, fill, outline=OUTLINE):
        self.d.chord(self.box(b), start, end, fill=fill, outline=outline, width=self.w)

    def arc(self, b, start, end, fill, width_units):
        self.d.arc(self.box(b), start, end, fill=fill, width=max(1, round(width_units * self.k)))

    def line(self, pts, fill, width_units):
        self.d.line(self.pts(pts), fill=fill, width=max(1, round(width_units * self.k)))


def _heart_points(b: tuple[float, float, float, float]) -> list[tuple[float, float]]:
    """Wide rounded brow tapering to a pointed chin, as one polygon (one clean outline)."""
    x0, y0, x1, y1 = b
    cx, rx = (x0 + x1) / 2, (x1 - x0) / 2
    ry = (y1 - y0) * 0.42
    cy = y0 + ry
    top = [(cx + rx * math.cos(t), cy - ry * math.sin(t))
           for t in np.linspace(0.0, math.pi, 24)]
    left_jaw = [(x0 + rx * 0.12, cy + ry * 0.55), (cx - rx * 0.35, y1 - 3.0), (cx, y1)]
    right_jaw = [(cx + rx * 0.35, y1 - 3.0), (x1 - rx * 0.12, cy + ry * 0.55)]
    return top + left_jaw + right_jaw + [(x1, cy)]


def _draw_background(img: Image.Image, pen: _Pen, person: Person, phase: tuple[float, float]) -> None:
    base = BACKGROUND_RGB[person.background_colour]
    dark = shade(base, 0.78)
    img.paste(base, (0, 0, img.size[0], img.size[1]))
    px, py = phase
    pat = person.background_pattern
    if pat == "stripes":
        for x in np.arange(-8.0, 72.0, 8.0):
            pen.d.rectangle(pen.box((x + px, 0, x + px + 4.0, 64)), fill=dark)
    elif pat == "dots":
        for y in np.arange(-8.0, 72.0, 8.0):
            for x in np.arange(-8.0, 72.0, 8.0):
                off = 4.0 if int(round(y / 8.0)) % 2 else 0.0
                pen.d.ellipse(pen.box((x + px + off - 1.8, y + py - 1.8, x + px + off + 1.8, y + py + 1.8)), fill=dark)
    elif pat == "checks":
        for j, y in enumerate(np.arange(-12.0, 72.0, 6.0)):
            for i, x in enumerate(np.arange(-12.0, 72.0, 6.0)):
                if (i + j) % 2 == 0:
                    pen.d.rectangle(pen.box((x + px, y + py, x + px + 6.0, y + py + 6.0)), fill=dark)


def _draw_figure(pen: _Pen, p: Person) -> None:
    skin = SKIN_RGB[p.skin_tone]
    hair = HAIR_RGB[p.hair_colour]
    fx0, fy0, fx1, fy1 = FACE_BOX[p.face_shape]
    cx = (fx0 + fx1) / 2

    # Hair behind the head (long hair: panels down to the shoulders, over the shirt).
    if p.hair_style == "long":
        pen.rrect((fx0 - 3.5, fy0 - 3.0, fx1 + 3.5, 51.0), 6.0, hair)

    # Neck and shirt (a dome cut by the bottom edge).
    pen.rrect((cx - 5.0, fy1 - 6.0, cx + 5.0, 52.0), 1.5, skin)
    shirt = SHIRT_RGB[p.shirt_colour]
    if p.hair_style == "long":  # shirt must stay visible around long hair: draw it wider
        pen.ellipse((6.0, 49.0, 58.0, 90.0), shirt)
        for x0 in (fx0 - 3.5, fx1 - 3.0):  # two strands fall over the shoulders
            pen.rrect((x0, 40.0, x0 + 6.5, 57.0), 3.0, hair)
    else:
        pen.ellipse((8.0, 49.0, 56.0, 90.0), shirt)

    # Ears, then the face.
    ey = (fy0 + fy1) / 2 + 1.0
    for ex in (fx0 - 1.5, fx1 + 1.5):
        pen.ellipse((ex - 2.5, ey - 3.5, ex + 2.5, ey + 3.5), skin)
    if p.face_shape == "square":
        pen.rrect((fx0, fy0, fx1, fy1), 4.0, skin)
    elif p.face_shape == "heart":
        pen.polygon(_heart_points((fx0, fy0, fx1, fy1)), skin)
    else:
        pen.ellipse((fx0, fy0, fx1, fy1), skin)

    # Hair on top: a cap down to the forehead, plus the style's own silhouette.
    cap = (fx0 - 2.0, fy0 - 4.5, fx1 + 2.0, fy0 + 15.0)
    if p.hair_style == "curly":
        a, b = (cap[2] - cap[0]) / 2, (cap[3] - cap[1]) / 2
        ccx, ccy = (cap[0] + cap[2]) / 2, (cap[1] + cap[3]) / 2
        pen.chord(cap, 180, 360, hair, outline=None)
        for t in np.linspace(math.pi * 1.02, math.pi * 1.98, 9):
            pen.circle(ccx + a * math.cos(t), ccy + b * math.sin(t) + 1.0, 3.6, hair)
        for side in (-1, 1):  # curls down the sides to ear level
            for yy in (ccy + 2.0, ccy + 6.5):
                pen.circle(ccx + side * (a - 0.5), yy, 3.0, hair)
    else:
        if p.hair_style == "spiky":
            tips = np.linspace(cap[0] + 4.0, cap[2] - 4.0, 5)
            for x in tips:
                pen.polygon([(x - 4.0, fy0 + 1.0), (x, fy0 - 9.0), (x + 4.0, fy0 + 1.0)], hair)
        if p.hair_style == "bun":
            pen.circle(cx, fy0 - 5.5, 4.2, hair)
        pen.chord(cap, 180, 360, hair)
        if p.hair_style in ("short", "spiky", "bun"):  # sideburns down to the ears
            for x0 in (fx0 - 2.0, fx1 - 1.5):
                pen.rrect((x0, fy0 + 4.0, x0 + 3.5, ey - 2.0), 1.5, hair)

    # Eyes: white, with a large iris so its colour covers several output pixels.
    eye_y = ey - 2.5
    dx = 6.0 if p.face_shape != "oval" else 5.2
    for x in (cx - dx, cx + dx):
        pen.ellipse((x - 3.3, eye_y - 2.4, x + 3.3, eye_y + 2.4), (255, 255, 255))
        pen.circle(x, eye_y, 1.9, EYE_RGB[p.eye_colour], outline=None)
        pen.circle(x, eye_y, 0.55, (15, 15, 15), outline=None)
    # Nose and mouth.
    pen.line([(cx, eye_y + 3.0), (cx - 1.0, eye_y + 6.5), (cx + 0.5, eye_y + 6.8)], shade(skin, 0.7), 0.6)
    mouth_y = min(eye_y + 10.0, fy1 - 4.0)
    pen.arc((cx - 4.0, mouth_y - 3.0, cx + 4.0, mouth_y + 1.5), 20, 160, (150, 40, 50), 0.9)

    # Accessories, drawn last and never on top of the eyes' colour or the hair's shape.
    acc = p.accessory
    if acc == "glasses":
        for x in (cx - dx, cx + dx):
            pen.ellipse((x - 4.3, eye_y - 3.6, x + 4.3, eye_y + 3.6), None, outline=(20, 20, 20),
                        width=max(1, round(1.0 * pen.k)))
        pen.line([(cx - dx + 4.3, eye_y), (cx + dx - 4.3, eye_y)], (20, 20, 20), 1.0)
    elif acc == "earrings":
        for ex in (fx0 - 1.5, fx1 + 1.5):
            pen.line([(ex, ey + 3.0), (ex, ey + 5.0)], GOLD_RGB, 0.7)
            pen.circle(ex, ey + 6.5, 2.0, GOLD_RGB)
    elif acc == "headband":
        band = (cap[0] + 0.5, cap[1] + 3.0, cap[2] - 0.5, cap[3] + 3.0)
        pen.arc(band, 195, 345, OUTLINE, 3.2)
        pen.arc(band, 197, 343, ACCENT_RGB, 2.0)
    elif acc == "bowtie":
        y = 52.0
        pen.polygon([(cx, y), (cx - 6.0, y - 3.5), (cx - 6.0, y + 3.5)], ACCENT_RGB)
        pen.polygon([(cx, y), (cx + 6.0, y - 3.5), (cx + 6.0, y + 3.5)], ACCENT_RGB)
        pen.circle(cx, y, 1.6, ACCENT_RGB)
    elif acc == "necklace":
        for t in np.linspace(math.radians(35), math.radians(145), 9):
            pen.circle(cx + 8.0 * math.cos(t), 49.0 + 4.5 * math.sin(t), 1.25, PEARL_RGB)


def render_portrait(person: Person, rng: np.random.Generator | None = None, size: int = 64,
                    *, photometric: bool = True) -> Image.Image:
    """Draw `person` as an RGB `size`x`size` portrait.

    rng=None gives the canonical render (identical bytes on every call). With an rng the
    figure is shifted (+-3 px), scaled (0.92-1.08), rotated (+-4 deg), the background pattern
    is re-phased, and (if `photometric`) lighting, per-channel gain and pixel noise change.
    """
    big = size * SUPERSAMPLE
    canvas = Image.new("RGB", (big, big))
    pen = _Pen(canvas, size)
    phase = (0.0, 0.0) if rng is None else tuple(float(v) for v in rng.uniform(0.0, 8.0, size=2))
    _draw_background(canvas, pen, person, phase)  # type: ignore[arg-type]
    layer = figure_layer(person, size)
    if rng is not None:
        k = pen.k
        layer = affine_jitter(layer, rng, MAX_SHIFT * k, SCALE_RANGE, MAX_ROTATE_DEG,
                              (CENTRE[0] * k, CENTRE[1] * k))
    canvas.paste(layer, (0, 0), layer)
    out = downsample(canvas, size)
    if rng is not None and photometric:
        out = photometric_jitter(out, rng)
    return out


def figure_layer(person: Person, size: int = 64) -> Image.Image:
    """The canonical figure alone on a transparent supersampled layer (for layout checks)."""
    layer = Image.new("RGBA", (size * SUPERSAMPLE, size * SUPERSAMPLE), (0, 0, 0, 0))
    _draw_figure(_Pen(layer, size), person)
    return layer


def portrait_grid(images: list[Image.Image], cols: int, pad: int = 2) -> Image.Image:
    """Tile portraits into one picture (README figures, visual checks)."""
    return image_grid(images, cols, pad=pad)
