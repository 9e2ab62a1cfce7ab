"""Reversible, leak-free, request-isolated steering hooks at `blocks.{l}.hook_resid_pre`.

What is added at the input of steered block l:

    h[:, all positions] += lambda_l * g_l * r_l,   g_l = h[:, last prompt token] . u_l

(with a gate floor f > 0 or a full value t < 1, g_l is replaced by the ramp (g_l - f)+ / (t - f),
capped at 1 when t < 1; at f = 0 and t = 1 the ramp is off and g_l is the method's signed gate;
`SteeringConfig.coefficient`)

With a gate vector u (MLLMEraser's input-aware f(h) = W P h = (h . u) r) the gate is ~1 for
inputs to forget and ~0 for retained ones; without one (plain additive steering) g = 1.
With one gate vector per forget subject (u_1..u_K, a workbench option) g = max_k h . u_k.

A gate read at layers deeper than the first steered one must be known before that layer runs:
`steer(..., gate_from=...)` documents the three ways it is read, the cheapest being a scouting
pass that costs nothing extra on prompts whose gate stays below its floor, and on prompts whose
gate opens only the blocks from the first steered layer to the deepest gate layer once more.

When: mode "prefill" (the public code's behaviour: only the prompt pass; generated tokens feel
the change through the KV cache), "latched" (decode steps are steered too, with the gate read
once at the last prompt token), or "every_step" (the gate is recomputed at every new token).
A pass of one token is read as a decode step: a prompt of a single token is not steered as one.

Keep a `with` block from spanning a `yield`: the ContextVar belongs to the context that entered
the block, and a generator paused inside one leaves its caller's own passes steered until it
resumes and leaves (run such a body in `contextvars.copy_context().run`).

Why the ContextVar: hooks stay registered on the model while at least one request uses it, and
each hook reads the settings of the request in ITS OWN context. Two users steering one shared
model from two threads with different strengths therefore never see each other's settings.
Hooks are removed when the last request leaves, also when the body raised.
"""

from __future__ import annotations

import numbers
import threading
import weakref
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import torch

from core.activations import POSITIONS, STEERING, capturing, prompt_mean, unseen_by_capture
from core.nullspace import gate_scores

MODES = ("prefill", "latched", "every_step")

_ACTIVE: ContextVar[tuple["_Request", ...]] = STEERING  # this context's live requests
_LOCK = threading.Lock()
_INSTALLED: dict[int, "_Installed"] = {}  # by id(blocks); each entry holds a weak reference to its blocks


@dataclass(frozen=True)
class SteeringConfig:
    """Immutable per-request settings: one strength per layer (0 = not steered) and a mode."""

    strengths: tuple[float, ...]
    mode: str = "prefill"
    # the gate steers by how far it is above this floor, (g - floor)+ / (full - floor): a gate near 0
    # (a retained input) then adds exactly nothing, while a gate of `full` steers fully (capped
    # there when full < 1: a gate the attacker pushed half-way down still steers much of the way)
    floor: float = 0.0
    full: float = 1.0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"steering mode must be one of {MODES}, got {self.mode!r}")
        if not 0.0 <= self.floor < 1.0:  # also rejects NaN
            raise ValueError(f"gate floor must be in [0, 1), got {self.floor}")
        if not self.floor < self.full <= 1.0:
            raise ValueError(f"the gate's full-steering value must be in (floor, 1], got {self.full} (floor "
                             f"{self.floor})")
        for s in self.strengths:
            if not (abs(s) < 1e6):  # also rejects NaN
                raise ValueError(f"steering strength {s} is not a usable number")

    def coefficient(self, g: torch.Tensor) -> torch.Tensor:
        """How much of the steering a gate value g asks for: g itself (the method), or with a
        floor / full value the ramp (g - floor)+ / (full - floor), capped at 1 when full < 1."""
        if self.floor == 0 and self.full == 1:
            return g
        c = (g - self.floor).clamp(min=0) / (self.full - self.floor)
        return c.clamp(max=1) if self.full < 1 else c

    @property
    def steered_layers(self) -> list[int]:
        return [i for i, s in enumerate(self.strengths) if s != 0]


