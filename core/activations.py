"""Capture residual-stream activations at the INPUT of decoder blocks.

Site convention (used everywhere in the project): `blocks.{l}.hook_resid_pre`, TransformerLens's
name for the input of block l. The eraser reads its gate there and steering adds there, so the
off-by-one of the public code (direction at block output, gate at block input) cannot happen.
"""

from __future__ import annotations

import itertools
import os
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from transformers import DynamicCache

from core.data.records import Prompt  # noqa: F401 - the engine's input type, re-exported here
from core.models.base import Batch, VLMAdapter

SITE = "blocks.{layer}.hook_resid_pre"
POSITIONS = ("last", "mean")  # where a gate reads the prompt: its last token, or the mean of its tokens


def site_name(layer: int) -> str:
    return SITE.format(layer=layer)


class _Stop(Exception):
    """Raised after the last needed layer so the rest of the forward pass is skipped."""


# Capture hooks sit on the shared model, so they fire for every thread's forward pass. Each
# capture marks its own context with a fresh id; a hook acts only when its id is in the context
# of the forward pass that runs it. Without this, one user's collection stored another user's
# activations and aborted their generation (measured: 254 of 256 collects wrong, 1721 of 1742
# concurrent generations raised the stop signal).
_CAPTURING: ContextVar[frozenset[int]] = ContextVar("mllmeraser_capture", default=frozenset())
_IDS = itertools.count()

@contextmanager
def unseen_by_capture():
    """Run a forward pass that no live capture of this context records: steering's own unsteered
    passes that read a gate ahead (`core.steering`), whose activations are not the steered model's
    and whose layers would otherwise end the capture's pass early."""
    token = _CAPTURING.set(frozenset())
    try:
        yield
    finally:
        _CAPTURING.reset(token)


def capturing() -> bool:
    """Whether a capture is live in this context (its hooks read the forward pass that runs now)."""
    return bool(_CAPTURING.get())


# The steering requests live in this context (core.steering adds and removes its own). Declared
# here because collection must know: a steering gate reads the prompt a pass is given, so while
# one is live a prompt is read whole, never as a shared start and its question's own tokens.
STEERING: ContextVar[tuple] = ContextVar("mllmeraser_steering", default=())


