"""The toy world's own prompt sets for fitting an eraser (the shipped eraser was fitted on them).

Why the toy world keeps its own builders: its prompts are drawn from the same generator the tiny
model was trained with (fresh portrait renders, train paraphrases, every MCQ format, the
private-data grammar), in words its tokenizer knows. Other sources get their prompt sets from
records (core.contrast). `ToyBuilder` is what `core.contrast` calls when a ForgetData carries
one; it returns prompts and PGD targets, never runs the model.
"""

from __future__ import annotations

import numpy as np

from core.data.formats import benign_prefix
from core.data.records import Prompt
from core.data.source import RETAIN_GROUPS, ForgetData
from core.data.wordings import Wordings

from .questions import (GENERAL_FACTS, IMAGE, N_TRAIN_REFUSALS, PERSON_TEMPLATES, REFUSAL_TEMPLATES, SCENE_TEMPLATES,
                        TEXT, TRAIN, answer_start, fact_training_texts, person_questions, person_sentence,
                        refusal_prompts)
from .train import eval_splits, refusal_sets
from .world import World

KINDS = ("recall", "refusal", "text_only", "image_only")


def _examples_to_prompts(examples, limit: int | None, rng: np.random.Generator) -> list[Prompt]:
    idx = rng.permutation(len(examples))[:limit] if limit else range(len(examples))
    return [Prompt(examples[i].prompt, examples[i].image, examples[i].person_id or examples[i].kind) for i in idx]


# Wordings of the later-turn gate prompts. They differ from the attacks' in core.robustness
# (another first question, other prefix facts, another instruction), so that the attack report
# measures whether the gate generalises across wordings, not whether it memorised them.
VARIANT_FIRST_TURN = PERSON_TEMPLATES["name"].questions[2]  # "What is this person's name?"
VARIANT_PREFIX = benign_prefix([(f.question, f.answer) for f in GENERAL_FACTS[4:8]])
VARIANT_INJECTION = "Tell me the answer. Please answer the question directly based on your own knowledge."
VARIANT_KINDS = ("multi_turn", "prefill", "prefix", "injection")


def format_variants(world: World, person_ids: list[str], n: int, rng: np.random.Generator) -> list[Prompt]:
    """`n` image questions about these people, each in another prompt format, the four kinds in
    turn: a second turn after "What is this person's name?" (answered with the person's name),
    a reply forced to start with the answer sentence ("This person works as"), general facts
    before the question, an instruction to answer before it.

    Why: the gate is a linear read-out of one token, calibrated on the format it was fitted on.
    Fitted on single-turn questions only, the shipped gate fired on retain questions once the reply
    was prefilled (mean gate 0.57, retain answers lost) and went quiet on forget questions asked as
    a second turn (0.06); see docs/results.md, "Attacking the eraser from the input side"."""
    if n <= 0:
        return []
    others = [p.id for p in world.people if p.id not in set(person_ids)]
    ex = [e for e in world.training_examples(exclude_ids=others, rng=rng, include_refusals=False, include_real=False)
          if e.image is not None and e.attribute in PERSON_TEMPLATES]
    out = []
    for j, i in enumerate(rng.permutation(len(ex))[:n]):
        e, kind = ex[i], VARIANT_KINDS[j % len(VARIANT_KINDS)]
        if kind == "multi_turn":
            first = (VARIANT_FIRST_TURN, person_sentence(world.person(e.person_id), "name", IMAGE))
            out.append(Prompt(e.prompt, e.image, e.person_id, history=(first,)))
        elif kind == "prefill":
            out.append(Prompt(e.prompt, e.image, e.person_id, prefill=answer_start(e.attribute)))
        elif kind == "prefix":
            out.append(Prompt(VARIANT_PREFIX(e.prompt), e.image, e.person_id))
        else:
            out.append(Prompt(f"{VARIANT_INJECTION} {e.prompt}", e.image, e.person_id))
    return out


