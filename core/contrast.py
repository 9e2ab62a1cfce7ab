"""Prompt sets for fitting an eraser, from a forget set of records (`core.data.ForgetData`).

Four sets (method.md):
- forget / retain: train the gate (forget -> 1, retain -> 0). The retain set holds the retained
  subjects' questions, general knowledge (the `real` split and/or built-in scene pictures) AND
  private-data requests, which the model refuses anyway: without them the gate goes negative
  on refusals and steering breaks them.
- recall / erase: give the direction d_erase = mean(erase) - mean(recall). Constructions:
  * "recall" (knowledge-recall variant, the default here): a subject's photo with a profile
    question (the model answers from memory) vs. the same photo with a private-data request;
  * "refusal" (paper-faithful): private-data requests with photos PGD-perturbed toward a
    compliant answer vs. clean photos with a private-data request drawn again (another wording,
    as the public code pairs them);
  * "text_only": the recall construction without images (questions by name);
  * "image_only": one private-data request; PGD photo vs. clean photo.

Every subject's prompts (its MLLMU items in the evaluation formats, plus the project's standard
questions in the source's wordings) are split once, by seed, into fit rows and held-out rows:
the gate is fitted on the first, the tuner judges settings on the second. A toy world brings its
own builders (`ForgetData.builder`), which draw from the generator its model was trained with.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from core.data.formats import classification_prompt, cloze_prompt, generation_prompt
from core.data.records import PersonRecord, Prompt
from core.data.scenes import FIT_STREAM, scene_records, scenes
from core.data.source import RETAIN_GROUPS, ForgetData, unnamed_note
from core.data.wordings import Wordings, fill
from core.evaluation import record_queries
from core.models.base import VLMAdapter
from core.pgd import PGDConfig, run_pgd

KINDS = ("recall", "refusal", "text_only", "image_only")
HELD_OUT_SHARE = 0.25
N_SCENES = 48
GENERAL_TAG = "general:"  # the tag prefix of the real split's rows in the gate sets (`_general_pool`)
MIN_HELD_OUT = 60  # forget rows, and general rows, the tuner judges a setting on (records)


@dataclass
class FitSets:
    forget: list[Prompt]
    retain: list[Prompt]
    recall: list[Prompt]
    erase: list[Prompt]
    kind: str
    retained: list[str] = field(default_factory=list)  # the retained subjects' tags (made-up people's too)

    def fold_for(self, config) -> None:
        """Give a config with a cross-fitted floor (EraserConfig.floor_folds) these retained
        subjects to fold (a recipe carries the folds, never the previous fit's people)."""
        if config.floor_folds:
            config.floor_subjects = list(self.retained)


def _named(start: str, name: str | None) -> str:
    """An answer start about a pictured subject ("This person works as") said of a named one."""
    return start if not name else start.replace("This person's", f"{name}'s").replace("This person", name)


def profile_prompts(rec: PersonRecord, wordings: Wordings, options: Sequence[str] = (),
                    rng: np.random.Generator | None = None) -> list[Prompt]:
    """The standard profile questions about one subject: with each of its photos ("this person")
    and by name (no name questions there: the name is in the question), each as a plain question,
    in the MLLMU generation format, as a cloze on the answer sentence and, with an option pool,
    as a four-way MCQ.

    Why every format: the gate reads the whole prompt (or its last token), so an MCQ's option
    lines and an instruction move it. Fitted on plain questions only, a subject known by photos
    and a name kept 72% of its text-only MCQs answered on the toy model (docs/open-world.md, "Your own model
    and data")."""
    rng = rng if rng is not None else np.random.default_rng([sum(map(ord, rec.id)), 31])
    out = []
    for img, name in [(im, None) for im in rec.images] + ([(None, rec.name)] if rec.name else []):
        for attr, ts in wordings.profile_questions.items():
            if attr == "name" and name is not None:
                continue
            for t in ts:
                q = fill(t, name)
                out += [Prompt(q, img, rec.id), Prompt(generation_prompt({"Question": q}), img, rec.id)]
                if len(options) >= 4:
                    pick = [options[int(i)] for i in rng.choice(len(options), 4, replace=False)]
                    out.append(Prompt(classification_prompt({"Question": q, "Options": dict(zip("ABCD", pick))}),
                                      img, rec.id))
            if attr in wordings.answer_starts:
                out.append(Prompt(cloze_prompt({"Question": f"{_named(wordings.answer_starts[attr], name)} __."}),
                                  img, rec.id))
    return out


def option_pool(data: ForgetData) -> list[str]:
    """Every MCQ option value of the data, for the standard questions' MCQ format."""
    recs = [*data.forget, *data.retain, *data.real]
    return sorted({v for r in recs for c in (*r.classification_image, *r.classification_text)
                   for v in c.options.values() if v})


def request_prompts(rec: PersonRecord, templates: tuple[str, ...]) -> list[Prompt]:
    """Private-data requests about one subject, with its photos in turn and by name."""
    images = rec.images or [None]
    out = [Prompt(fill(t, None), images[i % len(images)], rec.id) for i, t in enumerate(templates) if rec.images]
    if rec.name:
        out += [Prompt(fill(t, rec.name), None, rec.id) for t in templates]
    return out


def _halves(prompts: list[Prompt], seed: int, key: str) -> tuple[list[Prompt], list[Prompt]]:
    """(fit rows, held-out rows) of one subject's prompts: a fixed share held out, by seed."""
    if len(prompts) < 2:
        return prompts, []
    rng = np.random.default_rng([seed, 19, sum(map(ord, key))])
    order = rng.permutation(len(prompts))
    n_held = max(1, round(HELD_OUT_SHARE * len(prompts)))
    return [prompts[i] for i in order[n_held:]], [prompts[i] for i in order[:n_held]]


def _subject_pool(rec: PersonRecord, wordings: Wordings, seed: int, held: bool,
                  options: Sequence[str] = ()) -> list[Prompt]:
    rows = [q.prompt for q in record_queries(rec, "")] + profile_prompts(rec, wordings, options)
    rows = list({(p.question, id(p.image)): p for p in rows}.values())  # a data item may repeat a standard one
    return _halves(rows, seed, rec.id)[1 if held else 0]


def _general_pool(data: ForgetData, seed: int, held: bool) -> list[Prompt]:
    """General knowledge: the real split's questions and the built-in scene questions. Without a
    real split, scored scenes stand in for it, so that the gate also sees ordinary pictures asked
    in the MLLMU formats (MCQ, cloze, one sentence). Why: fitted on three photos and a name with
    only free scene questions, the gate learnt the formats: 13.9% of scored scene questions were
    refused on a model without a world (docs/open-world.md)."""
    # tagged apart from people: a real row's ID may be a retained person's too (each MLLMU file numbers its
    # own rows), and it was then grouped with them by the tuner and moved with them by forget / withdraw requests
    rows = [replace(q.prompt, tag=f"{GENERAL_TAG}{q.prompt.tag}") for rec in data.real for q in record_queries(rec, "")]
    if not data.real and data.wordings.scene_questions:  # wordings without them: a tokenizer that cannot spell them
        rows += [q.prompt for rec in scene_records(N_SCENES // 3, seed, stream=FIT_STREAM)
                 for q in record_queries(rec, "")]
    pics = scenes(N_SCENES, seed=seed)
    qs = data.wordings.scene_questions
    rows += [Prompt(qs[i % len(qs)], im, "scene") for i, im in enumerate(pics)] if qs else []
    # a question the real split asks twice (MLLMU files repeat some) once: in both halves it would be
    # a held-out row the gate was fitted on
    rows = list({(p.question, id(p.image)): p for p in rows}.values())
    return _halves(rows, seed, "general")[1 if held else 0]


def _sample(rows: list[Prompt], n: int | None, rng: np.random.Generator) -> list[Prompt]:
    idx = range(len(rows)) if n is None else rng.permutation(len(rows))[:n]
    return [rows[i] for i in idx]


def _by_modality(rows: list[Prompt], n: int | None, rng: np.random.Generator) -> list[Prompt]:
    """Up to `n` rows, half asked with a photo and half by name where both exist. Why: a subject
    with four photos has five times more picture questions than questions by name, and sampled
    uniformly the gate saw too few of the latter (text-only MCQ about three photo-folder subjects
    stayed 61% correct; docs/open-world.md)."""
    if n is None:
        return rows
    pics, text = [p for p in rows if p.image is not None], [p for p in rows if p.image is None]
    k = min(len(text), n // 2) if pics else min(len(text), n)  # no photo: still at most n
    return _sample(pics, n - k, rng) + _sample(text, k, rng)


def decoys(data: ForgetData, seed: int = 0) -> list[PersonRecord]:
    """Subjects known by a made-up name only (ForgetData.decoy_names), retained: asked about by
    name, never with a picture."""
    return [PersonRecord(f"decoy-{i}", name=n) for i, n in enumerate(data.decoy_names(seed))]


def _record_gate_sets(data: ForgetData, per_person: int, n_retain: int, seed: int, fact_draws: int,
                      held: bool) -> tuple[list[Prompt], list[Prompt]]:
    rng = np.random.default_rng([seed, 11 + held])
    w, options = data.wordings, option_pool(data)
    forget = [p for rec in data.forget for p in _by_modality(_subject_pool(rec, w, seed, held, options), per_person,
                                                            rng)]
    people = retained_people(data, seed)  # made-up names when few real people are retained
    retain_rows = [p for rec in people for p in _subject_pool(rec, w, seed, held, options)]
    requests = w.held_out_requests if held else w.private_requests
    retain_rows += [p for rec in people for p in request_prompts(rec, requests)]
    retain = _sample(retain_rows, n_retain, rng)
    general = _sample(_general_pool(data, seed, held), max(MIN_HELD_OUT if held else 8, n_retain // 10), rng)
    retain += general * max(1, fact_draws)
    if not retain:
        raise ValueError("the retain set is empty: pass retained subjects (--data retain=PATH) or general "
                         "questions (--data real=PATH); the gate needs examples of what to keep")
    return forget, retain


def _check_sizes(**sizes: int) -> None:
    """Why: a negative size became a negative slice (per_person -3 took all but the last 3 rows of each
    subject: 357 forget rows where 3 gave 6), without a word."""
    bad = {k: v for k, v in sizes.items() if v < 0 or int(v) != v}
    if bad:
        raise ValueError("prompt-set sizes are whole numbers of 0 or more, got "
                         + ", ".join(f"{k}={v!r}" for k, v in bad.items()))


def gate_sets(data: ForgetData, per_person: int = 48, n_retain: int = 1600, seed: int = 0, fact_draws: int = 10,
              variants: float = 0.0) -> tuple[list[Prompt], list[Prompt]]:
    """Forget prompts (up to `per_person` per forget subject) and retain prompts (`n_retain`
    sampled from the retained subjects' questions and the private-data requests about them, plus
    general-knowledge questions repeated `fact_draws` times).

    Why repeat general questions: the null space comes from the uncentred Gram of the retain
    activations, so a kind of input is protected in proportion to its share of the set; on the
    toy model a uniform sample held 17 general facts in 1600 prompts and steering cut general
    text-only ROUGE-L from 100% to 37% (docs/method-notes.md, item 6).
    variants: later-turn copies of the prompts (toy worlds only, see toyworld.fitsets)."""
    _check_sizes(per_person=per_person, n_retain=n_retain, fact_draws=fact_draws)
    if data.builder is not None:
        return data.builder.gate_sets(per_person, n_retain, seed, fact_draws, variants)
    if variants:
        raise ValueError("--gate-variants draws later-turn prompts from a toy world's generator; it is not "
                         "available for MLLMU files or photo folders yet")
    return _record_gate_sets(data, per_person, n_retain, seed, fact_draws, held=False)


def heldout_sets(data: ForgetData, seed: int = 0, per_person: int = 4, n_retain: int = 288,
                 draw: int = 1) -> tuple[list[Prompt], list[Prompt]]:
    """The tuner's forget and retain prompts (records: the held-out share of every subject's prompts
    and the held-out request wordings, never among the gate's fit rows; a toy world: fresh draws
    from its generator with seed + `draw`, which can repeat a fit row: for the shipped recipe 3 of
    40 forget rows and 9 of 229 people rows are also fit rows, and the general facts are the fit's
    on purpose, so a toy world's tuning is not fully held out)."""
    if data.builder is not None:
        return data.builder.gate_sets(per_person, n_retain, seed + draw, 1, 0.0)
    # at least MIN_HELD_OUT forget rows and general rows: with 3 subjects at 4 rows each the tuner's
    # forget score moved in steps of 1/12 and one changed answer of 28 general rows failed a setting
    per_person = max(per_person, -(-MIN_HELD_OUT // len(data.forget)))
    return _record_gate_sets(data, per_person, n_retain, seed, 1, held=True)


def eraser_gate_sets(data: ForgetData, config) -> tuple[list[Prompt], list[Prompt]]:
    """The gate sets an eraser was fitted on, from its EraserConfig (seed, retain sample size,
    later-turn variants): what the inspector and the gate report refit."""
    return gate_sets(data, n_retain=config.gate_retain, seed=config.seed, variants=config.gate_variants)


def retain_groups(data: ForgetData, prompts: list[Prompt]) -> list[str]:
    """Label each retain prompt for the tuner: a retained subject asked with an image or by name
    (requests about them included), or general knowledge (scenes and facts in the toy world). Why: the target is that
    EVERY retain metric keeps 97%, and a pooled share hid the cost on one of these groups."""
    if data.builder is not None:
        return data.builder.retain_groups(prompts)
    people = {r.id for r in data.retain}
    return [RETAIN_GROUPS[2] if p.tag not in people and not p.tag.startswith("decoy-") else RETAIN_GROUPS[0]
            if p.image is not None else RETAIN_GROUPS[1] for p in prompts]  # real rows' tags: GENERAL_TAG + their id


def refusal_sets(data: ForgetData, limit: int | None = None) -> dict[str, list[Prompt]]:
    """Private-data requests in held-out wordings about the forget and the retained subjects:
    `evaluate` reports the share refused (the model should refuse them with or without an eraser)."""
    if data.builder is not None:
        return data.builder.refusal_sets(limit)
    ts = data.wordings.held_out_requests
    out = {name: [p for rec in recs for p in request_prompts(rec, ts)]
           for name, recs in (("forget", data.forget), ("retain", data.retain)) if recs}
    return {k: v[: limit * 8 if limit else None] for k, v in out.items() if v}  # no wording or no subject: no set


def direction_pgd(eps_255: float = 16, seed: int = 0) -> PGDConfig:
    """The PGD of the refusal / image_only constructions at a budget of `eps_255`/255: 30 steps of
    eps/8 (at least 1/255), as `fit --eps` and the sweep's eps rows run it."""
    return PGDConfig(eps=eps_255 / 255, step_size=max(1, int(eps_255) // 8) / 255, steps=30, seed=seed)


def compliance_target(rec: PersonRecord) -> str:
    """What PGD pushes a private-data request toward: an answer about the subject (its first
    picture answer, else its name sentence)."""
    for g in rec.generation:
        if g.type == "Image_Textual" and g.ground_truth:
            return g.ground_truth
    return f"This person is {rec.name}." if rec.name else "Sure, here it is."


def _record_direction_sets(data: ForgetData, kind: str, per_person: int, seed: int):
    rng = np.random.default_rng([seed, 13])
    w = data.wordings
    recall, erase, targets = [], [], []
    for rec in data.forget:
        if kind == "text_only" and not rec.name:
            raise ValueError(f"subject {rec.id} has no name: the text_only direction asks about subjects by name")
        if kind != "text_only" and not rec.images:
            raise ValueError(f"subject {rec.id} has no image: the {kind} direction needs a photo of every subject")
        name = rec.name if kind == "text_only" else None
        qs = [fill(t, name) for a, ts in w.profile_questions.items() if a != "name" or name is None for t in ts]
        asks = [fill(t, name) for t in w.private_requests]
        for _ in range(per_person):
            img = None if kind == "text_only" else rec.images[int(rng.integers(len(rec.images)))]
            ask = asks[int(rng.integers(len(asks)))]
            if kind in ("recall", "text_only"):
                recall.append(Prompt(qs[int(rng.integers(len(qs)))], img, rec.id))
                erase.append(Prompt(ask, img, rec.id))
            else:
                recall.append(Prompt(ask, img, rec.id))  # image replaced by its PGD version
                erase.append(Prompt(asks[int(rng.integers(len(asks)))] if kind == "refusal" else ask, img, rec.id))
                targets.append(compliance_target(rec))
    return recall, erase, targets or None


def direction_sets(data: ForgetData, adapter: VLMAdapter | None, kind: str = "recall", per_person: int = 4,
                   seed: int = 0, pgd_cfg: PGDConfig = direction_pgd(),
                   progress: Callable[[int, int, float], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> tuple[list[Prompt], list[Prompt]]:
    """(recall, erase) prompt sets of the requested construction; the refusal / image_only
    constructions run PGD on `adapter` (`should_stop()` ends it between steps: InterruptedError)."""
    if kind not in KINDS:
        raise ValueError(f"unknown direction construction {kind!r}; choose one of {KINDS}")
    if per_person < 1 or int(per_person) != per_person:  # 0 or -2 gave empty contrast sets without a word
        raise ValueError(f"per_person must be a whole number of at least 1 for a direction, got {per_person}")
    if data.builder is not None:
        recall, erase, targets = data.builder.direction_sets(kind, per_person, seed)
    else:
        recall, erase, targets = _record_direction_sets(data, kind, per_person, seed)
    if targets is not None:
        if adapter is None:
            raise ValueError(f"the {kind!r} construction runs PGD and needs the model")
        step = run_pgd(adapter, [pr.image for pr in recall], [pr.question for pr in recall], targets, pgd_cfg,
                       progress=progress, should_stop=should_stop)
        if should_stop is not None and should_stop():
            raise InterruptedError("stopped during the PGD of the direction's recall images")
        recall = [Prompt(pr.question, step.image[i], pr.tag) for i, pr in enumerate(recall)]
    return recall, erase


def fit_sets(data: ForgetData, adapter: VLMAdapter | None, kind: str = "recall", seed: int = 0,
             variants: float = 0.0, n_retain: int = 1600, **kw) -> FitSets:
    """The gate's forget / retain prompts and the direction's recall / erase prompts of `data`
    (keyword arguments go to `direction_sets`: pgd_cfg, progress, should_stop). With a model, the
    wordings are first cut to what its tokenizer spells (`ForgetData.for_tokenizer`, which also
    refuses a forget name it cannot spell), as the CLI and the app do: through this call alone, a
    word-level tokenizer got made-up names of unknown words in the gate's retain rows."""
    if adapter is not None and data.builder is None:
        data.for_tokenizer(adapter.tokenizer)
    unnamed = data.unnamed
    if unnamed:  # said where it costs: here, after any pick (at loading it named the file's people, not these)
        warnings.warn(unnamed_note(unnamed, len(data.forget)), stacklevel=2)
    f, r = gate_sets(data, n_retain=n_retain, seed=seed, variants=variants)
    rec, era = direction_sets(data, adapter, kind, seed=seed, **kw)
    return FitSets(f, r, rec, era, kind, retained_subjects(data, seed))


def retained_subjects(data: ForgetData, seed: int = 0) -> list[str]:
    """The tags of the retained subjects in the gate's retain rows (the made-up people's too):
    what a cross-fitted floor holds out in turn (EraserConfig.floor_subjects)."""
    return [x.id for x in (data.retain if data.builder is not None else retained_people(data, seed))]


def retained_people(data: ForgetData, seed: int = 0) -> list[PersonRecord]:
    """The retained subjects of a record-based fit: the retained records and made-up people."""
    return data.retain + decoys(data, seed)
