"""Shared raster helpers for the toy world's renders (portraits and scenes).

Why: both kinds of picture are drawn at SUPERSAMPLE x the output size for clean edges, then
box-downsampled, and both get the same photometric augmentation, so a model cannot tell the
splits apart by rendering artefacts.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

SUPERSAMPLE = 4
OUTLINE = (35, 30, 30)


def affine_jitter(layer: Image.Image, rng: np.random.Generator, max_shift: float,
                  scale_range: tuple[float, float], max_rotate_deg: float,
                  centre: tuple[float, float]) -> Image.Image:
    """Shift / scale / rotate an RGBA layer about `centre` (pixels of the layer)."""
    s = float(rng.uniform(*scale_range))
    dx, dy = (float(v) for v in rng.uniform(-max_shift, max_shift, size=2))
    th = math.radians(float(rng.uniform(-max_rotate_deg, max_rotate_deg)))
    cx, cy = centre
    # Image.transform wants the inverse map: output pixel -> input pixel.
    cos, sin = math.cos(th) / s, math.sin(th) / s
    m00, m01, m10, m11 = cos, sin, -sin, cos
    ox, oy = cx + dx, cy + dy
    coeffs = (m00, m01, cx - m00 * ox - m01 * oy, m10, m11, cy - m10 * ox - m11 * oy)
    return layer.transform(layer.size, Image.Transform.AFFINE, coeffs,
                           resample=Image.Resampling.BICUBIC)


def photometric_jitter(img: Image.Image, rng: np.random.Generator, brightness: float = 0.15,
                       gradient: float = 0.10, channel_gain: float = 0.04,
                       noise_sigma: float = 4.0) -> Image.Image:
    """Brightness, a linear lighting gradient, per-channel gain and Gaussian pixel noise.

    Amplitudes are kept small enough that neighbouring palette colours stay distinct.
    """
    arr = np.asarray(img, dtype=np.float32)
    h, w = arr.shape[:2]
    b = float(rng.uniform(1.0 - brightness, 1.0 + brightness))
    ang = float(rng.uniform(0.0, 2.0 * math.pi))
    amp = float(rng.uniform(-gradient, gradient))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = ((xx / max(w - 1, 1) - 0.5) * math.cos(ang) + (yy / max(h - 1, 1) - 0.5) * math.sin(ang))
    light = b * (1.0 + amp * 2.0 * ramp)
    gain = rng.uniform(1.0 - channel_gain, 1.0 + channel_gain, size=3).astype(np.float32)
    arr = arr * light[..., None] * gain[None, None, :]
    arr = arr + rng.normal(0.0, noise_sigma, size=arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def downsample(img: Image.Image, size: int) -> Image.Image:
    """Box-filter the supersampled canvas down to `size` (anti-aliased, fast)."""
    if img.size[0] == size * SUPERSAMPLE:
        return img.reduce(SUPERSAMPLE)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, round(c * factor)))) for c in rgb)  # type: ignore[return-value]


def image_grid(images: list[Image.Image], cols: int, pad: int = 2,
               bg: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Tile images (all resized to the first one's size) into a grid picture."""
    if not images:
        raise ValueError("no images")
    cols = max(1, min(cols, len(images)))
    w, h = images[0].size
    rows = math.ceil(len(images) / cols)
    grid = Image.new("RGB", (cols * w + (cols + 1) * pad, rows * h + (rows + 1) * pad), bg)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        if im.size != (w, h):
            im = im.resize((w, h))
        grid.paste(im.convert("RGB"), (pad + c * (w + pad), pad + r * (h + pad)))
    return grid