def prompt_sum(h: torch.Tensor, attention_mask: torch.Tensor | None,
               last: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, d) sum of h (B, T, d) over the prompt tokens of every row (see prompt_mean), in
    float32, and (B,) how many tokens that is."""
    B, T = h.shape[:2]
    if attention_mask is None or tuple(attention_mask.shape) != (B, T):
        m = torch.ones(B, T, device=h.device)
    else:
        m = attention_mask.to(device=h.device, dtype=torch.float32).clone()
    rows = torch.arange(B, device=h.device)
    m[rows, m.argmax(1)] = 0.0  # argmax: the first attended position
    if last is not None:
        m = m * (torch.arange(T, device=h.device)[None, :] <= last.to(h.device)[:, None])
    return (h.float() * m[:, :, None]).sum(1), m.sum(1)


def prompt_mean(h: torch.Tensor, attention_mask: torch.Tensor | None,
                last: torch.Tensor | None = None) -> torch.Tensor:
    """(B, d) mean of h (B, T, d) over the prompt tokens of every row.

    Prompt tokens: attended (attention_mask 1), not the first attended token (the BOS
    attention sink, whose norm dwarfs the rest), and not after `last` (B,) when the row also
    carries answer tokens. Why a mean at all: on the toy model the last prompt token encodes
    the answer about to be given, which forget and retain people share, while the name and
    image tokens say WHO is asked about (measured held-out gate AUC, last token -> prompt mean:
    0.80 -> 0.92 at layer 3 of the first toy model, 0.72-0.80 -> 0.96-0.98 at layers 1-3 of the shipped one).
    """
    total, count = prompt_sum(h, attention_mask, last)
    return total / count.clamp(min=1.0)[:, None]


def _hidden(args, kwargs) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def capture(adapter: VLMAdapter, batch: Batch, layers: Sequence[int] | None = None,
            positions: str | torch.Tensor = "last", differentiable: bool = False) -> torch.Tensor:
    """Activations at `blocks.{l}.hook_resid_pre` for a batch.

    positions: "last" (last prompt token, shape (B, n_layers, d)), "mean" (mean over the prompt
    tokens, see prompt_mean; (B, n_layers, d)), "all" (B, n_layers, T, d), or a LongTensor
    (B, k) of token indices (B, n_layers, k, d). Returned in float32 on CPU; with
    differentiable=True on the model's device and attached to the graph (an attack can then
    follow the gradient of an activation back to the pixels).
    """
    with torch.enable_grad() if differentiable else torch.no_grad():
        return _capture(adapter, batch, layers, positions, differentiable)


def _capture(adapter: VLMAdapter, batch: Batch, layers: Sequence[int] | None, positions: str | torch.Tensor,
             differentiable: bool) -> torch.Tensor:
    def select(h: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(batch), device=h.device)  # a sharded model's blocks: each its own device
        if isinstance(positions, str) and positions == "last":
            return h[rows, batch.prompt_last.to(h.device)]
        if isinstance(positions, str) and positions == "mean":
            return prompt_mean(h, batch.inputs.get("attention_mask"), batch.prompt_last.to(h.device))
        if isinstance(positions, str) and positions == "all":
            return h
        return h[rows[:, None], positions.to(h.device)]
    out = run_to(adapter, adapter.forward_inputs(batch), layers, select, differentiable)
    if differentiable:  # on the first captured layer's device (a sharded model's gradient follows .to)
        return torch.stack([o.to(out[0].device) for o in out], dim=1)
    return _stacked(out)


def _stacked(out: list[torch.Tensor]) -> torch.Tensor:
    """(B, n_layers, ...) on the CPU: one copy off the GPU per batch, not one per layer (per layer
    for a sharded model, whose layers sit on several devices)."""
    if len({o.device for o in out}) == 1:
        return torch.stack(out, dim=1).cpu()
    return torch.stack([o.cpu() for o in out], dim=1)


def run_to(adapter: VLMAdapter, inputs: dict, layers: Sequence[int] | None,
           select: Callable[[torch.Tensor], torch.Tensor], differentiable: bool = False) -> list[torch.Tensor]:
    """One forward pass with `inputs` that stops at the input of the deepest of `layers`:
    `select(h)` of the residual stream entering each of them, in float32, in `layers`' order.
    What it reads is this pass's own: other threads' passes on the shared model run past the
    hooks untouched."""
    layers = list(range(adapter.num_layers)) if layers is None else list(layers)
    if not layers:  # max() of nothing failed with a message that named nothing
        raise ValueError("no layer to read: give at least one layer (an eraser that steers no layer has no gate "
                         "to read; set a strength or steered layers)")
    out: dict[int, torch.Tensor] = {}
    bad = [l for l in layers if not 0 <= l < adapter.num_layers]
    if bad:
        raise ValueError(f"layer(s) {bad} out of range: this model has {adapter.num_layers} decoder layers "
                         f"(0-{adapter.num_layers - 1})")
    last = max(layers)
    handles = []
    me = next(_IDS)

    def make_hook(layer: int):
        def hook(_module, args, kwargs):
            if me not in _CAPTURING.get():
                return None  # another request's forward pass
            sel = select(_hidden(args, kwargs))
            out[layer] = sel.float() if differentiable else sel.detach().float()
            if layer == last:
                raise _Stop
        return hook

    blocks = adapter.layers
    token = _CAPTURING.set(_CAPTURING.get() | {me})
    try:
        for layer in layers:
            handles.append(blocks[layer].register_forward_pre_hook(make_hook(layer), with_kwargs=True))
        try:
            adapter.model(**{"use_cache": False, **inputs})
        except _Stop:
            pass
    finally:
        for h in handles:
            h.remove()
        _CAPTURING.reset(token)
    return [out[l] for l in layers]


def batches(prompts: Sequence[Prompt], batch_size: int, by_length: bool = False
            ) -> Iterable[tuple[list[int], list[Prompt]]]:
    """Group prompts by whether they carry an image (families cannot mix), then chunk; callers
    put rows back by index. `by_length` orders each group by length first: a batch pads to its
    longest prompt, and ordering saved a quarter of the collection time of the shipped eraser's
    retain set (activations change by float rounding only; generation keeps input order so that
    evaluation batches, and so greedy answers, stay as published)."""
    for has_image in (True, False):
        idx = [i for i, p in enumerate(prompts) if (p.image is not None) == has_image]
        if by_length:
            idx.sort(key=lambda i: len(prompts[i].question) + sum(len(q) + len(a) for q, a in prompts[i].history))
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            yield chunk, [prompts[i] for i in chunk]


def encode_prompts(adapter: VLMAdapter, prompts: Sequence[Prompt], answers: Sequence[str] | None = None) -> Batch:
    images = None
    if prompts[0].image is not None:
        imgs = [p.image for p in prompts]
        images = torch.stack([im if isinstance(im, torch.Tensor) else adapter.to_pixels(im) for im in imgs])
    turns = any(p.history or p.prefill for p in prompts)
    return adapter.encode([p.question for p in prompts], images, answers,
                          [p.history for p in prompts] if turns else None, [p.prefill for p in prompts] if turns else None)


SMALL_MODEL = 10**9  # parameters


def collection_batch(adapter: VLMAdapter) -> int:
    """Prompts per forward pass when collecting activations: 64 on a model under a billion
    parameters, whose forward is bound by Python overhead (64 made the shipped eraser's fit 16%
    faster than 16, activations equal to float rounding), 16 on larger ones (the kept keys and
    values of 16 pictures' starts are already about 5 GB at LLaVA-1.5-7B's length)."""
    return 64 if adapter.num_parameters < SMALL_MODEL else 16


def collect(adapter: VLMAdapter, prompts: Sequence[Prompt], layers: Sequence[int] | None = None,
            batch_size: int | None = None, progress: Callable[[int, int], None] | None = None,
            should_stop: Callable[[], bool] | None = None, position: str = "last",
            share_starts: bool = True) -> torch.Tensor:
    """Activations for many prompts at the last prompt token (position "last") or averaged over
    the prompt tokens ("mean"): (N, n_layers, d), in input order.

    Repeated prompts (same question, same image object) run once and their row is repeated:
    gate sets repeat prompts on purpose to weight them in the retain Gram matrix.
    `progress(done, total)` is called after every batch (total counts distinct prompts);
    `should_stop()` aborts between batches (raises InterruptedError) so a UI can cancel long
    collections. `share_starts`: prompts about one picture run their common start (the picture's
    tokens) once, where the family allows it (`shared_starts`); False runs every prompt whole.
    `batch_size`: prompts per pass (None: `collection_batch`)."""
    batch_size = batch_size or collection_batch(adapter)
    if not prompts:
        raise ValueError("no prompts to collect activations for")
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
    first: dict[tuple, int] = {}  # (question, image identity, turns) -> row among the distinct prompts
    distinct: list[Prompt] = []
    rows = []
    for p in prompts:
        key = (p.question, id(p.image), p.history, p.prefill)
        if key not in first:
            first[key] = len(distinct)
            distinct.append(p)
        rows.append(first[key])
    result: list[torch.Tensor | None] = [None] * len(distinct)
    done = 0

    def store(idx: list[int], acts: torch.Tensor) -> None:
        nonlocal done
        for j, i in enumerate(idx):
            result[i] = acts[j]
        done += len(idx)
        if progress is not None:
            progress(done, len(distinct))
    groups, alone = shared_starts(adapter, distinct, layers) if share_starts else ([], list(range(len(distinct))))
    for idx, chunk in batches([distinct[i] for i in alone], batch_size, by_length=True):
        _stop_if(should_stop)
        store([alone[i] for i in idx], capture(adapter, encode_prompts(adapter, chunk), layers, positions=position))
    _collect_shared(adapter, groups, layers, position, batch_size, store, should_stop)
    return torch.stack(result)[torch.tensor(rows)]  # type: ignore[arg-type]


def _stop_if(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise InterruptedError("activation collection stopped")


# ---------------------------------------------------------------- prompts that show one image
@dataclass
class _Shared:
    """Prompts that show one image and begin with the same tokens, the image's among them."""

    image: object  # the PIL image (or pixel tensor) they share
    rows: list[int]  # their places among the prompts given to `shared_starts`
    start: list[int]  # the token ids they all begin with
    rests: list[list[int]]  # each prompt's own tokens after the start (one at least)


