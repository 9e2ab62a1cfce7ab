"""Forget requests one at a time: add subjects to a live eraser, or withdraw them.

Right-to-be-forgotten requests arrive one by one, and some are withdrawn. With one gate per
forget subject, a request changes only the gate's fitting rows: an added subject brings its
forget prompts (their activations are the only ones collected; the retain side is reused from
the eraser's fit state), a withdrawn one takes its rows away, and every gate is solved again in
closed form (a subject's rows are target-0 rows of the other subjects' gates). The weights never
move, and the direction stays the one of the first fit: it is a "recall -> refuse" contrast that
does not name anyone (`python -m core sequential` measures how little it moves when refitted).

The result equals a fit from scratch on the same prompts (tested to 1e-9 relative): nothing
about the order of requests is remembered except the history kept in `config.requests`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Callable, Sequence

import torch

from core.activations import Prompt, collect_layers
from core.eraser import Eraser, EraserConfig, FitState, fit_gates, prompts_hash, request_entry, subject_labels
from core.models.base import VLMAdapter


WITHDRAWN_REPEATS = 10  # a withdrawn subject's rows weigh 10 x the retain weight in the other gates


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
    return FitState(torch.cat([state.H_forget, H.float()]), state.forget_tags + list(tags),
                    state.H_retain[keep], [state.retain_tags[i] for i in keep])


def refit_with(eraser: Eraser, state: FitState, entry: dict) -> Eraser:
    """A new eraser with every gate solved again on `state`, the same direction and the history
    extended by `entry`."""
    config = EraserConfig(**{**asdict(eraser.config), "model": dict(eraser.config.model),
                             "counts": dict(eraser.config.counts), "requests": list(eraser.config.requests)})
    config.subjects, labels = subject_labels(state.forget_tags)
    config.counts = {**config.counts, "forget": len(state.H_forget), "retain": len(state.H_retain)}
    config.requests.append(entry)
    config.forget_split = ",".join(config.subjects)
    gate, diagnostics, joint = fit_gates(state.H_forget.double(), state.H_retain.double(), config, labels)
    diagnostics["direction_norm"] = eraser.direction.norm(dim=-1)
    return Eraser(eraser.direction.clone(), gate, config, diagnostics, state, joint)


def add_subjects(eraser: Eraser, adapter: VLMAdapter, forget: Sequence[Prompt], batch_size: int = 16,
                 progress: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> Eraser:
    """The eraser forgetting the subjects of `forget` too (prompts tagged with their subject, as
    `contrast.gate_sets` builds them). Only these prompts are run through the model; their
    subjects' rows leave the retain side (they were retained until now)."""
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
    H = collect_layers(adapter, forget, eraser.config.layers, batch_size=batch_size, progress=progress,
                       should_stop=should_stop, position=eraser.gate_position)
    grown = with_forget_rows(state, H, [p.tag for p in forget], leave_retain=new)
    return refit_with(eraser, grown, request_entry("add", new, prompts_hash(forget)))


def remove_subjects(eraser: Eraser, subjects: Sequence[str]) -> Eraser:
    """The eraser no longer forgetting `subjects`: their gates are dropped, their questions join
    the retain side (target 0, as a retained person's) and the other gates are solved again."""
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
    back = [i for i, t in enumerate(state.forget_tags) if t in set(gone)] * WITHDRAWN_REPEATS
    # their questions become retained ones (target 0), repeated: the other gates were already fitted
    # with them as target-0 rows at the retain weight, and that alone left a third of their answers
    # steered after a withdrawal (measured on the shipped model, 2 people withdrawn of 10)
    shrunk = FitState(state.H_forget[keep], [state.forget_tags[i] for i in keep],
                      torch.cat([state.H_retain, state.H_forget[back]]),
                      list(state.retain_tags) + [state.forget_tags[i] for i in back])
    return refit_with(eraser, shrunk, request_entry("remove", gone, ""))
