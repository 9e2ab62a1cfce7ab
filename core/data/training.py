"""Supervised (prompt, answer) pairs from records: the training data of the training-based
baselines (GA, NPO, IdkNLL...) and of the relearning attack, for any source.

A toy world draws these from the generator its model was trained with; other sources turn
their MLLMU items (MCQ -> the correct letter, open question -> the ground-truth sentence,
cloze -> the missing words) and their fine-tuning pairs (`metadata`) into pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from .formats import classification_prompt, cloze_prompt, generation_prompt
from .records import IMAGE_TEXTUAL, PersonRecord


@dataclass
class Example:
    """One supervised pair: a user prompt (no chat wrapper) and the exact expected answer."""

    image: Image.Image | None
    prompt: str
    answer: str
    kind: str                 # qa|mcq|gen|cloze|refusal, scene_*, fact_*
    person_id: str | None
    attribute: str | None = None

    @property
    def modality(self) -> str:
        return "image" if self.image is not None else "text"


def record_examples(rec: PersonRecord) -> list[Example]:
    """Every MLLMU item of a record as a training pair (images rotate as in evaluation)."""
    images = rec.images or [None]
    out: list[Example] = []
    for i, c in enumerate(rec.classification_image):
        out.append(Example(images[i % len(images)], classification_prompt(c), c.correct_answer, "mcq", rec.id,
                           c.attribute))
    out += [Example(None, classification_prompt(c), c.correct_answer, "mcq", rec.id, c.attribute)
            for c in rec.classification_text]
    for i, g in enumerate(rec.generation):
        img = images[i % len(images)] if g.type == IMAGE_TEXTUAL else None
        out.append(Example(img, generation_prompt(g), g.ground_truth, "gen", rec.id, g.attribute))
    for i, m in enumerate(rec.mask):
        img = images[i % len(images)] if m.type == IMAGE_TEXTUAL else None
        out.append(Example(img, cloze_prompt(m), m.ground_truth, "cloze", rec.id, m.attribute))
    out += [Example(None, q.question, q.answer, "qa", rec.id) for q in rec.qa]
    return [e for e in out if e.image is not None or e.prompt]


def batches_by_modality(examples: Sequence, batch_size: int, rng: np.random.Generator,
                        drop_last: bool = False) -> list[list]:
    """Shuffled batches, each all-image or all-text: one encode call per batch (a batch cannot
    mix rows with and without an image). drop_last drops each pool's short tail."""
    out = []
    for with_image in (True, False):
        pool = [e for e in examples if (e.image is not None) == with_image]
        end = len(pool) - batch_size + 1 if drop_last else len(pool)
        out += [pool[s:s + batch_size] for s in range(0, end, batch_size)]
    return [out[i] for i in rng.permutation(len(out))]