def shared_starts(adapter: VLMAdapter, prompts: Sequence[Prompt], layers: Sequence[int] | None = None
                  ) -> tuple[list[_Shared], list[int]]:
    """The prompts that can share one pass over their common start, grouped, and the places of
    the others. Why: a fit asks several questions about each picture (the toy's gate sets: 3,580
    image prompts of 592 pictures; MLLMU-Bench: a dozen per person), and in a causal decoder the
    start's activations and keys do not depend on what follows, so the vision tower and the
    start (BOS, template, every image token: 19 of ~45 tokens on the toy, 576 of ~600 on
    LLaVA-1.5) run once per picture instead of once per question. Only families whose
    `shared_prefix` says so; a group whose common start does not hold all its image tokens, a
    collection that stops at layer 0 (nothing there looks back) or one made while this context
    steers the model (`STEERING`) runs whole."""
    everyone = list(range(len(prompts)))
    if not adapter.shared_prefix or (layers is not None and max(layers, default=0) == 0) or STEERING.get():
        return [], everyone
    by_image: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        if p.image is not None:
            by_image.setdefault(id(p.image), []).append(i)
    groups, alone = [], [i for i, p in enumerate(prompts) if p.image is None]
    image_token = adapter.image_token_id
    for idx in by_image.values():
        if len(idx) < 2:
            alone.extend(idx)
            continue
        ids = [adapter.prompt_ids(prompts[i].question, True, prompts[i].history, prompts[i].prefill) for i in idx]
        start = os.path.commonprefix(ids)[:min(map(len, ids)) - 1]  # every prompt keeps a token of its own
        if not start or start.count(image_token) != ids[0].count(image_token):
            alone.extend(idx)
            continue
        groups.append(_Shared(prompts[idx[0]].image, idx, start, [x[len(start):] for x in ids]))
    return groups, sorted(alone)