def layer_strengths(num_layers: int, strength: float | Sequence[float] | Mapping[int, float],
                    layers: Iterable[int] | None = None) -> tuple[float, ...]:
    """Per-layer strengths from a scalar, a full list or a {layer: strength} map, then masked
    to `layers` (None = every layer given a strength)."""
    if isinstance(strength, (str, bytes)) or isinstance(layers, (str, bytes)):  # "2" read as the sequence ["2"]
        raise ValueError(f"strength must be a number, a list of one per layer or a {{layer: strength}} map, and "
                         f"layers a list of layer numbers; got strength {strength!r}, layers {layers!r}")
    if isinstance(strength, torch.Tensor) and strength.dim() == 0:
        strength = float(strength)
    if isinstance(strength, Mapping):
        # keys as numbers: {"1": 2.0} (JSON) passed the range check and then steered nothing
        strength = {int(l): float(v) for l, v in strength.items()}
        bad = sorted(l for l in strength if not 0 <= l < num_layers)
        if bad:  # a map for another model would steer nothing, silently
            raise ValueError(f"strength given for layer(s) {bad}, out of range: the model has layers 0..{num_layers - 1}")
        vals = [strength.get(i, 0.0) for i in range(num_layers)]
    elif isinstance(strength, numbers.Real):  # numpy scalars too (they raised "not iterable")
        vals = [float(strength)] * num_layers
    else:
        vals = [float(s) for s in strength]
        if len(vals) != num_layers:
            raise ValueError(f"{len(vals)} strengths given for {num_layers} layers")
    if layers is not None:
        keep = set(int(l) for l in layers)
        bad = [l for l in keep if not 0 <= l < num_layers]
        if bad:
            raise ValueError(f"layer(s) {sorted(bad)} out of range: the model has layers 0..{num_layers - 1}")
        vals = [v if i in keep else 0.0 for i, v in enumerate(vals)]
    return tuple(vals)


