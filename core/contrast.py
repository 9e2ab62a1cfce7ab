"""Prompt sets for fitting an eraser on a toy world.

Four sets (method.md):
- forget / retain: train the gate (forget -> 1, retain -> 0). The retain set holds retained
  people's questions, generic scenes and facts, AND the model's own refusal prompts: without
  them the gate goes negative on refusals and steering breaks them.
- recall / erase: give the direction d_erase = mean(erase) - mean(recall). Constructions:
  * "recall"  (knowledge-recall variant, the default here): the forget person's image with a
    profile question (the model answers from memory) vs. the same image with a private-data
    request (the model refuses).
  * "refusal" (paper-faithful): private-data requests with images PGD-perturbed toward a
    compliant answer vs. the same requests with clean images.
  * "text_only": the recall construction without images (questions by name).
  * "image_only": one private-data request; PGD image vs. clean image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from core.activations import Prompt
from core.models.base import VLMAdapter
from core.pgd import PGDConfig, run_pgd
from core.robustness import benign_prefix
from core.toyworld.questions import (GENERAL_FACTS, IMAGE, PERSON_TEMPLATES, TEXT, TRAIN, answer_start,
                                     fact_training_texts, person_questions, person_sentence, refusal_prompts)
from core.toyworld.world import World

KINDS = ("recall", "refusal", "text_only", "image_only")


@dataclass
class FitSets:
    forget: list[Prompt]
    retain: list[Prompt]
    recall: list[Prompt]
    erase: list[Prompt]
    kind: str


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
    a second turn (0.06); see README, "Attacking the eraser from the input side"."""
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
    spec = spec or "forget_10"
    return spec if spec.startswith("forget") else [s for s in spec.split(",") if s]


def eraser_gate_sets(world: World, config) -> tuple[list[Prompt], list[Prompt]]:
    """The gate sets an eraser of this world was fitted on, from its EraserConfig (forget split,
    seed, retain sample size, later-turn variants): what the inspector and the gate report refit."""
    return gate_sets(world, forget_spec(config.forget_split), n_retain=config.gate_retain, seed=config.seed,
                     variants=config.gate_variants)


RETAIN_GROUPS = ("people, image", "people, by name", "general")


def retain_groups(world: World, prompts: list[Prompt]) -> list[str]:
    """Label each retain prompt for the tuner: a retained person asked with an image or by name,
    or general knowledge (scenes, facts, drills, refusal prompts). Why: the target is that EVERY
    retain metric keeps 97%, and a pooled share hid the cost on one of these groups."""
    people = {p.id for p in world.people}
    return [RETAIN_GROUPS[2] if p.tag not in people else RETAIN_GROUPS[0] if p.image is not None
            else RETAIN_GROUPS[1] for p in prompts]


def direction_pgd(eps_255: float = 16, seed: int = 0) -> PGDConfig:
    """The PGD of the refusal / image_only constructions at a budget of `eps_255`/255: 30 steps of
    eps/8 (at least 1/255), as `fit --eps` and the sweep's eps rows run it."""
    return PGDConfig(eps=eps_255 / 255, step_size=max(1, int(eps_255) // 8) / 255, steps=30, seed=seed)


def direction_sets(world: World, adapter: VLMAdapter | None, kind: str = "recall", forget: str = "forget_10",
                   per_person: int = 4, seed: int = 0, pgd_cfg: PGDConfig = direction_pgd(),
                   progress: Callable[[int, int, float], None] | None = None
                   ) -> tuple[list[Prompt], list[Prompt]]:
    """(recall, erase) prompt sets of the requested construction."""
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
        if adapter is None:
            raise ValueError(f"the {kind!r} construction runs PGD and needs the model")
        # PGD toward compliance: the person's profile sentence instead of the refusal
        targets = [person_sentence(world.person(pr.tag), "occupation", IMAGE) for pr in recall]
        step = run_pgd(adapter, [pr.image for pr in recall], [pr.question for pr in recall], targets, pgd_cfg,
                       progress=progress)
        recall = [Prompt(pr.question, step.image[i], pr.tag) for i, pr in enumerate(recall)]
    return recall, erase


def fit_sets(world: World, adapter: VLMAdapter | None, kind: str = "recall", forget: str = "forget_10",
             seed: int = 0, variants: float = 0.0, n_retain: int = 1600, **kw) -> FitSets:
    f, r = gate_sets(world, forget, n_retain=n_retain, seed=seed, variants=variants)
    rec, era = direction_sets(world, adapter, kind, forget, seed=seed, **kw)
    return FitSets(f, r, rec, era, kind)