def _collect_shared(adapter: VLMAdapter, groups: list[_Shared], layers: Sequence[int] | None, position: str,
                    batch_size: int, store: Callable[[list[int], torch.Tensor], None],
                    should_stop: Callable[[], bool] | None) -> None:
    """Activations of grouped prompts: one pass over the starts of up to `batch_size` pictures
    (left padded, keys and values kept), then their prompts' own tokens in batches, each row
    attending to its picture's start through the kept keys and values with the positions it has
    in the whole prompt. Equal to whole prompts up to float rounding (tested per family). Holds
    two batches' worth of start keys and values at a time."""
    pad = adapter.tokenizer.pad_token_id
    dev = adapter.device
    for s in range(0, len(groups), batch_size):
        chunk = groups[s:s + batch_size]
        _stop_if(should_stop)
        width = max(len(g.start) for g in chunk)
        ids = torch.tensor([[pad] * (width - len(g.start)) + g.start for g in chunk])
        mask = torch.tensor([[0] * (width - len(g.start)) + [1] * len(g.start) for g in chunk])
        # tensors checked as `encode` checks them: a 0-255 tensor shared by two prompts went through unchecked
        pixels = adapter.check_pixels(torch.stack([g.image if isinstance(g.image, torch.Tensor)
                                                   else adapter.to_pixels(g.image) for g in chunk]))
        inputs = {"input_ids": ids, "attention_mask": mask, **adapter.pixel_inputs(pixels),
                  **adapter.extra_inputs(ids, True)}
        # the positions of the start and one more (text) token: where each prompt's own tokens
        # continue from (after an image, M-RoPE counts on from the largest of its grid's)
        more = torch.cat([ids, torch.full((len(chunk), 1), pad)], 1)
        pos = adapter.positions({k: v.to(dev) for k, v in {
            **inputs, "input_ids": more, "attention_mask": torch.cat([mask, torch.ones_like(mask[:, :1])], 1),
            **adapter.extra_inputs(more, True)}.items()})
        inputs = {**{k: v.to(dev) for k, v in inputs.items()}, "position_ids": pos[..., :-1]}
        after = pos[..., -1].cpu()
        cache = DynamicCache()
        # the start pass fills the cache; what it reads is needed for the prompt mean only
        starts = run_to(adapter, {**inputs, "past_key_values": cache, "use_cache": True}, layers,
                        lambda h: prompt_sum(h, mask.to(h.device))[0] if position == "mean" else h[:, -1])
        counts = (mask.sum(1) - 1).float()  # the first token (BOS) is not a prompt token
        rows = sorted(((g, j) for g, grp in enumerate(chunk) for j in range(len(grp.rests))),
                      key=lambda r: len(chunk[r[0]].rests[r[1]]))
        for r in range(0, len(rows), batch_size):
            part = rows[r:r + batch_size]
            _stop_if(should_stop)
            store([chunk[g].rows[j] for g, j in part],
                  _rest_pass(adapter, chunk, part, cache, mask, after, starts, counts, layers, position, pad))


