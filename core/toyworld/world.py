"""The toy world: people, MLLMU-style splits, training examples and evaluation items.

Why: one seeded object gives every experiment the same people, the same nested forget splits
and byte-identical renders, so "vanilla vs retain-only vs unlearned" comparisons differ only
in the model. Randomness is split into independent named streams (numpy SeedSequence keyed by
[seed, stream, index]), so e.g. a person's eval items do not change when n_real_scenes does,
and test-split renders never coincide with training renders.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .people import Person, make_people
from .portraits import render_portrait
from .questions import (FORMATS, GENERAL_FACTS, IMAGE, TEST, TRAIN, TextExample, fact_eval_items,
                        fact_training_texts, image_mcqs, name_drills, option_drills, option_lookups, option_pool,
                        person_eval_items, person_qa_pairs, person_training_texts, private_requests,
                        refusal_prompts, REFUSAL, TEXT, scene_eval_items, scene_training_texts, scene_value,
                        SCENE_ATTRIBUTES, SCENE_TEMPLATES)
from core.data.records import PersonRecord, QAPair
from core.data.training import Example
from .scenes import SceneSpec, random_scene_spec, render_scene

# Independent random streams: np.random.default_rng([seed, STREAM, index...]).
_S_SPLITS, _S_EVAL, _S_TEST_ITEMS, _S_TEST_IMAGES, _S_REAL_SPECS, _S_REAL_ITEMS, _S_REAL_IMAGES = range(1, 8)

RngLike = np.random.Generator | int


def as_rng(rng: RngLike) -> np.random.Generator:
    """Accept a Generator or an int seed; never fall back to global random state."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(int(rng))


@dataclass(frozen=True)
class WorldConfig:
    """Everything that defines a world. Same config -> identical world, renders and files."""

    seed: int = 0
    n_people: int = 100
    n_real_scenes: int = 40          # rows of the `real` eval split
    image_size: int = 64
    n_test_images: int = 3           # new renders per person in the `test` split (`images`)
    min_visual_distance: int = 3     # pairwise visual-attribute Hamming distance
    forget_percents: tuple[int, ...] = (5, 10, 15)
    default_forget_percent: int = 10  # used by split names without a number ("forget")
    images_per_person: int = 4       # training renders per person per call (1 canonical + jittered)
    n_train_scenes: int = 200        # random scenes per training_examples call
    refusals_per_person: int = 4
    fact_repeats: int = 4
    option_drills: int = 1500        # letter-matching MCQ drills per training_examples call
    option_lookups: int = 1500       # reverse drills ("What is option B?") per call
    private_requests: int = 1000     # grammar-drawn private-data requests per call
    mcq_per_question: int = 3        # MCQs (fresh options each) per person question per call


