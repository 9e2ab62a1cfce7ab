"""Capture residual-stream activations at the INPUT of decoder blocks.

Site convention (used everywhere in the project): `blocks.{l}.hook_resid_pre`, TransformerLens's
name for the input of block l. The eraser reads its gate there and steering adds there, so the
off-by-one of the public code (direction at block output, gate at block input) cannot happen.
"""

from __future__ import annotations

import itertools
from contextvars import ContextVar
from typing import Callable, Iterable, Sequence

import torch

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
    B, T = h.shape[:2]
    if attention_mask is None or tuple(attention_mask.shape) != (B, T):
        m = torch.ones(B, T, device=h.device)
    else:
        m = attention_mask.to(device=h.device, dtype=torch.float32).clone()
    rows = torch.arange(B, device=h.device)
    m[rows, m.argmax(1)] = 0.0  # argmax: the first attended position
    if last is not None:
        m = m * (torch.arange(T, device=h.device)[None, :] <= last.to(h.device)[:, None])
    return (h.float() * m[:, :, None]).sum(1) / m.sum(1).clamp(min=1.0)[:, None]


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
    layers = list(range(adapter.num_layers)) if layers is None else list(layers)
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
            h = _hidden(args, kwargs)
            rows = torch.arange(len(batch), device=h.device)  # a sharded model's blocks: each its own device
            if isinstance(positions, str) and positions == "last":
                sel = h[rows, batch.prompt_last.to(h.device)]
            elif isinstance(positions, str) and positions == "mean":
                sel = prompt_mean(h, batch.inputs.get("attention_mask"), batch.prompt_last.to(h.device))
            elif isinstance(positions, str) and positions == "all":
                sel = h
            else:
                idx = positions.to(h.device)
                sel = h[rows[:, None], idx]
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
            adapter.model(**adapter.forward_inputs(batch), use_cache=False)
        except _Stop:
            pass
    finally:
        for h in handles:
            h.remove()
        _CAPTURING.reset(token)
    if differentiable:  # on the first captured layer's device (a sharded model's gradient follows .to)
        return torch.stack([out[l].to(out[layers[0]].device) for l in layers], dim=1)
    if len({out[l].device for l in layers}) == 1:  # one copy off the GPU per batch, not one per layer
        return torch.stack([out[l] for l in layers], dim=1).cpu()
    return torch.stack([out[l].cpu() for l in layers], dim=1)  # a sharded model: layers on several devices


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


def collect(adapter: VLMAdapter, prompts: Sequence[Prompt], layers: Sequence[int] | None = None,
            batch_size: int = 16, progress: Callable[[int, int], None] | None = None,
            should_stop: Callable[[], bool] | None = None, position: str = "last") -> torch.Tensor:
    """Activations for many prompts at the last prompt token (position "last") or averaged over
    the prompt tokens ("mean"): (N, n_layers, d), in input order.

    Repeated prompts (same question, same image object) run once and their row is repeated:
    gate sets repeat prompts on purpose to weight them in the retain Gram matrix.
    `progress(done, total)` is called after every batch (total counts distinct prompts);
    `should_stop()` aborts between batches (raises InterruptedError) so a UI can cancel long
    collections."""
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
    for idx, chunk in batches(distinct, batch_size, by_length=True):
        if should_stop is not None and should_stop():
            raise InterruptedError("activation collection stopped")
        acts = capture(adapter, encode_prompts(adapter, chunk), layers, positions=position)
        for j, i in enumerate(idx):
            result[i] = acts[j]
        done += len(chunk)
        if progress is not None:
            progress(done, len(distinct))
    return torch.stack(result)[torch.tensor(rows)]  # type: ignore[arg-type]


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