def _rest_pass(adapter: VLMAdapter, chunk: list[_Shared], part: list[tuple[int, int]], cache: DynamicCache,
               mask: torch.Tensor, after: torch.Tensor, starts: list[torch.Tensor], counts: torch.Tensor,
               layers: Sequence[int] | None, position: str, pad: int) -> torch.Tensor:
    """(B, n_layers, d) for `part` (picture, prompt) rows: their own tokens (right padded) after
    their picture's start, read from the kept keys and values."""
    g = torch.tensor([gi for gi, _ in part])
    rests = [chunk[gi].rests[j] for gi, j in part]
    width = max(map(len, rests))
    lengths = torch.tensor([len(x) for x in rests])
    own = (torch.arange(width)[None, :] < lengths[:, None]).long()
    kv = DynamicCache([(l.keys[g.to(l.keys.device)], l.values[g.to(l.values.device)]) for l in cache.layers])
    dev = adapter.device
    ids = torch.tensor([x + [pad] * (width - len(x)) for x in rests])
    inputs = {"input_ids": ids, "attention_mask": torch.cat([mask[g], own], 1), **adapter.extra_inputs(ids, False),
              "position_ids": after.index_select(-1, g)[..., None] + torch.arange(width)}  # (B, W), or (3, B, W)
    inputs = {**{k: v.to(dev) for k, v in inputs.items()}, "past_key_values": kv, "use_cache": True}
    rows = torch.arange(len(part))

    def select(h: torch.Tensor) -> torch.Tensor:
        if position == "last":
            return h[rows.to(h.device), (lengths - 1).to(h.device)]
        return (h.float() * own.to(h.device)[:, :, None]).sum(1)
    out = run_to(adapter, inputs, layers, select)
    if position == "mean":
        out = [(st[g.to(st.device)].to(o.device) + o) / (counts[g] + lengths).to(o.device)[:, None]
               for st, o in zip(starts, out)]
    return _stacked(out)


def collect_layers(adapter: VLMAdapter, prompts: Sequence[Prompt], layers: Sequence[int] | None,
                   **kwargs) -> torch.Tensor:
    """`collect` laid out over every layer, (N, num_layers, d), with only `layers` run and filled
    (the others zero; None = all). A fit of one or two layers then stops each forward pass at
    its deepest fitted layer instead of running the whole model."""
    if layers is None:
        return collect(adapter, prompts, **kwargs)
    chosen = sorted({int(l) for l in layers})
    got = collect(adapter, prompts, chosen, **kwargs)
    out = torch.zeros(got.shape[0], adapter.num_layers, got.shape[-1], dtype=got.dtype)
    out[:, chosen] = got
    return out