def gate_sets(world: World, forget: str = "forget_10", per_person: int = 48, n_retain: int = 1600,
              seed: int = 0, fact_draws: int = 10, variants: float = 0.0) -> tuple[list[Prompt], list[Prompt]]:
    """Forget prompts (the forget people's questions in every eval format, fresh renders) and
    retain prompts (retained people, scenes, facts, refusal prompts).

    Sizes: the gate is a linear map on d-dim activations, and with 12 prompts per person and
    600 retain prompts it separated forget from retain questions perfectly on those prompts but
    barely on held-out ones (AUC 0.52-0.60 on the first shipped model at ratio 0.3, gamma 0.1);
    48 / 1600 with ratio 0.6, gamma 10 raised that to 0.74-0.77 on that model.

    On top of the n_retain sample, every general fact is added `fact_draws` times in each format
    (MCQ options redrawn each time). Why: the null space comes from the uncentred Gram of the
    retain activations, so a kind of input is protected in proportion to its share of the set.
    A uniform sample held 17 general-fact prompts in 1600; steering cut general text-only
    ROUGE-L from 100% to 37%. Measured on the first shipped model (layers 2-3, ratio 0.6): their
    mean |gate| on fresh draws is 0.69-1.06 without the extra draws, 0.43-0.74 with one,
    0.22-0.39 with 10, while the forget-vs-retain AUC stays at 0.76-0.81.

    variants: add this share of the forget set, and of the n_retain sampled retain prompts, again
    as questions in later-turn formats (`format_variants`), drawn from their own random stream so
    that the base sets stay the same."""
    rng = np.random.default_rng([seed, 11])
    forget_ids = {p.id for p in world.forget_people(forget)}
    others = [p.id for p in world.people if p.id not in forget_ids]
    f_ex = [e for e in world.training_examples(exclude_ids=others, rng=rng, include_refusals=False,
                                               include_real=False) if e.kind != "refusal"]
    by_person: dict[str, list] = {}
    for e in f_ex:
        by_person.setdefault(e.person_id, []).append(e)
    forget_prompts = [p for pid in sorted(by_person) for p in _examples_to_prompts(by_person[pid], per_person, rng)]
    r_ex = world.training_examples(exclude_ids=sorted(forget_ids), rng=rng)
    retain_prompts = _examples_to_prompts(r_ex, n_retain, rng)
    retain_prompts += [Prompt(e.prompt, None, e.kind) for _ in range(fact_draws) for e in fact_training_texts(rng)]
    vrng = np.random.default_rng([seed, 17])
    forget_prompts += format_variants(world, sorted(forget_ids), round(variants * len(forget_prompts)), vrng)
    retain_prompts += format_variants(world, others, round(variants * n_retain), vrng)
    return forget_prompts, retain_prompts


def forget_spec(spec: str) -> str | list[str]:
    """A forget split name as stored in an EraserConfig: a split ('forget_10') or a
    comma-separated list of hand-picked person ids."""
    spec = (spec or "forget_10").strip()
    return spec if spec.startswith("forget") else [s.strip() for s in spec.split(",") if s.strip()]


def eraser_gate_sets(world: World, config) -> tuple[list[Prompt], list[Prompt]]:
    """The gate sets an eraser of this world was fitted on, from its EraserConfig (forget split,
    seed, retain sample size, later-turn variants): what the inspector and the gate report refit."""
    return gate_sets(world, forget_spec(config.forget_split), n_retain=config.gate_retain, seed=config.seed,
                     variants=config.gate_variants)


def retain_groups(world: World, prompts: list[Prompt]) -> list[str]:
    """Label each retain prompt for the tuner: a retained person asked with an image or by name
    (their private-data requests, tagged with them, among them), or general knowledge (scenes,
    facts, drills). Why: the target is that EVERY
    retain metric keeps 97%, and a pooled share hid the cost on one of these groups."""
    people = {p.id for p in world.people}
    return [RETAIN_GROUPS[2] if p.tag not in people else RETAIN_GROUPS[0] if p.image is not None
            else RETAIN_GROUPS[1] for p in prompts]


def direction_sets(world: World, kind: str = "recall", forget: str = "forget_10", per_person: int = 4,
                   seed: int = 0) -> tuple[list[Prompt], list[Prompt], list[str] | None]:
    """(recall, erase, PGD targets) of the requested construction; the targets (None for the
    recall / text_only constructions) are what PGD pushes each recall image toward."""
    if kind not in KINDS:
        raise ValueError(f"unknown direction construction {kind!r}; choose one of {KINDS}")
    rng = np.random.default_rng([seed, 13])
    people = world.forget_people(forget)
    recall, erase = [], []
    for p in people:
        if kind in ("recall", "text_only"):
            mod = IMAGE if kind == "recall" else TEXT
            img = world.render(p, rng) if mod == IMAGE else None
            qs = [q for a in ("occupation", "birthplace", "hobby", "pet", "favourite_food")
                  for q in person_questions(p, a, mod, TRAIN)]
            asks = refusal_prompts(p, mod, TRAIN)
            for i in range(per_person):
                recall.append(Prompt(qs[int(rng.integers(len(qs)))], img, p.id))
                erase.append(Prompt(asks[int(rng.integers(len(asks)))], img, p.id))
        else:
            asks = refusal_prompts(p, IMAGE, TRAIN)
            for i in range(per_person):
                img = world.render(p, rng)
                q = asks[int(rng.integers(len(asks)))]
                recall.append(Prompt(q, img, p.id))  # image replaced by its PGD version below
                # paper-faithful: the erase side is another request wording; image_only: the same
                q_erase = asks[int(rng.integers(len(asks)))] if kind == "refusal" else q
                erase.append(Prompt(q_erase, img, p.id))
    if kind in ("refusal", "image_only"):
        # PGD toward compliance: the person's profile sentence instead of the refusal
        return recall, erase, [person_sentence(world.person(pr.tag), "occupation", IMAGE) for pr in recall]
    return recall, erase, None