@dataclass
class _Request:
    key: int
    direction: torch.Tensor  # (L, d); each block reads it in its own device and dtype (`on`)
    gate_vec: torch.Tensor | Callable[[int, torch.Tensor], torch.Tensor] | None  # (L, d) or (L, K, d) float32,
    # a callable (layer, (B, d) float32) -> (B,) (e.g. the MLP-gate ablation), or None (plain additive)
    config: SteeringConfig
    gate_index: torch.Tensor | None = None  # (B,) last prompt token per row; None = last column
    gate_position: str = "last"  # "last": gate read at the last prompt token; "mean": prompt mean
    attention_mask: torch.Tensor | None = None  # (B, T) of the current forward pass (for "mean")
    alive: bool = True
    gate_from: tuple[int, ...] | None = None  # read the gate at these layers before steering (one layer,
    # or a joint gate summed over several), apply it at every steered layer (None: each steered layer reads its own)
    in_gate_pass: bool = False
    in_pass: bool = False  # this prompt pass reads the gate on the way (`_read_ahead`), no pass from the top
    scouting: bool = False  # this prompt pass runs unsteered, reading the gate; rerun steered if it fires (`_scout`)
    rerun: bool = False  # the steered rerun of a prompt pass whose scouting found the gate open
    scouted: dict[int, tuple] = field(default_factory=dict)  # arguments of the scouted blocks to run again
    scout_input: torch.Tensor | None = None  # the first of them's input (`_patch`)
    pending: list[int] = field(default_factory=list)  # layers scouted before the gate was known (they show it)
    partial: torch.Tensor | None = None  # the joint gate's sum over the gate layers passed so far, (B, K) or (B,)
    early_gate: torch.Tensor | None = None  # (B,) the gate of the current prompt from the gate pass
    gates: dict[int, torch.Tensor] = field(default_factory=dict)  # prefill gate per layer, (B,)
    trace: list[tuple[int, int, bool]] = field(default_factory=list)  # (layer, seq_len, steered)
    copies: dict[tuple, torch.Tensor] = field(default_factory=dict)  # direction / gate per (device, dtype)

    def on(self, name: str, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The direction or gate on `like`'s device: a sharded model's blocks sit on several
        devices (or are offloaded), so each block reads a copy on its own input's device, made
        once per request and device."""
        key = (name, like.device, dtype)
        t = self.copies.get(key)
        if t is None:
            src = self.direction if name == "direction" else self.gate_vec
            t = self.copies[key] = src.to(device=like.device, dtype=dtype)
        return t

    def apply(self, layer: int, h: torch.Tensor) -> torch.Tensor:
        s = self.config.strengths[layer] if layer < len(self.config.strengths) else 0.0
        prefill = h.shape[1] > 1
        if prefill and s != 0 and self.gate_from is not None and self.early_gate is None:
            # the gate is read before the steered layers, by the hook on the model's top: a pass run from a submodule
            # has none (it steered with the previous prompt's gate, or with this layer's own)
            raise RuntimeError("this steering reads its gate before the steered layers, from a pass of the whole "
                               "model: run the model itself (or the adapter), not one of its submodules")
        if prefill or (self.config.mode == "every_step" and s != 0):  # unsteered layers: gate read at prefill only
            # unsteered layers show their own gate, except a joint gate's layers: they hold parts of one gate
            early = prefill and self.early_gate is not None and (s != 0 or len(self.gate_from) > 1)
            g = self.early_gate if early else self._gate(layer, h, prefill)
            if prefill:
                self.gates[layer] = g.detach()
        elif self.config.mode == "latched" and s != 0:
            g = self.gates.get(layer)
            if g is None:
                raise RuntimeError("latched steering saw a decode step before any prefill")
            if g.shape[0] != h.shape[0]:  # a one-token prompt after another prompt: its gate broadcast, the batch grew
                raise RuntimeError(f"latched steering: a step of {h.shape[0]} row(s) after a prompt of {g.shape[0]}; "
                                   "a one-token prompt is read as a decode step: give prompts of two tokens or more")
        else:
            self.trace.append((layer, h.shape[1], False))
            return h
        self.trace.append((layer, h.shape[1], s != 0))
        if s == 0:
            return h
        coef = self.config.coefficient(g).to(device=h.device, dtype=h.dtype)
        delta = (s * coef)[:, None, None] * self.on("direction", h, h.dtype)[layer]
        return h + delta

    def _gate(self, layer: int, h: torch.Tensor, prefill: bool) -> torch.Tensor:
        if self.gate_vec is None:
            return torch.ones(h.shape[0], device=h.device)
        last = self._gate_input(h, prefill)
        if callable(self.gate_vec):
            return self.gate_vec(layer, last.float()).to(last.device)
        return gate_scores(last.float(), self.on("gate", last, torch.float32)[layer])  # float32 whatever the model

    def _read_in_gate_pass(self, layer: int, h: torch.Tensor) -> bool:
        """Add layer's part of the gate; True once the deepest gate layer is read (the pass can stop)."""
        last = self._gate_input(h, True).float()
        u = self.on("gate", last, torch.float32)[layer]
        part = last @ (u.T if u.ndim == 2 else u)  # (B, K) per subject, or (B,)
        self.partial = part if self.partial is None else self.partial + part.to(self.partial.device)
        if layer != self.gate_from[-1]:
            return False
        self.early_gate = self.partial.amax(-1) if self.partial.ndim == 2 else self.partial
        self.partial = None
        return True

    def _gate_input(self, h: torch.Tensor, prefill: bool) -> torch.Tensor:
        """The (B, d) activation the gate reads: the prompt mean or the last prompt token."""
        if self.gate_position == "mean":
            mask = self.attention_mask
            if mask is not None and mask.shape[1] > h.shape[1]:
                mask = mask[:, -h.shape[1]:]
            last = prompt_mean(h, mask, self.gate_index)
        elif prefill and self.gate_index is not None:
            rows = torch.arange(h.shape[0], device=h.device)
            last = h[rows, self.gate_index.to(h.device)]
        else:
            last = h[:, -1]
        return last


class _Installed:
    """One forward pre-hook per decoder block of one model, shared by all requests."""

    def __init__(self, blocks: torch.nn.ModuleList, key: int, top: torch.nn.Module | None = None):
        self.count = 0
        self.blocks = weakref.ref(blocks)  # the key is id(blocks), which Python reuses once they are freed
        self.handles = [blk.register_forward_pre_hook(self._make(i, key, blocks), with_kwargs=True)
                        for i, blk in enumerate(blocks)]
        if top is not None:  # records the attention mask that prompt-mean gates need
            self.handles.append(top.register_forward_pre_hook(self._mask_hook(key, blocks), with_kwargs=True))
            self.handles.append(top.register_forward_hook(self._rerun_hook(key), with_kwargs=True))

    @staticmethod
    def _mask_hook(key: int, blocks: torch.nn.ModuleList):
        def hook(module, args, kwargs):
            mask = kwargs.get("attention_mask")
            reqs = [r for r in _ACTIVE.get() if r.key == key and r.alive]
            if any(r.in_gate_pass for r in reqs):  # one request's gate pass from the top: the others wait
                return None
            for r in reqs:
                if r.gate_position == "mean":  # last-token gates never read it
                    r.attention_mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
            for r in reqs:
                if r.gate_from is not None and not r.in_gate_pass and not r.rerun:
                    _refuse_cached_prompt(args, kwargs)
                    r.early_gate, r.partial, r.pending, r.scouted, r.scout_input = None, None, [], {}, None
                    alone_prompt = len(reqs) == 1 and _prompt_length(args, kwargs) > 1
                    r.scouting = alone_prompt and _can_scout(r, module, kwargs)
                    r.in_pass = alone_prompt and not r.scouting and _can_read_ahead(r, blocks)
                    if not r.in_pass and not r.scouting:
                        _gate_pass(r, module, args, kwargs)
            return None
        return hook

    @staticmethod
    def _rerun_hook(key: int):
        def hook(module, args, kwargs, output):
            reqs = [r for r in _ACTIVE.get() if r.key == key and r.alive]
            try:
                return rerun(module, args, kwargs, reqs)
            finally:
                for r in reqs:  # the prompt's gate ends with its pass: a pass that skips the top model (a submodule
                    if not r.in_gate_pass and not r.rerun:  # run alone) steered with the previous prompt's gate
                        r.early_gate = None

        def rerun(module, args, kwargs, reqs):
            for r in reqs:
                if not r.scouting:
                    continue
                r.scouting = False
                if r.early_gate is None:
                    raise RuntimeError(f"the prompt pass never reached gate layer {r.gate_from[-1]}")
                if not _opens(r):
                    return None  # every row below the gate's floor: the unsteered pass is the steered one
                cache = kwargs.get("past_key_values")  # a cache `_patch` could not empty layer by layer
                if cache is not None:
                    cache.reset()  # it was empty before the scouting pass (`_can_scout`)
                r.rerun = True
                try:
                    return module(*args, **kwargs)
                finally:
                    r.rerun = False
            return None
        return hook

    @staticmethod
    def _make(layer: int, key: int, blocks: torch.nn.ModuleList):
        def hook(_module, args, kwargs):
            reqs = [r for r in _ACTIVE.get() if r.key == key and r.alive]
            if not reqs:
                return None
            h0 = args[0] if args else kwargs["hidden_states"]
            for r in reqs:
                if r.scouting:  # alone on the model (`_can_scout`): the pass runs unsteered
                    h = _scout(r, layer, h0, args, kwargs, blocks)
                    if h is None:
                        return None
                    h = r.apply(layer, h)  # the gate opened: from here on the pass is the steered one
                    return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})
                if r.in_gate_pass:  # the first prompt pass only reads the gate, at its layer(s), and stops
                    # attached when grad is on: an attacker's gradient follows the gate
                    if layer in r.gate_from and r._read_in_gate_pass(layer, h0):
                        raise _GatePassDone
                    return None
            for r in reqs:
                if r.in_pass and r.early_gate is None and h0.shape[1] > 1:  # prompt pass, gate not read yet
                    _read_ahead(r, layer, h0, blocks, args, kwargs)
            h = h0
            for r in reqs:
                h = r.apply(layer, h)
            if h is h0:  # nothing added (an unsteered layer, a decode step of prefill mode): no rebuilt inputs
                return None
            if args:
                return (h, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": h}
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


class _GatePassDone(Exception):
    """Ends a gate pass at the layer its gate is read at."""


SCOUT = True  # tests switch it off to compare with the read-ahead


def _can_scout(r: "_Request", module: torch.nn.Module, kwargs) -> bool:
    """Whether a prompt pass can scout (`_scout`): the gate has a floor (so a closed gate adds
    exactly nothing), nothing is differentiated (an attacker's gradient must follow the gate through
    one steered pass), the KV cache starts empty (a rerun then just resets it), and no layer's hidden
    states are returned nor captured (those of the blocks run again would be the unsteered ones)."""
    cache = kwargs.get("past_key_values")
    fresh = cache is None or (callable(getattr(cache, "get_seq_length", None)) and hasattr(cache, "reset")
                              and cache.get_seq_length() == 0)
    hidden = kwargs.get("output_hidden_states")
    if hidden is None:
        hidden = getattr(getattr(module, "config", None), "output_hidden_states", False)
    return (SCOUT and fresh and r.config.floor > 0 and not torch.is_grad_enabled()
            and not hidden and not capturing())


def _refuse_cached_prompt(args, kwargs) -> None:
    """A gate read before the steered layer reads the whole prompt in one pass: a pass of several
    new tokens after cached ones (a later turn on a kept cache, chunked prefill) would read it
    without the cached part and failed on the mask's shape. Said plainly instead."""
    cache = kwargs.get("past_key_values")
    length = getattr(cache, "get_seq_length", None)
    if _prompt_length(args, kwargs) > 1 and callable(length) and length() > 0:
        raise ValueError("a gate read over layers before the steered one (gate_from, an eraser's joint gate or "
                         "gate layer) needs the whole prompt in one pass from an empty KV cache; run the "
                         "conversation again from its start (as adapter.generate does) with a fresh cache")


def _scout(r: "_Request", layer: int, h: torch.Tensor, args, kwargs,
           blocks: torch.nn.ModuleList) -> torch.Tensor | None:
    """One block of a scouting prompt pass: read the gate's part here and show the gates, steer
    nothing. Why: a gate read at layers deeper than the first steered one is needed before that
    layer runs; reading it ahead runs those blocks twice for every prompt. Scouting runs the prompt
    once unsteered; at the deepest gate layer, if some row's gate passes the floor, the blocks
    from the first steered layer up to it run again steered (`_patch`) and their output replaces
    this block's input (returned; None: go on unsteered). Prompts about nobody to forget, most
    traffic, cost nothing extra; those to forget, those blocks once more (the whole prompt pass
    when a KV cache layer cannot be emptied on its own, `_rerun_hook`). The gate is the one the
    read-ahead reads (the same blocks on the same input)."""
    if h.shape[1] == 1:
        return None
    if layer in r.gate_from and r.early_gate is None and r._read_in_gate_pass(layer, h):
        for l in r.pending:
            r.gates[l] = r.early_gate.detach()
        _show_gate(r)
        if _opens(r) and _can_patch(r):
            r.scouting = False  # this block and the rest run as the steered pass
            return _patch(r, blocks, h) if r.scouted else h
        r.scouted, r.scout_input = {}, None  # not needed any more: let the recorded tensors go
    steered = r.config.steered_layers
    if steered and steered[0] <= layer < r.gate_from[-1] and r.early_gate is None:
        # kept for `_patch`: the first block's input and every block's other arguments (not their
        # unsteered inputs: at a real width those weigh a lot)
        if not r.scouted:
            r.scout_input = h
        r.scouted[layer] = (tuple(args[1:]) if args else None,
                            {k: v for k, v in kwargs.items() if k != "hidden_states"})
    s = r.config.strengths[layer] if layer < len(r.config.strengths) else 0.0
    if not (s != 0 or len(r.gate_from) > 1):  # an unsteered layer shows its own gate, as `_Request.apply` does
        r.gates[layer] = r._gate(layer, h, True).detach()
    elif r.early_gate is not None:
        r.gates[layer] = r.early_gate.detach()
    else:
        r.pending.append(layer)  # shown once the gate is read
    r.trace.append((layer, h.shape[1], False))
    return None


def _opens(r: "_Request") -> bool:
    """Whether the scouted gate steers some row (a strength somewhere and a gate past the floor)."""
    return any(r.config.strengths) and bool((r.config.coefficient(r.early_gate) != 0).any())


def _can_patch(r: "_Request") -> bool:
    """Whether the scouted blocks can run again on their own: each one's KV cache layer can be
    emptied (a cache of per-layer entries, or none)."""
    for _, kwargs in r.scouted.values():
        cache = kwargs.get("past_key_values")
        if cache is not None and not all(callable(getattr(l, "reset", None)) for l in getattr(cache, "layers", [None])):
            return False
    return True


def _patch(r: "_Request", blocks: torch.nn.ModuleList, h: torch.Tensor) -> torch.Tensor:
    """Run the scouted blocks (from the first steered layer to the one before the deepest gate
    layer, whose input the gate has just read) again, steered, from the first one's recorded
    input, each with its own recorded arguments (its mask, positions and rotary tables as the
    model gave them) and its KV cache layer emptied first (it was empty before the pass,
    `_can_scout`): the blocks before them and the vision tower do not run again. When only some
    rows' gates opened, only those rows run again where the model's arguments allow it
    (`_patch_rows`). Returns the last one's output; `h` is the unsteered one, from the scouting pass."""
    calls, x = r.scouted, r.scout_input
    r.scouted, r.scout_input = {}, None
    rows = (r.config.coefficient(r.early_gate) != 0).nonzero().flatten().to(x.device)
    if 0 < len(rows) < len(r.early_gate) and _rows_apart(calls, len(r.early_gate)):
        out = h.clone()  # on the deepest gate layer's device, which a sharded model may put elsewhere
        out[rows.to(out.device)] = _patch_rows(r, blocks, calls, x, rows).to(out)
        return out

    def emptied(j, rest, kwargs):
        cache = kwargs.get("past_key_values")
        if cache is not None:
            cache.layers[j].reset()
        return rest, kwargs
    return _run_again(r, blocks, calls, x, emptied)


def _run_again(r: "_Request", blocks: torch.nn.ModuleList, calls: dict[int, tuple], x: torch.Tensor,
               arguments: Callable[[int, tuple | None, dict], tuple]) -> torch.Tensor:
    """Run the scouted blocks again from `x`, steered (their hooks see `r.rerun`), each with the
    arguments `arguments(j, rest, kwargs)` makes of its recorded ones. Returns the last output."""
    r.rerun = True
    try:
        for j in sorted(calls):
            rest, kwargs = arguments(j, *calls[j])
            out = blocks[j](x, *rest, **kwargs) if rest is not None else blocks[j](hidden_states=x, **kwargs)
            x = out[0] if isinstance(out, tuple) else out
        return x
    finally:
        r.rerun = False


def _leaves(v):
    if isinstance(v, torch.Tensor):
        yield v
    elif isinstance(v, (tuple, list)):
        for x in v:
            yield from _leaves(x)


def _rows_apart(calls: dict[int, tuple], batch: int) -> bool:
    """Whether every tensor a scouted block was given is one row per batch row (at least 2-D,
    the batch first), so that the rows whose gate opened can run alone; otherwise (a broadcast
    rotary table, a flat position tensor) the whole batch runs again."""
    for rest, kwargs in calls.values():
        for t in _leaves([*(rest or ()), *(v for k, v in kwargs.items() if k != "past_key_values")]):
            if t.dim() < 2 or t.shape[0] != batch:
                return False
    return True


def _rows_of(v, rows: torch.Tensor):
    if isinstance(v, torch.Tensor):
        return v.index_select(0, rows.to(v.device))
    if isinstance(v, (tuple, list)):
        return type(v)(_rows_of(x, rows) for x in v)
    return v


class _RowsCache:
    """What a block of the rows-apart rerun sees as its KV cache: each update writes those rows'
    keys and values into the real cache layer (filled for every row by the scouting pass, the
    prompt being the first thing the cache holds) and hands them back for attention."""

    def __init__(self, cache, rows: torch.Tensor):
        self._cache, self._rows = cache, rows

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        layer = self._cache.layers[layer_idx]
        rows, n = self._rows.to(layer.keys.device), key_states.shape[-2]
        if layer.keys.shape[-2] == n:  # a dynamic layer holds exactly the prompt
            layer.keys[rows] = key_states.to(layer.keys)
            layer.values[rows] = value_states.to(layer.values)
            return key_states, value_states
        # a static layer, allocated to its full length: the prompt fills its first n positions, and attention
        # reads the whole length under the mask the rows were given (it failed with a shape mismatch)
        layer.keys[rows, :, :n] = key_states.to(layer.keys)
        layer.values[rows, :, :n] = value_states.to(layer.values)
        return layer.keys[rows], layer.values[rows]

    def __getattr__(self, name):
        return getattr(self._cache, name)


def _patch_rows(r: "_Request", blocks: torch.nn.ModuleList, calls: dict[int, tuple], x: torch.Tensor,
                rows: torch.Tensor) -> torch.Tensor:
    """`_patch` for the rows whose gate opened only: the scouted blocks run again on those rows
    (their inputs, masks, positions and rotary tables, and the request's gate, cut to them), their
    keys and values written over those rows' in the cache; the other rows keep the scouting pass's
    values, which steering with a closed gate leaves exactly as they are. Returns the last block's
    output for those rows."""
    saved = r.early_gate, r.attention_mask, r.gate_index, dict(r.gates)
    r.early_gate = r.early_gate[rows.to(r.early_gate.device)]
    if r.attention_mask is not None:
        r.attention_mask = r.attention_mask[rows.to(r.attention_mask.device)]
    if r.gate_index is not None:
        r.gate_index = r.gate_index[rows.to(r.gate_index.device)]
    def cut(j, rest, kwargs):
        return _rows_of(rest, rows), {k: (_RowsCache(v, rows) if k == "past_key_values" and v is not None
                                          else _rows_of(v, rows)) for k, v in kwargs.items()}
    try:
        return _run_again(r, blocks, calls, x[rows], cut)
    finally:
        r.early_gate, r.attention_mask, r.gate_index, gates = saved
        for l, g in r.gates.items():  # the rerun rows' gates over the scouted ones
            if l in gates and g is not gates[l]:
                gates[l] = gates[l].clone()
                gates[l][rows.to(g.device)] = g
        r.gates = gates


def _can_read_ahead(r: "_Request", blocks: torch.nn.ModuleList) -> bool:
    """Whether the gate can be read inside the prompt pass (`_read_ahead`): some layer is steered,
    and the blocks run ahead share one attention type (a model mixing sliding-window and full
    attention gives them other masks or rotary tables, which a block's own call does not show)."""
    steered = r.config.steered_layers
    if not steered:
        return False
    ahead = range(steered[0], r.gate_from[-1] + 1)
    return len({getattr(blocks[j], "attention_type", None) for j in ahead}) <= 1


def _read_ahead(r: "_Request", layer: int, h: torch.Tensor, blocks: torch.nn.ModuleList, args, kwargs) -> None:
    """The gate of a prompt pass read on the way, instead of in a pass from the top: gate layers
    before the first steered layer are read as the pass reaches them; at the first steered layer,
    the blocks from it up to the deepest gate layer run once more on its (still unsteered) input,
    without the KV cache, their hooks reading the rest. The gate equals `_gate_pass`'s and costs
    those blocks only (nothing when every gate layer comes before the first steered one): the
    vision tower, the embeddings and the blocks before the steered layer do not run twice."""
    start = r.config.steered_layers[0]  # there is one: `_can_read_ahead`
    if layer < start:
        if layer in r.gate_from and r._read_in_gate_pass(layer, h):  # this layer's part; True at the deepest
            _show_gate(r)
        return
    if layer != start:
        return
    inner = {k: v for k, v in kwargs.items()
             if k not in ("hidden_states", "past_key_values", "past_key_value", "use_cache")}

    def run():  # block j's hook (in the gate pass) reads layer j's part and stops the run at the deepest
        x = h
        for j in range(layer, r.gate_from[-1] + 1):
            out = blocks[j](x, *args[1:], **inner, use_cache=False)
            x = out[0] if isinstance(out, tuple) else out
    _in_gate_pass(r, run)
    _show_gate(r)


def _show_gate(r: "_Request") -> None:
    """The unsteered layers passed before a joint gate was known show it, as after `_gate_pass`."""
    if len(r.gate_from) > 1:
        for l in r.gates:
            r.gates[l] = r.early_gate.detach()


def _prompt_length(args, kwargs) -> int:
    x = kwargs.get("input_ids")
    if x is None:
        x = kwargs.get("inputs_embeds")
    if x is None and args:
        x = args[0]
    return int(x.shape[1]) if isinstance(x, torch.Tensor) and x.dim() >= 2 else 0


def _gate_pass(r: "_Request", module: torch.nn.Module, args, kwargs) -> None:
    """Before a prompt pass (more than one new token), run the model on the same inputs up to
    the deepest layer of `r.gate_from`, unsteered and without the KV cache, and keep the gate read there: the
    steered layers then apply it. Why: a deeper layer tells people apart where an early one sees
    the picture (docs/sequential.md), while steering an early layer is what forgets. Costs a
    partial extra prompt pass (`_read_ahead` avoids most of it where it can); decode steps reuse
    the latched gate."""
    r.early_gate, r.partial = None, None
    if _prompt_length(args, kwargs) <= 1:
        return  # a decode step
    inner = {k: v for k, v in kwargs.items() if k not in ("past_key_values", "use_cache")}
    _in_gate_pass(r, lambda: module(*args, **inner, use_cache=False))


def _in_gate_pass(r: "_Request", run: Callable[[], object]) -> None:
    """Run `run` with `r` in its gate pass (the hooks read the gate's parts and stop at the deepest
    layer), in the caller's grad mode: an attacker differentiating the steered model follows the
    gate too."""
    r.in_gate_pass = True
    try:
        with unseen_by_capture():  # unsteered: a capture of the steered model reads the real pass only
            run()
    except _GatePassDone:
        pass
    finally:
        r.in_gate_pass = False
        r.partial = None
    if r.early_gate is None:
        raise RuntimeError(f"the gate pass never reached layer {r.gate_from[-1]}")


def _blocks(target) -> torch.nn.ModuleList:
    if hasattr(target, "layers") and hasattr(target, "model"):  # an adapter
        return target.layers
    return target.get_decoder().layers


def _top(target) -> torch.nn.Module:
    """The model the caller runs (it receives the 2-D attention mask of the batch; a decoder
    may get a 4-D mask instead, e.g. PaliGemma's)."""
    return target.model if hasattr(target, "layers") and hasattr(target, "model") else target


class SteeringHandle:
    """Returned by `steer`: use as a context manager or call `.remove()`.

    After a forward pass, `.gates[l]` holds the gate value of every row at layer l (read at
    the last prompt token during prefill) and `.trace` lists (layer, seq_len, steered) calls.
    """

    def __init__(self, request: _Request, blocks: torch.nn.ModuleList):
        self._request = request
        self._blocks = blocks
        self._removed = False

    @property
    def gates(self) -> dict[int, torch.Tensor]:
        return self._request.gates

    @property
    def trace(self) -> list[tuple[int, int, bool]]:
        return self._request.trace

    @property
    def config(self) -> SteeringConfig:
        return self._request.config

    def remove(self) -> None:
        if self._removed:
            return
        self._removed = True
        req = self._request
        req.alive = False
        _ACTIVE.set(tuple(r for r in _ACTIVE.get() if r is not req))
        with _LOCK:
            inst = _INSTALLED.get(req.key)
            if inst is not None and inst.blocks() is self._blocks:
                inst.count -= 1
                if inst.count <= 0:
                    inst.remove()
                    del _INSTALLED[req.key]

    def __enter__(self) -> "SteeringHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def steer(target, direction: torch.Tensor, config: SteeringConfig,
          gate: torch.Tensor | Callable[[int, torch.Tensor], torch.Tensor] | None = None,
          gate_index: torch.Tensor | None = None, gate_position: str = "last",
          gate_from: int | Sequence[int] | None = None) -> SteeringHandle:
    """Start steering `target` (an adapter or a HF model) in the current context.

    direction: (L, d) vectors r_l; gate: (L, d) vectors u_l (the linear gate h . u) or (L, K, d)
    (one per forget subject, gate = the largest, `gate_scores`), a callable
    (layer, h_last) -> (B,) gate values, or None (plain additive).
    gate_index: (B,) position of the last prompt token when the batch carries answer tokens.
    gate_position: "last" reads the gate at the last prompt token (the method), "mean" at the
    mean of the prompt tokens (a workbench option, see activations.prompt_mean); with "mean"
    the prefill gate is latched for decode steps, so mode "every_step" is refused.
    gate_from: read the gate at this layer and apply it at every steered layer. With a gate floor
    and no gradient (generation, scoring), the prompt pass runs unsteered reading the gate, and
    only when a row's gate passes the floor do the blocks from the first steered layer to the gate
    layer run again steered (`_scout`, `_patch`); otherwise on the way
    through the prompt pass, the blocks from the first steered layer to it run once more
    (`_read_ahead`), or, with several steerings stacked on the model or a block of another
    attention type among those, in a first pass from the top (`_gate_pass`); "every_step" is refused with it too. Several
    layers: one joint gate, max_k sum_l h_l . u_lk over them (`gate[l]` holds its part at layer l).
    """
    if gate_position not in POSITIONS:
        raise ValueError(f"gate position must be one of {POSITIONS}, got {gate_position!r}")
    if gate_position == "mean" and config.mode == "every_step":
        raise ValueError("a prompt-mean gate is read once per prompt: use mode 'prefill' or 'latched'")
    blocks = _blocks(target)
    n = len(blocks)
    if direction.shape[0] != n or (isinstance(gate, torch.Tensor) and (
            gate.ndim not in (2, 3) or gate.shape[0] != n or gate.shape[-1] != direction.shape[-1])):
        raise ValueError(f"steering vectors of shape {tuple(direction.shape)} do not fit a model "
                         f"with {n} layers")
    is_adapter = hasattr(target, "layers") and hasattr(target, "model")  # as `_blocks` tells them apart
    width = target.hidden_size if is_adapter else None  # an adapter knows its decoder's width
    if isinstance(width, int) and direction.shape[-1] != width:  # it failed mid-forward as a size mismatch
        raise ValueError(f"steering vectors of width {direction.shape[-1]} do not fit a model of width {width}")
    if len(config.strengths) != n:
        raise ValueError(f"{len(config.strengths)} strengths for a model with {n} layers")
    if gate_from is not None:
        gate_from = (int(gate_from),) if isinstance(gate_from, int) else tuple(sorted({int(l) for l in gate_from}))
        if not isinstance(gate, torch.Tensor) or not gate_from or not all(0 <= l < n for l in gate_from):
            raise ValueError(f"a gate read at layer(s) {list(gate_from)} needs a gate tensor and layers in 0..{n - 1}")
        if config.mode == "every_step":
            raise ValueError("a gate read before the steered layers is latched at the prompt: use mode 'prefill' or "
                             "'latched'")
    req = _Request(
        key=id(blocks), direction=direction.detach(),
        gate_vec=gate.detach() if isinstance(gate, torch.Tensor) else gate,
        config=config, gate_index=gate_index, gate_position=gate_position, gate_from=gate_from)
    with _LOCK:
        inst = _INSTALLED.get(req.key)
        if inst is not None and inst.blocks() is not blocks:  # a freed model's id, reused: its entry is stale
            inst = None  # (a handle dropped without remove() left it; the new model got no hooks)
        if inst is None:
            inst = _INSTALLED[req.key] = _Installed(blocks, req.key, _top(target))
        inst.count += 1
    _ACTIVE.set(_ACTIVE.get() + (req,))
    return SteeringHandle(req, blocks)


def add_vector(target, vector: torch.Tensor, strength: float | Sequence[float] | Mapping[int, float],
               layers: Iterable[int] | None = None, mode: str = "prefill") -> SteeringHandle:
    """Plain additive steering with one vector per layer (no gate): the method's first sanity
    experiment, and the 'null space off' ablation."""
    n = len(_blocks(target))
    vec = vector if vector.dim() == 2 else vector.expand(n, -1)
    return steer(target, vec, SteeringConfig(layer_strengths(n, strength, layers), mode))


def hook_count(target) -> int:
    """Hooks of the kinds steering registers (pre-hooks on the blocks and the model, a forward hook
    on the model) currently on them: tests use it for leaks. (transformers adds forward hooks of
    its own to the blocks when asked for every layer's output.)"""
    top = _top(target)
    return sum(len(b._forward_pre_hooks) for b in _blocks(target)) + len(top._forward_pre_hooks) + len(top._forward_hooks)