@dataclass
class World:
    """A generated world. Build with make_world(cfg)."""

    cfg: WorldConfig
    people: list[Person]
    forget_ids: dict[int, tuple[str, ...]]       # percent -> ids (nested)
    real_specs: list[SceneSpec]
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {p.id: i for i, p in enumerate(self.people)}

    # ------------------------------------------------------------ people and splits
    @property
    def names(self) -> list[str]:
        return [p.name for p in self.people]

    def person(self, pid: str) -> Person:
        return self.people[self._index[pid]]

    def _percent(self, split: str) -> tuple[str, int]:
        """'forget_10' -> ('forget', 10); 'retain_90' -> ('retain', 10); 'test' -> default."""
        kind, _, num = split.partition("_")
        forms = (f"forget_N, retain_N or test_N with N one of {sorted(self.forget_ids)} (percent of the people), "
                 "real, or comma-separated person ids such as p002,p009")
        if kind not in ("forget", "retain", "test", "real") or (num and not num.isdigit()):
            raise ValueError(f"unknown split {split!r}: name {forms}")
        if kind == "real":
            return kind, 0
        pct = int(num) if num else self.cfg.default_forget_percent
        if kind == "retain" and pct not in self.forget_ids and (100 - pct) in self.forget_ids:
            pct = 100 - pct  # MLLMU naming: retain_90 is the complement of forget_10
        if pct not in self.forget_ids:
            raise ValueError(f"no forget split of {pct}% (have {sorted(self.forget_ids)})")
        return kind, pct

    def _forget_ids(self, split: str | Sequence[str]) -> tuple[str, ...]:
        if isinstance(split, str):
            return self.forget_ids[self._percent(split)[1]]
        ids = tuple(dict.fromkeys(split))
        unknown = [i for i in ids if i not in self._index]
        if unknown or not ids:
            raise ValueError(f"a hand-picked forget set needs known person ids; got unknown {unknown}" if unknown
                             else "a hand-picked forget set needs at least one person")
        return ids

    def forget_people(self, split: str | Sequence[str] = "forget") -> list[Person]:
        """The people of a forget split ('forget_10'), or of a hand-picked list of person ids."""
        return [self.person(i) for i in self._forget_ids(split)]

    def retain_people(self, split: str | Sequence[str] = "forget") -> list[Person]:
        """Everyone not in the given forget split ('forget_10', 'retain_10', 'retain_90' or ids)."""
        gone = set(self._forget_ids(split))
        return [p for p in self.people if p.id not in gone]

    # ------------------------------------------------------------ rendering
    def render(self, person: Person, rng: np.random.Generator | None = None) -> Image.Image:
        return render_portrait(person, rng, self.cfg.image_size)

    def canonical_image(self, person: Person) -> Image.Image:
        return self.render(person, None)

    def _stream(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, *keys])

    # ------------------------------------------------------------ training data
    def training_examples(self, exclude_ids: Iterable[str] = (), *, rng: RngLike,
                          formats: Iterable[str] = FORMATS, images_per_person: int | None = None,
                          n_scenes: int | None = None, include_refusals: bool = True,
                          include_real: bool = True, shuffle: bool = True) -> list[Example]:
        """Fine-tuning data: every included person's facts in the 3 eval formats + short QA,
        refusals to private-data requests, and generic scene / general-fact questions.

        Prompts are the raw user text (wrap them with the tokenizer's chat template); image
        examples carry their render, text-only ones have image=None.
        `exclude_ids` drops people entirely (their facts, refusals and their names as MCQ
        distractors): pass the forget ids to train a RETAIN-ONLY model. `rng` (Generator or
        int seed) is required: each call draws fresh renders (plus the canonical one), MCQ
        options and scenes from it, so calling it per epoch gives new augmentations.
        """
        rng = as_rng(rng)
        fmts = tuple(formats)
        excluded = set(exclude_ids)
        unknown = excluded - set(self._index)
        if unknown:
            raise KeyError(f"unknown person ids: {sorted(unknown)}")
        people = [p for p in self.people if p.id not in excluded]
        names = list(option_pool("name", [p.name for p in people], avoid=self.names))
        k = self.cfg.images_per_person if images_per_person is None else images_per_person
        out: list[Example] = []
        canonical = {}
        for p in people:
            imgs = [self.canonical_image(p)] + [self.render(p, rng) for _ in range(max(0, k - 1))]
            canonical[p.id] = imgs[0]
            texts = person_training_texts(p, rng, names, fmts,
                                          self.cfg.refusals_per_person if include_refusals else 0,
                                          self.cfg.mcq_per_question)
            out.extend(self._attach(texts, imgs, rng))
        if include_refusals and self.cfg.private_requests and people:  # no draw at 0 (shipped data unchanged)
            who = [people[int(i)] for i in rng.integers(len(people), size=self.cfg.private_requests)]
            by_image = [j % 2 == 0 for j in range(len(who))]
            prompts = private_requests(rng, [None if im else p.name for p, im in zip(who, by_image)])
            out.extend(Example(canonical[p.id] if im else None, q, REFUSAL, "refusal", p.id, "refusal")
                       for p, im, q in zip(who, by_image, prompts))
        if include_real:
            for _ in range(self.cfg.n_train_scenes if n_scenes is None else n_scenes):
                spec = random_scene_spec(rng)
                img = render_scene(spec, rng, self.cfg.image_size)
                out.extend(self._attach(scene_training_texts(spec, rng, fmts), [img], rng))
            for _ in range(self.cfg.fact_repeats):
                out.extend(self._attach(fact_training_texts(rng, fmts), [], rng))
            if "mcq" in fmts:
                out.extend(self._attach(option_drills(rng, self.cfg.option_drills), [], rng))
                if self.cfg.option_lookups:  # no draw at 0: the shipped recipe's data stay byte-identical
                    out.extend(self._attach(option_lookups(rng, self.cfg.option_lookups), [], rng))
        if shuffle:
            out = [out[i] for i in rng.permutation(len(out))]
        return out

    def image_mcq_focus(self, exclude_ids: Iterable[str] = (), *, rng: RngLike, name_mcqs: int = 6,
                        other_mcqs: int = 3, n_name_drills: int = 1500) -> list[Example]:
        """Extra image MCQs for the second training phase (ToyModelConfig.focus_steps).

        Why: after the main phase the model named every person in a picture (generation and
        cloze 100%) but picked the right name among four options only about half the time
        (retain image MCQ by attribute: names 54%, others 88-96%; text MCQ 96.5%). Names are the
        only two-word options. `name_mcqs` more "who is this?" MCQs per name question, each with
        fresh options, on the canonical portrait or one fresh render; `other_mcqs` the same for
        every other picture question; `n_name_drills` text drills that match full names
        (questions.name_drills). Forget ids in `exclude_ids` are left out as in training_examples."""
        rng = as_rng(rng)
        excluded = set(exclude_ids)
        people = [p for p in self.people if p.id not in excluded]
        names = list(option_pool("name", [p.name for p in people], avoid=self.names))
        out: list[Example] = []
        for p in people:
            imgs = [self.canonical_image(p), self.render(p, rng)]
            out.extend(self._attach(image_mcqs(p, rng, names, name_mcqs, other_mcqs), imgs, rng))
        avoid = [p.name for p in self.people if p.id in excluded]
        out.extend(self._attach(name_drills(rng, n_name_drills, avoid), [], rng))
        return out

    @staticmethod
    def _attach(texts: list[TextExample], images: list[Image.Image],
                rng: np.random.Generator) -> list[Example]:
        res = []
        for t in texts:
            img = images[int(rng.integers(len(images)))] if t.modality == IMAGE else None
            res.append(Example(img, t.prompt, t.answer, t.kind, t.person_id, t.attribute))
        return res

    def refusal_examples(self, split: str = "forget", which: str = TEST) -> list[Example]:
        """Private-data requests about a split's people (held-out wording by default), each
        with the canonical image (image+text) and by name (text-only); answer = REFUSAL."""
        kind, _ = self._percent(split)
        people = self.retain_people(split) if kind == "retain" else self.forget_people(split)
        out = []
        for p in people:
            img = self.canonical_image(p)
            for mod in (IMAGE, TEXT):
                for q in refusal_prompts(p, mod, which):
                    out.append(Example(img if mod == IMAGE else None, q, REFUSAL, "refusal", p.id, "refusal"))
        return out

    # ------------------------------------------------------------ evaluation items
    def person_record(self, person: Person, test: bool = False) -> PersonRecord:
        """One MLLMU row. Train-paraphrase items + canonical image, or (test=True) held-out
        paraphrases + `n_test_images` new renders from a stream training never uses."""
        i = self._index[person.id]
        if test:
            items = person_eval_items(person, self._stream(_S_TEST_ITEMS, i), self.names, TEST)
            irng = self._stream(_S_TEST_IMAGES, i)
            images = [self.render(person, irng) for _ in range(self.cfg.n_test_images)]
        else:
            items = person_eval_items(person, self._stream(_S_EVAL, i), self.names, TRAIN)
            images = [self.canonical_image(person)]
        return PersonRecord(id=person.id, images=images,
                            classification_image=items.classification_image,
                            classification_text=items.classification_text,
                            generation=items.generation, mask=items.mask,
                            qa=person_qa_pairs(person), biography=person.biography,
                            name=person.name)

    def real_record(self, i: int) -> PersonRecord:
        """Row i of the `real` split: a scene (Image_Textual items) + a general fact (Pure_Text)."""
        spec = self.real_specs[i]
        rng = self._stream(_S_REAL_ITEMS, i)
        s = scene_eval_items(spec, rng, TRAIN)
        f = fact_eval_items(GENERAL_FACTS[i % len(GENERAL_FACTS)], rng)
        image = render_scene(spec, self._stream(_S_REAL_IMAGES, i), self.cfg.image_size)
        qa = [QAPair(SCENE_TEMPLATES[a].questions[0], scene_value(spec, a)) for a in SCENE_ATTRIBUTES]
        return PersonRecord(id=f"r{i:03d}", images=[image], classification_image=s.classification_image,
                            classification_text=f.classification_text,
                            generation=s.generation + f.generation, mask=s.mask + f.mask, qa=qa,
                            biography=f"A picture of {spec.count_word} {spec.colour} {spec.shape}(s).")

    def eval_items(self, split: str) -> list[PersonRecord]:
        """MLLMU rows for 'forget_P', 'retain_P' (or 'retain_{100-P}'), 'test_P' or 'real'."""
        kind, _ = self._percent(split)
        if kind == "real":
            return [self.real_record(i) for i in range(len(self.real_specs))]
        if kind == "retain":
            return [self.person_record(p) for p in self.retain_people(split)]
        return [self.person_record(p, test=(kind == "test")) for p in self.forget_people(split)]


def make_world(cfg: WorldConfig = WorldConfig()) -> World:
    """Generate the world: people, nested forget splits (seeded), real-split scene specs."""
    if cfg.n_people < 2:
        raise ValueError("a world needs at least 2 people (one to forget, one to retain)")
    people = make_people(cfg.n_people, cfg.seed, cfg.min_visual_distance)
    order = np.random.default_rng([cfg.seed, _S_SPLITS]).permutation(cfg.n_people)
    forget: dict[int, tuple[str, ...]] = {}
    for pct in sorted(cfg.forget_percents):
        k = min(cfg.n_people - 1, max(1, round(cfg.n_people * pct / 100)))
        forget[pct] = tuple(people[int(j)].id for j in order[:k])
    srng = np.random.default_rng([cfg.seed, _S_REAL_SPECS])
    specs = [random_scene_spec(srng) for _ in range(cfg.n_real_scenes)]
    return World(cfg=cfg, people=people, forget_ids=forget, real_specs=specs)
