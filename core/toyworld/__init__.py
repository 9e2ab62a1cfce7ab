"""The synthetic toy world: fictitious people, portraits, MLLMU-Bench-schema questions.

Import-light on purpose (no torch / transformers): the tokenizer lives in `vocab` and the
parquet I/O in `mllmu`; import those modules directly.
"""

from .people import Person, make_people
from .portraits import portrait_grid, render_portrait
from core.data.formats import classification_prompt, cloze_prompt, generation_prompt
from .questions import REFUSAL
from core.data.records import ClassificationItem, GenerationItem, MaskItem, PersonRecord, QAPair
from .scenes import SceneSpec, render_scene
from .world import Example, World, WorldConfig, make_world

__all__ = [
    "Person", "make_people", "render_portrait", "render_scene", "portrait_grid", "SceneSpec",
    "classification_prompt", "generation_prompt", "cloze_prompt", "REFUSAL",
    "ClassificationItem", "GenerationItem", "MaskItem", "PersonRecord", "QAPair",
    "Example", "World", "WorldConfig", "make_world",
]
