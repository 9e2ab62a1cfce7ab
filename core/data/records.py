"""Records in the MLLMU-Bench shape, and the engine's input type (`Prompt`).

Why one set of dataclasses: the engine should not care whether a subject came from our toy
world, from the real benchmark's parquet files or from a folder of photos, so every source is
loaded into these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    import torch

IMAGE_TEXTUAL = "Image_Textual"
PURE_TEXT = "Pure_Text"
LETTERS: tuple[str, ...] = ("A", "B", "C", "D")


def name_key(name: str) -> str:
    """A person's name as compared across sources: case, runs of spaces, hyphens and underscores
    do not make another person ("Jonas  Dalton " is "jonas dalton"; the folder jean-luc_picard's
    "Jean-Luc Picard" is the app's "Jean Luc Picard", read off jean-luc_picard.jpg, which was
    taken for someone else)."""
    return " ".join(str(name).replace("-", " ").replace("_", " ").split()).casefold()


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


@dataclass
class Prompt:
    """One model input: a question with an optional image (PIL or a (3,S,S) tensor in [0,1]).

    `history` (earlier (question, answer) turns, the image shown in the first) and `prefill`
    (the forced start of the reply) turn it into a later turn of a conversation."""

    question: str
    image: Image.Image | torch.Tensor | None = None
    tag: str = ""  # free label (person id, split...) carried through for plots
    history: tuple[tuple[str, str], ...] = ()
    prefill: str = ""

    def __post_init__(self) -> None:
        # lists from user code become tuples: prompts are grouped by (question, image, turns)
        self.history = tuple((str(q), str(a)) for q, a in self.history)
