"""Forget requests one at a time: add subjects to a live eraser, or withdraw them.

Right-to-be-forgotten requests arrive one by one, and some are withdrawn. With one gate per
forget subject, a request changes only the gate's fitting rows: an added subject brings its
forget prompts (their activations are the only ones collected; the retain side is reused from
the eraser's fit state), a withdrawn one takes its rows away, and every gate is solved again in
closed form (a subject's rows are target-0 rows of the other subjects' gates). The weights never
move. The direction ("recall -> refuse", mean over the forgotten subjects' contrast prompts) is
built again from everyone forgotten when a request brings the new subject's contrast prompts
and the fit state keeps the earlier ones; otherwise it stays the one of the first fit. A
withdrawal leaves it as it is, so that nobody else's steering moves.

An addition equals a fit from scratch on the same prompts (tested to 1e-6 relative): nothing
about the order of requests is remembered except the history kept in `config.requests`.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Callable, Sequence

import torch

from core.activations import Prompt, collect_layers
from core.eraser import (Eraser, EraserConfig, FitState, erase_direction, fit_gates, prompts_hash, request_entry,
                         subject_labels)
from core.models.base import VLMAdapter


WITHDRAWN_REPEATS = 1  # a withdrawn subject's rows as retained rows: the weight they had in the other gates


class RequestError(ValueError):
    """A forget request that cannot be applied, with what to do instead."""


def live_state(eraser: Eraser) -> FitState:
    if not eraser.config.subject_gates:
        raise RequestError("this eraser has one gate for its whole forget set: subjects can only be added to or "
                           "withdrawn from an eraser with one gate per subject (fit --subject-gates, the default "
                           "preset)")
    if eraser.state is None:
        raise RequestError("this eraser was saved without its fit state, so a request would have to collect the "
                           "retain side again: fit it again, or save it with save_pretrained(..., state=True) "
                           "(`python -m core fit` does)")
    return eraser.state


def collect_state(eraser: Eraser, adapter: VLMAdapter, forget: Sequence[Prompt], retain: Sequence[Prompt]) -> FitState:
    """The fit state of an eraser saved without one: its gate prompts' activations, collected once
    (tagged prompts, as `contrast.eraser_gate_sets` builds them)."""
    def acts(prompts):
        return collect_layers(adapter, prompts, eraser.config.layers, position=eraser.gate_position).float()
    return FitState(acts(forget), [p.tag for p in forget], acts(retain), [p.tag for p in retain])


def with_forget_rows(state: FitState, H: torch.Tensor, tags: Sequence[str], leave_retain: Sequence[str] = ()) -> FitState:
    """`state` with forget rows (N, L, d) appended, and the retain rows of `leave_retain` dropped."""
    keep = [i for i, t in enumerate(state.retain_tags) if t not in set(leave_retain)]
    return replace(state, H_forget=torch.cat([state.H_forget, H.float()]), forget_tags=state.forget_tags + list(tags),
                   H_retain=state.H_retain[keep], retain_tags=[state.retain_tags[i] for i in keep])


def with_retain_rows(state: FitState, H: torch.Tensor, tags: Sequence[str]) -> FitState:
    """`state` with retain rows (N, L, d) appended (two-sided hardening's gate-opening images)."""
    return replace(state, H_retain=torch.cat([state.H_retain, H.float()]), retain_tags=state.retain_tags + list(tags))


def refit_with(eraser: Eraser, state: FitState, entry: dict, direction: torch.Tensor | None = None,
               ramp: bool = True) -> Eraser:
    """A new eraser with every gate solved again on `state`, the history extended by `entry`, and
    `direction` (default: the eraser's own). `ramp`: read a rows-based gate ramp again (False
    keeps it: a withdrawal must not move anyone else's answers)."""
    config = EraserConfig(**{**asdict(eraser.config), "model": dict(eraser.config.model),
                             "counts": dict(eraser.config.counts), "requests": list(eraser.config.requests)})
    config.subjects, labels = subject_labels(state.forget_tags)
    config.counts = {**config.counts, "forget": len(state.H_forget), "retain": len(state.H_retain)}
    if direction is not None and state.has_contrast:  # built again from the state's rows (an add with contrast)
        config.counts.update(recall=len(state.H_recall), erase=len(state.H_erase))
    config.requests.append(entry)
    config.forget_split = ",".join(config.subjects)
    gate, diagnostics, joint = fit_gates(state.H_forget.double(), state.H_retain.double(), config, labels)
    direction = eraser.direction.clone() if direction is None else direction.double()
    diagnostics["direction_norm"] = direction.norm(dim=-1)
    new = Eraser(direction, gate, config, diagnostics, state, joint)
    return new.follow_ramp() if ramp else new


def add_subjects(eraser: Eraser, adapter: VLMAdapter, forget: Sequence[Prompt], batch_size: int | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 contrast: tuple[Sequence[Prompt], Sequence[Prompt]] | None = None,
                 same_as: Sequence[str] = ()) -> Eraser:
    """The eraser forgetting the subjects of `forget` too (prompts tagged with their subject, as
    `contrast.gate_sets` builds them). Only these prompts are run through the model; their
    subjects' rows leave the retain side (they were retained until now). `contrast`: the new
    subjects' (recall, erase) prompts (`contrast.direction_sets`): the direction is then built
    again from everyone forgotten (the fit state must keep the earlier subjects' ones).
    `same_as`: retained subject tags that are the same people under other ids (a person added
    from photos and a name who is in the data as a record): their rows leave the retain side too,
    or the gate would be fitted to open and to stay shut on the same questions."""
    state = live_state(eraser)
    eraser.check_model(adapter)
    if not forget:
        raise RequestError("no forget prompts: a request needs the new subject's questions (photos and a name, "
                           "MLLMU rows, or a toy-world id)")
    new = sorted({p.tag for p in forget})
    if "" in new:
        raise RequestError("every forget prompt needs its subject's tag (Prompt.tag)")
    twice = sorted(set(new) & set(eraser.config.subjects))
    if twice:
        raise RequestError(f"already forgotten: {', '.join(twice)}. Withdraw a subject first to fit it again.")
    direction = None
    if contrast is not None:
        recall, erase = contrast
        if not state.has_contrast:
            raise RequestError("this eraser's fit state does not keep the direction's prompts, so the direction "
                               "cannot be built again: add the subject without its contrast prompts (the direction "
                               "stays), or fit the eraser again")
        # each side covers every new subject: recall prompts of one and erase prompts of another built a
        # direction from the difference between two people
        if {p.tag for p in recall} != set(new) or {p.tag for p in erase} != set(new):
            raise RequestError("contrast prompts: recall and erase prompts of every new subject and of no one else, "
                               f"tagged with them (new subjects: {', '.join(new)})")
        H_rec, H_era = (collect_layers(adapter, s, None, batch_size=batch_size, should_stop=should_stop).float()
                        for s in (recall, erase))
        state = replace(state, H_recall=torch.cat([state.H_recall, H_rec]),
                        recall_tags=state.recall_tags + [p.tag for p in recall],
                        H_erase=torch.cat([state.H_erase, H_era]), erase_tags=state.erase_tags + [p.tag for p in erase])
        direction = erase_direction(state.H_recall, state.H_erase)
    H = collect_layers(adapter, forget, eraser.config.layers, batch_size=batch_size, progress=progress,
                       should_stop=should_stop, position=eraser.gate_position)
    grown = with_forget_rows(state, H, [p.tag for p in forget], leave_retain=new + sorted(set(same_as) - set(new)))
    return refit_with(eraser, grown, request_entry("add", new, prompts_hash(forget, *(contrast or ()))), direction)


def contrast_for(eraser: Eraser, data, adapter: VLMAdapter, subjects: Sequence[str]
                 ) -> tuple[list[Prompt], list[Prompt]] | None:
    """The (recall, erase) prompts of `subjects` from `data` (a ForgetData forgetting them), built
    the way the eraser's direction was, when its fit state keeps the earlier subjects' ones (the
    direction is then built again); None otherwise (the direction stays)."""
    from core.contrast import KINDS, direction_pgd, direction_sets
    if eraser.state is None or not eraser.state.has_contrast or eraser.config.direction_kind not in KINDS:
        return None
    # at the fit's own PGD budget (`fit --eps`): 16/255 was used whatever the fit's was
    recall, erase = direction_sets(data, adapter, eraser.config.direction_kind, seed=eraser.config.seed,
                                   pgd_cfg=direction_pgd(eraser.config.pgd_eps))
    keep = set(subjects)
    return [p for p in recall if p.tag in keep], [p for p in erase if p.tag in keep]


def remove_subjects(eraser: Eraser, subjects: Sequence[str], repeats: int = WITHDRAWN_REPEATS) -> Eraser:
    """The eraser no longer forgetting `subjects`: their gates are dropped, their questions join
    the retain side (target 0, as a retained person's) and the other gates are solved again.

    Each other gate already had those questions as target-0 rows at the retain weight; joining the
    retain side once keeps that weight, so with no hard null space (ratio 1, the shipped recipe)
    the other gates come out unchanged (2e-11 on the shipped eraser) and nobody else's answers
    move. `repeats` > 1 weighs them more, for gates that still fire on a withdrawn person (the
    earlier gate read at the steered layer left a third of their answers steered; 10 fixed it, at
    the price of changing 1-2% of the others' replies)."""
    state = live_state(eraser)
    gone = sorted(set(subjects))
    unknown = [s for s in gone if s not in eraser.config.subjects]
    if unknown:
        raise RequestError(f"not forgotten by this eraser: {', '.join(unknown)} (it forgets "
                           f"{', '.join(eraser.config.subjects)})")
    if len(gone) == len(eraser.config.subjects):
        raise RequestError("that would withdraw every subject: an eraser forgets at least one. Stop using the "
                           "eraser instead (leave its `with` block, or strength 0).")
    keep = [i for i, t in enumerate(state.forget_tags) if t not in set(gone)]
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= 100:
        raise RequestError(f"repeats must be an integer from 1 to 100, got {repeats!r}")
    back = [i for i, t in enumerate(state.forget_tags) if t in set(gone)] * repeats
    shrunk = replace(state, H_forget=state.H_forget[keep], forget_tags=[state.forget_tags[i] for i in keep],
                     H_retain=torch.cat([state.H_retain, state.H_forget[back]]),
                     retain_tags=list(state.retain_tags) + [state.forget_tags[i] for i in back])
    if state.has_contrast:  # their contrast rows go; the direction stays (nobody else's steering moves)
        rk = [i for i, t in enumerate(state.recall_tags) if t not in set(gone)]
        ek = [i for i, t in enumerate(state.erase_tags) if t not in set(gone)]
        shrunk = replace(shrunk, H_recall=state.H_recall[rk], recall_tags=[state.recall_tags[i] for i in rk],
                         H_erase=state.H_erase[ek], erase_tags=[state.erase_tags[i] for i in ek])
    return refit_with(eraser, shrunk, request_entry("remove", gone, ""), ramp=False)