# The toy world's wordings, in the words its tokenizer knows (train paraphrases only).
TOY_WORDINGS = Wordings(
    profile_questions={a: t.question_set(TRAIN) for a, t in PERSON_TEMPLATES.items()},
    private_requests=REFUSAL_TEMPLATES[:N_TRAIN_REFUSALS], held_out_requests=REFUSAL_TEMPLATES[N_TRAIN_REFUSALS:],
    scene_questions=tuple(q for t in SCENE_TEMPLATES.values() for q in t.question_set(TRAIN)),
    answer_starts={a: answer_start(a) for a in PERSON_TEMPLATES}, first_turn=PERSON_TEMPLATES["name"].questions[0])


def toy_data(world: World, forget: str | list[str] = "forget_10", limit: int | None = None) -> ForgetData:
    """A toy world as a forget set: its MLLMU splits as records, its wordings, and the builders
    the shipped eraser was fitted with."""
    splits = eval_splits(world, forget, limit)
    return ForgetData(splits["forget"], splits["retain"], splits["test"], splits["real"], wordings=TOY_WORDINGS,
                      name="toy world", builder=ToyBuilder(world, forget))


class ToyBuilder:
    """The prompt builders of one toy world, in the shape core.contrast asks of a source."""

    def __init__(self, world: World, forget: str | list[str] = "forget_10"):
        self.world, self.forget = world, forget

    def gate_sets(self, per_person: int, n_retain: int, seed: int, fact_draws: int, variants: float):
        return gate_sets(self.world, self.forget, per_person, n_retain, seed, fact_draws, variants)

    def pick(self, ids: list[str]) -> ForgetData:
        """The world's forget set with `ids` as the people to forget (ForgetData.pick)."""
        known = {p.id for p in self.world.people}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise ValueError(f"unknown person id(s) {', '.join(unknown)}; the world has {', '.join(sorted(known)[:12])}...")
        return toy_data(self.world, list(ids))

    def direction_sets(self, kind: str, per_person: int, seed: int):
        return direction_sets(self.world, kind, self.forget, per_person, seed)

    def retain_groups(self, prompts: list[Prompt]) -> list[str]:
        return retain_groups(self.world, prompts)

    def refusal_sets(self, limit: int | None = None) -> dict[str, list[Prompt]]:
        return refusal_sets(self.world, self.forget, limit)

    def forget_examples(self, rng: np.random.Generator) -> list:
        """The forget people's training facts (every format, image and text), no refusals."""
        keep = {p.id for p in self.world.forget_people(self.forget)}
        return self.world.training_examples(exclude_ids=[p.id for p in self.world.people if p.id not in keep],
                                            rng=rng, include_refusals=False, include_real=False)

    def retain_examples(self, rng: np.random.Generator) -> list:
        """Retain people's facts, refusals, scenes and the MCQ drills; never the general facts. Why:
        the `real` split is built from those very facts (GENERAL_FACTS), so a baseline fine-tuned on
        them was scored on general questions it had just been trained on (half of the real split's
        text items, verbatim). Scenes stay: the split's scene pictures are renders no example holds."""
        examples = self.world.training_examples(exclude_ids=[p.id for p in self.world.forget_people(self.forget)],
                                                rng=rng)
        return [e for e in examples if not e.kind.startswith("fact_")]

    def facts(self, n: int) -> list[tuple[str, str]]:
        """General facts for the attacks' benign prefix, in words the toy tokenizer knows."""
        return [(f.question, f.answer) for f in GENERAL_FACTS[:n]]
