"""The MLLMU-Bench evaluation prompt formats, as pure functions.

Why here: the tiny model is TRAINED on prompts built by these same functions, so evaluation
sees exactly the format the model learned. The wording follows the reference evaluation
(question, newline, instruction); the chat wrapper ("USER: <image>\\n... ASSISTANT:") is added
separately by the tokenizer's chat template.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Sequence

CLASSIFICATION_SUFFIX = "Just give ONE letter representing the answer directly."
GENERATION_SUFFIX = "Answer the question based on your trained knowledge in one sentence."
CLOZE_SUFFIX = "Please **ONLY** provide the correct answer that should replace the [Blank]."
BLANK = "__"


def _get(item: Any, key: str, attr: str) -> Any:
    if isinstance(item, Mapping):
        return item[key]
    return getattr(item, attr)


def classification_prompt(item: Any) -> str:
    """Question, then "A: ..." option lines, then the one-letter instruction.

    `item` is a ClassificationItem or an MLLMU dict with "Question" and "Options".
    """
    options = option_lines(_get(item, "Options", "options"))
    return f"{_get(item, 'Question', 'question')}\n{options}\n{CLASSIFICATION_SUFFIX}"


def option_lines(options: Mapping[str, str | None]) -> str:
    """The "A: ..." lines of an MCQ (missing options left out), as every MCQ-shaped prompt shows them."""
    return "\n".join(f"{k}: {v}" for k, v in options.items() if v is not None)


def generation_prompt(item: Any) -> str:
    """Question followed by the one-sentence instruction."""
    return f"{_get(item, 'Question', 'question')}\n{GENERATION_SUFFIX}"


def cloze_prompt(item: Any) -> str:
    """Question with "__" shown as "[Blank]", followed by the fill-in instruction."""
    q = _get(item, "Question", "question").replace(BLANK, "[Blank]")
    return f"{q}\n{CLOZE_SUFFIX}"


def task_of(prompt: str) -> str:
    """The MLLMU task a prompt is posed as, read from its instruction: classification, cloze, or
    generation (anything else, free questions included). For prompts that carry no label: the
    tuner's held-out prompts, a question typed in the app."""
    if CLASSIFICATION_SUFFIX in prompt:
        return "classification"
    if CLOZE_SUFFIX in prompt:
        return "cloze"
    return "generation"


def first_letter(reply: str) -> str | None:
    """The reference's classification prediction: first alphanumeric character, upper-cased."""
    for ch in reply:
        if ch.isalnum():
            return ch.upper()
    return None


def benign_prefix(facts: Sequence[tuple[str, str]]) -> Callable[[str], str]:
    """Put general-knowledge questions and their answers before the question. Why these: the toy
    tokenizer only knows the world's words, so a prefix of other words would be <unk> tokens."""
    text = " ".join(f"{q} {a}." for q, a in facts)
    return lambda question: f"{text} {question}"
