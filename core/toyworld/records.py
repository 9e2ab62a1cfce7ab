"""Evaluation records in the MLLMU-Bench shape, shared by our world and real MLLMU parquet files.

Why one set of dataclasses: the evaluation runner should not care whether a person came from
our toy world or from the real benchmark, so both are loaded into these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

IMAGE_TEXTUAL = "Image_Textual"
PURE_TEXT = "Pure_Text"
LETTERS: tuple[str, ...] = ("A", "B", "C", "D")


@dataclass
class ClassificationItem:
    """A multiple-choice question. `attribute` is ours (None for real MLLMU rows)."""

    question: str
    options: dict[str, str]
    correct_answer: str
    attribute: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"Question": self.question, "Options": dict(self.options),
                "Correct_Answer": self.correct_answer}

    @property
    def answer_text(self) -> str:
        return self.options[self.correct_answer]


@dataclass
class GenerationItem:
    """An open question scored by ROUGE-L against a one-sentence ground truth."""

    question: str
    ground_truth: str
    type: str
    attribute: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"Question": self.question, "Ground_Truth": self.ground_truth, "Type": self.type}


@dataclass
class MaskItem:
    """A cloze item: `question` contains "__"; correct if ground_truth is in the reply."""

    question: str
    ground_truth: str
    type: str
    attribute: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"Question": self.question, "Ground_Truth": self.ground_truth, "Type": self.type}


@dataclass
class QAPair:
    """A fine-tuning pair (the MLLMU `metadata` field)."""

    question: str
    answer: str

    def to_dict(self) -> dict[str, str]:
        return {"Question": self.question, "Answer": self.answer}


@dataclass
class PersonRecord:
    """One MLLMU row: a person (or a real-split scene), its image(s) and its questions."""

    id: str
    images: list[Image.Image] = field(default_factory=list)
    classification_image: list[ClassificationItem] = field(default_factory=list)
    classification_text: list[ClassificationItem] = field(default_factory=list)
    generation: list[GenerationItem] = field(default_factory=list)
    mask: list[MaskItem] = field(default_factory=list)
    qa: list[QAPair] = field(default_factory=list)
    biography: str | None = None
    name: str | None = None

    @property
    def image(self) -> Image.Image | None:
        """The first image (MLLMU `image`; for the test split, the first of `images`)."""
        return self.images[0] if self.images else None
