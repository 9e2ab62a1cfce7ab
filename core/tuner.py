"""Which layers and what strength? An automatic sweep that answers with evidence.

For every (steering mode, layer set, strength) candidate, steered greedy answers are compared
with the unsteered model's own answers:
- forget score: share of forget prompts whose steered reply no longer contains the unsteered
  model's own answer (the memorised answer is gone). Why not the share of refusals: steered
  replies often apologise and then answer anyway ("I am sorry, tortoise": 61 of the shipped
  eraser's 130 forget cloze replies), and a refusal count scores those as forgotten. The share
  of refusals is still reported (`refusals`). The score is the worst group's share, groups being
  task x modality (MCQ, cloze, generation; with a picture or text only), as the retain score's:
  pooled, a setting that forgot the open questions and clozes outscored one that also forgot
  the text MCQs, and was chosen (MLLMU-Bench files without names on the toy model: text MCQ
  answered 35% against 3%, docs/open-world.md; small groups are merged, `merge_small`). The
  pooled share is kept (`forget_pooled`) and breaks ties;
- retain score: share of retain prompts whose answer is UNCHANGED (utility kept); with groups
  (e.g. retained people asked with an image / by name, general knowledge), the worst group's
  share, as the target is "every retain metric": pooled, 99% unchanged hid 3-4% of retained
  people's text-only questions turned into refusals (text-only retain ROUGE-L at 94% of vanilla);
- fluency: the share of well-formed replies, on forget and on retain prompts separately, and the
  worse of the two. Pooled, the many unchanged retain answers hid a mode whose steered forget
  answers degenerate ("I I I I"): it scored 0.98 while a quarter of its forget answers were broken.
The chosen setting maximises the forget score among those keeping retain >= `min_retain` and
fluency >= `min_fluency` (ties: the larger pooled forget share, smaller strength, fewer
layers, the earlier mode). No labels
are needed, so the same tuner works on real models. The whole grid is returned for plotting.

`tune_tasks` then picks a strength per MLLMU task for the chosen layers and mode, as the public
code sets lambda per task: a one-letter MCQ answer needs a stronger push than a sentence.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

from core.activations import Prompt
from core.eraser import Eraser
from core.evaluation import TASKS, is_fluent, is_refusal, replies
from core.models.base import VLMAdapter
from core.data.formats import first_letter, task_of


@dataclass
class Candidate:
    mode: str
    layers: list[int]
    strength: float
    forget: float = 0.0
    retain: float = 0.0
    fluency: float = 0.0
    ok: bool = False
    refusals: float = 0.0  # share of forget replies with a refusal phrase
    retain_groups: dict[str, float] = field(default_factory=dict)  # unchanged share per retain group
    forget_pooled: float = 0.0  # share of all forget prompts whose answer is gone
    forget_groups: dict[str, float] = field(default_factory=dict)  # gone share per task x modality group


MIN_FORGET_GROUP = 5  # forget prompts a task x modality group needs to count in the worst-group score


def forget_groups(prompts: Sequence[Prompt]) -> list[str]:
    """Each forget prompt's group for the forget score: its MLLMU task and whether it shows a
    picture ("classification, text"). `merge_small` joins the small ones."""
    return [f"{task_of(p.question)}, {'image' if p.image is not None else 'text'}" for p in prompts]


def merge_small(labels: Sequence[str]) -> list[str]:
    """A group of fewer than MIN_FORGET_GROUP labels joins its task's other modality ("cloze"),
    and what is still too small joins one "other" group. Why: groups too small to count were
    left out of the score, and a setting that forgot none of three photo-folder people's five
    clozes could win on the MCQs alone. Applied to the answered prompts (`score_replies`): merged
    before a prompt the model left unanswered was dropped, a group could fall under the size
    again and leave the score."""
    merged = [g if labels.count(g) >= MIN_FORGET_GROUP else g.split(",")[0] for g in labels]
    return [g if "," in g or merged.count(g) >= MIN_FORGET_GROUP else "other" for g in merged]


@dataclass
class TuneResult:
    best: Candidate | None
    modes: list[str]
    grid: list[Candidate] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"best": None if self.best is None else asdict(self.best), "modes": self.modes,
                "grid": [asdict(c) for c in self.grid]}


_APOLOGY = re.compile(r"^\W*(i am sorry|i'm sorry|sorry)\b\W*", re.IGNORECASE)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def answer_gone(reply: str, base: str) -> bool:
    """True when `reply` no longer holds the unsteered answer `base`. It still does when it
    contains `base` (final punctuation dropped) as a phrase, case-insensitive ("I am sorry,
    tortoise" holds "tortoise"), and when it gives the end of the answer sentence, after an
    apology or not: "I am sorry, kayaking." against "This person's hobby is kayaking." (what is
    left after the apology uses only the answer's words and holds its last one, where a sentence
    answer puts the value). Why the second: the tuner's forget prompts for a subject known from
    photos and a name are open questions answered in sentences, and such replies counted as
    forgotten, so the grid overstated what a setting forgets (the one chosen there leaves 83.3% of
    the person's by-name fill-in-the-blank answers after the apology; docs/open-world.md)."""
    phrase = base.strip().rstrip(".!?").strip()
    if not phrase:
        return True
    if len(phrase) == 1 and phrase.isalpha():  # an MCQ letter: read as the metric reads it, or written alone
        # Why: matched as a word without regard to case, "A" was found in every reply with the article "a"
        # ("Sorry, I cannot help with a question like this."), so such refusals counted as not forgotten
        letter = phrase.upper()
        return first_letter(reply) != letter and not re.search(rf"(?<!\w){letter}(?!\w)", reply)
    if re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", reply, re.IGNORECASE):
        return False
    opener = _APOLOGY.match(reply)
    rest, said = _words(reply[opener.end():] if opener else reply), _words(phrase)
    return not (rest and said and said[-1] in rest and set(rest) <= set(said))


def score_replies(forget: Sequence[str], retain: Sequence[str], base_retain: Sequence[str],
                  groups: Sequence[str] | None = None, base_forget: Sequence[str] | None = None,
                  forget_labels: Sequence[str] | None = None) -> dict:
    """Forget answers gone (against `base_forget`, the unsteered forget replies; without them the
    share of refusals; the worst group's share when `forget_labels` labels the forget replies,
    counting groups of MIN_FORGET_GROUP answered prompts or more), retain answers unchanged (the
    worst group's share when `groups` labels the retain replies), and the worse of the two
    fluency shares."""
    def share(xs) -> float:
        return sum(xs) / len(xs)

    def by_label(values, labels, what, least=1) -> dict[str, float]:
        if labels is None:
            return {}
        if len(labels) != len(values):
            raise ValueError(f"{len(labels)} {what} group labels for {len(values)} {what} replies")
        kept = {g: [v for v, h in zip(values, labels) if h == g] for g in dict.fromkeys(labels)}
        return {g: share(v) for g, v in kept.items() if len(v) >= least}
    same = [a == b for a, b in zip(retain, base_retain)]
    by_group = by_label(same, groups, "retain")
    refusals = share([is_refusal(x) for x in forget])
    # a prompt the unsteered model left unanswered says nothing about forgetting: it is left out (it counted as gone)
    answered = [i for i, b in enumerate(base_forget or []) if b.strip()]
    gone = [answer_gone(forget[i], base_forget[i]) for i in answered] if base_forget is not None else []
    pooled = share(gone) if gone else refusals
    if forget_labels is not None and len(forget_labels) != len(forget):
        raise ValueError(f"{len(forget_labels)} forget group labels for {len(forget)} forget replies")
    by_task = by_label(gone, merge_small([forget_labels[i] for i in answered]), "forget", MIN_FORGET_GROUP) \
        if forget_labels is not None and gone else {}
    return {"forget": min(by_task.values()) if by_task else pooled, "forget_pooled": pooled, "forget_groups": by_task,
            "refusals": refusals, "retain": min(by_group.values()) if by_group else share(same),
            "fluency": min(share([is_fluent(x) for x in forget]), share([is_fluent(x) for x in retain])),
            "retain_groups": by_group}


def ramp_for(eraser: Eraser, layers: Sequence[int]) -> tuple[float | None, float | None]:
    """The gate ramp an eraser whose ramp is read off its rows (`gate_ramp`) would have when it
    steers `layers`; (None, None) keeps the stored one. Why: without a joint gate or `gate_layer`
    each steered layer reads its own gate, so a candidate layer set is a different gate, and the
    tuner measured every candidate (and saved the winner) with the ramp read for the layers fitted
    before tuning."""
    c = eraser.config
    if not c.gate_ramp or c.joint_gate or c.gate_layer is not None:
        return None, None
    probe = copy.copy(eraser)  # the same tensors and state, another steered-layer choice
    probe.config = replace(c, steer_layers=list(layers))
    try:
        return probe.ramp_from_rows()
    except ValueError:  # those layers' rows do not separate: the stored ramp stays, as follow_ramp keeps it
        return None, None


def tune(adapter: VLMAdapter, eraser: Eraser, forget: Sequence[Prompt], retain: Sequence[Prompt],
         layer_sets: Sequence[Sequence[int]], strengths: Sequence[float], modes: Sequence[str] = ("prefill",),
         min_retain: float = 0.98, min_fluency: float = 0.95, max_new_tokens: int = 16,
         progress: Callable[[int, int], None] | None = None,
         should_stop: Callable[[], bool] | None = None, retain_groups: Sequence[str] | None = None) -> TuneResult:
    """Sweep modes x layer sets x strengths; return the best admissible setting and the grid.
    `retain_groups` labels each retain prompt; min_retain then holds for every group."""
    if not forget or not retain:
        raise ValueError("the tuner needs forget and retain prompts")
    if not modes:
        raise ValueError("the tuner needs at least one steering mode")
    if not strengths or not all(math.isfinite(s) and s >= 0 for s in strengths):
        raise ValueError(f"the tuner needs strengths of 0 or more, got {list(strengths)}")
    if not layer_sets or not all(layer_sets):
        raise ValueError(f"the tuner needs layer sets that are not empty, got {[list(l) for l in layer_sets]}: an "
                         "empty one steers nothing and would win on retain answers")
    for name, bar in (("min_retain", min_retain), ("min_fluency", min_fluency)):
        if not 0 <= bar <= 1:
            raise ValueError(f"{name} is a share between 0 and 1, got {bar}")
    base_retain = replies(adapter, retain, max_new_tokens)
    base_forget = replies(adapter, forget, max_new_tokens)
    labels = forget_groups(forget)
    grid, total = [], len(modes) * len(layer_sets) * len(strengths)
    ramps = [ramp_for(eraser, layers) for layers in layer_sets]  # once per layer set, not per mode
    for mode in modes:
        for layers, (floor, full) in zip(layer_sets, ramps):
            for s in strengths:
                if should_stop is not None and should_stop():
                    raise InterruptedError("tuning stopped")
                steer = lambda: eraser.apply(adapter, strength=s, layers=list(layers), mode=mode,  # noqa: E731
                                             floor=floor, full=full)
                scores = score_replies(replies(adapter, forget, max_new_tokens, steering=steer),
                                       replies(adapter, retain, max_new_tokens, steering=steer), base_retain,
                                       retain_groups, base_forget, labels)
                c = Candidate(mode, list(layers), float(s), **scores)
                c.ok = c.retain >= min_retain and c.fluency >= min_fluency
                grid.append(c)
                if progress is not None:
                    progress(len(grid), total)
    admissible = [c for c in grid if c.ok]
    order = {m: i for i, m in enumerate(modes)}
    best = max(admissible, key=lambda c: (c.forget, c.forget_pooled, -c.strength, -len(c.layers), -order[c.mode]),
               default=None)
    return TuneResult(best, list(modes), grid)


STRENGTHS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)  # what `fit --tune` tries by default


def layer_candidates(num_layers: int) -> list[list[int]]:
    """The layer sets a fit's tuner tries: each layer from 1 on alone, the last two, the back
    half, and every layer from 1 on (layer 0 steers the embeddings' mix and is left out)."""
    n = num_layers
    if n == 1:
        return [[0]]  # the only layer there is
    sets = [[l] for l in range(1, n)] + [list(range(max(n - 2, 1), n)), list(range(max(n // 2, 1), n)),
                                         list(range(1, n))]
    return [list(t) for t in dict.fromkeys(map(tuple, sets)) if t]


def tune_fit(adapter: VLMAdapter, eraser: Eraser, data, seed: int | None = None, strengths: Sequence[float] = STRENGTHS,
             modes: Sequence[str] | None = None, min_retain: float = 0.98, min_fluency: float = 0.95,
             progress: Callable[[int, int], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> TuneResult:
    """Tune a freshly fitted eraser on its forget set's held-out rows (`core.contrast.heldout_sets`:
    never the gate's fit rows) and set its steered layers, strength and mode to the best
    admissible setting; unchanged when none keeps `min_retain` of every retain group. What
    `fit --tune` and the app's first fit on a model without an eraser both run."""
    from core.contrast import heldout_sets, retain_groups
    # the held-out rows are the complement of the fit rows of the eraser's own seed: another seed's overlap them
    if seed is not None and seed != eraser.config.seed:
        raise ValueError(f"tuning seed {seed} is not the eraser's fit seed {eraser.config.seed}: its held-out rows "
                         "would include rows the gate was fitted on (leave the seed out)")
    seed = eraser.config.seed
    # every general fact once per format: the tuner must see what steering does to general questions;
    # 288 sampled retain prompts (not 96) so that each retain group holds about a hundred
    forget, retain = heldout_sets(data, seed, per_person=4, n_retain=288, draw=1)
    res = tune(adapter, eraser, forget, retain, fitted_candidates(eraser, adapter.num_layers), strengths,
               modes=tuple(modes or (eraser.config.mode,)), min_retain=min_retain, min_fluency=min_fluency,
               progress=progress, should_stop=should_stop, retain_groups=retain_groups(data, retain))
    if res.best is not None:
        eraser.config.steer_layers = res.best.layers
        eraser.config.strength = res.best.strength
        eraser.config.mode = res.best.mode
        eraser.follow_ramp()  # the ramp of the chosen layers' gate, as the tuner measured it
    return res


def fitted_candidates(eraser: Eraser, num_layers: int) -> list[list[int]]:
    """`layer_candidates` the eraser has fitted gates and directions for. Why: an unfitted layer
    steers nothing, changes no answer, always passed the retain bar and could be chosen (an
    eraser fitted at layer 3 only was saved steering layer 1, i.e. nothing). When none is left
    (one fitted layer, layer 0), the fitted layers together are the one candidate."""
    fitted = set(eraser.fitted_layers)
    kept = [c for c in layer_candidates(num_layers) if set(c) <= fitted]
    return kept or [sorted(fitted)]


def tune_tasks(adapter: VLMAdapter, eraser: Eraser, forget: Sequence[Prompt], retain: Sequence[Prompt],
               layers: Sequence[int], mode: str, strengths: Sequence[float],
               progress: Callable[[int, int], None] | None = None, retain_groups: Sequence[str] | None = None,
               **kw) -> dict[str, TuneResult]:
    """For each MLLMU task (read from the prompt's instruction, `task_of`), `tune` over strengths
    alone on that task's forget and retain prompts; tasks missing from either set are left out."""
    tasks = [task_of(p.question) for p in retain]
    sets = {t: ([p for p in forget if task_of(p.question) == t], [p for p, pt in zip(retain, tasks) if pt == t])
            for t in TASKS}
    sets = {t: fr for t, fr in sets.items() if fr[0] and fr[1]}
    out, total = {}, len(sets) * len(strengths)
    for i, (task, (f, r)) in enumerate(sets.items()):
        cb = None if progress is None else (lambda d, t, o=i * len(strengths): progress(o + d, total))
        groups = None if retain_groups is None else [g for g, pt in zip(retain_groups, tasks) if pt == task]
        out[task] = tune(adapter, eraser, f, r, [layers], strengths, (mode,), progress=cb, retain_groups=groups, **kw)
    return out
