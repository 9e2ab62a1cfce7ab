"""Shared, read-only resources of the app and the handlers' logic, free of Gradio.

Why separate from the UI: every handler is a plain function of (workbench, inputs) that tests
call directly; the Gradio layer only wires components to them. The model and eraser are shared
by all users and never mutated: steering settings live in a ContextVar per request (see
core.steering), so concurrent users cannot see each other's strengths.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from core.eraser import Eraser
from core.models.base import VLMAdapter
from core.models.load import load_adapter

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "assets" / "toy-llava"
DEFAULT_ERASER = ROOT / "assets" / "toy-llava-eraser"
MAX_PIXELS = 4096 * 4096
MAX_QUESTION_CHARS = 2000


class UserError(ValueError):
    """Bad input from the user: the message is shown in the UI as is."""


def read_image(source) -> Image.Image:
    """A PIL image from an upload (path, bytes or PIL), refusing non-images, corrupt and huge files."""
    if source is None:
        raise UserError("No image: upload a picture or pick a person from the gallery.")
    if isinstance(source, Image.Image):
        img = source
    else:
        try:
            data = Path(source).read_bytes() if isinstance(source, (str, os.PathLike)) else bytes(source)
        except OSError as exc:
            raise UserError(f"Could not read the uploaded file ({exc.strerror}).") from exc
        try:
            img = Image.open(io.BytesIO(data))  # lazy: the size is known before any pixel is decoded
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as exc:
            raise UserError("That file is not a readable image. Upload a PNG, JPEG or WebP picture.") from exc
    if img.width * img.height > MAX_PIXELS:
        raise UserError(f"The image is {img.width}x{img.height} pixels; the limit is "
                        f"{MAX_PIXELS // 1_000_000} megapixels. Please upload a smaller image.")
    try:
        return img.convert("RGB")  # decodes the pixels: truncated files fail here
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError("That file is not a readable image. Upload a PNG, JPEG or WebP picture.") from exc


def check_question(question: str | None) -> str:
    q = (question or "").strip()
    if not q:
        raise UserError("The question is empty: type a question about the image.")
    if len(q) > MAX_QUESTION_CHARS:
        raise UserError(f"The question is {len(q)} characters long; keep it under {MAX_QUESTION_CHARS}.")
    return q


def check_strength(strength) -> float:
    try:
        s = float(strength)
    except (TypeError, ValueError):
        raise UserError(f"Strength must be a number, got {strength!r}.") from None
    if not -10 <= s <= 10:
        raise UserError(f"Strength {s} is outside the useful range [-10, 10].")
    return s


@dataclass
class Comparison:
    original: str
    steered: str
    gates: dict[int, float]  # per-layer gate value of this input (read at the last prompt token)


class Workbench:
    """The loaded model, its world (if it is a toy model) and the current default eraser."""

    def __init__(self, adapter: VLMAdapter, eraser: Eraser | None, world=None):
        self.adapter = adapter
        self.eraser = eraser
        self.world = world

    @classmethod
    def load(cls, model: str | Path = DEFAULT_MODEL, eraser: str | Path | None = DEFAULT_ERASER) -> "Workbench":
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
        adapter = load_adapter(model)
        world = None
        if (Path(model) / "world.json").is_file():
            from core.toyworld.train import load_world
            world = load_world(model)
        er = Eraser.from_pretrained(eraser, adapter=adapter) if eraser and Path(eraser).is_dir() else None
        return cls(adapter, er, world)

    @property
    def eraser_split(self) -> str:
        return (self.eraser.config.forget_split if self.eraser else "") or "forget_10"

    @property
    def layers(self) -> list[int]:
        return list(range(self.adapter.num_layers))

    def compare(self, image, question: str, strength: float, layers: list[int] | None, mode: str | None = None,
                max_new_tokens: int = 40) -> Comparison:
        """Original and steered greedy answers to one input, and the per-layer gates."""
        if self.eraser is None:
            raise UserError("No eraser is loaded: fit one first (python -m core fit) or load one.")
        q = check_question(question)
        s = check_strength(strength)
        img = None if image is None else read_image(image)
        batch = self.adapter.encode([q], None if img is None else [img])
        original = self.adapter.generate(batch, max_new_tokens)[0]
        chosen = self.eraser.config.steer_layers if layers is None else layers
        with self.eraser.apply(self.adapter, strength=s, layers=chosen, mode=mode) as h:
            steered = self.adapter.generate(batch, max_new_tokens)[0]
        gates = {l: float(g[0]) for l, g in sorted(h.gates.items()) if l in self.eraser.fitted_layers}
        return Comparison(original, steered, gates)
