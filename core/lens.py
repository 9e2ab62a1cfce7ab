"""A bridge to TransformerLens for users who continue their analysis there.

The project names every capture site as TransformerLens does (`blocks.{l}.hook_resid_pre`), so
the activations collected here drop into an `ActivationCache` under the same names: indexing by
name, `keys()`, `to(device)`, `remove_batch_dim()` and `apply_slice_to_batch_dim()` work as on a
cache from `HookedTransformer.run_with_cache`. The cache is not tied to a HookedTransformer
(the VLMs here are Hugging Face models), so methods that need the model's config
(`accumulated_resid`, `decompose_resid`, ...) are not available on it.

TransformerLens can try to `pip install torchvision` while it loads multimodal architectures,
which breaks transformers on these machines: every import goes through `transformer_lens()`,
which refuses installs for its duration.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from typing import Sequence

import torch

from core.activations import Prompt, capture, collect, encode_prompts, site_name
from core.models.base import VLMAdapter


_GUARD = threading.RLock()  # one patch at a time: two threads interleaving could restore the refusing function


@contextlib.contextmanager
def no_installs():
    """Within the block, a `pip install` run through subprocess raises instead of running."""
    with _GUARD:
        real = subprocess.check_call

        def refuse(cmd, *args, **kwargs):
            words = [str(c) for c in (cmd if isinstance(cmd, (list, tuple)) else [cmd])]
            if "install" in words:
                raise RuntimeError(f"refused to run {' '.join(words)}: installing packages at run time breaks this "
                                   "environment (torchvision breaks transformers here)")
            return real(cmd, *args, **kwargs)

        subprocess.check_call = refuse
        try:
            yield
        finally:
            subprocess.check_call = real


def transformer_lens():
    """The transformer_lens module, imported with installs refused."""
    with no_installs():
        import transformer_lens as tl
    return tl


def activation_cache(adapter: VLMAdapter, prompts: Sequence[Prompt], layers: Sequence[int] | None = None,
                     position: str = "last"):
    """A TransformerLens `ActivationCache` of the residual stream at the input of each block.

    position "last" / "mean": one vector per prompt (the gate's reading), shape (N, d) per site,
    computed by `collect` (batched, request-scoped). position "all": every token of one batch
    of the prompts, shape (N, T, d) per site (left-padded: `cache.attention_mask` says which
    positions are real)."""
    tl = transformer_lens()
    chosen = list(range(adapter.num_layers)) if layers is None else list(layers)
    if position == "all":
        images = [p.image for p in prompts]
        if any(i is None for i in images) and any(i is not None for i in images):
            raise ValueError("position 'all' runs one batch: give prompts that all have an image or all have none")
        batch = encode_prompts(adapter, prompts)  # the prompts as `collect` reads them: turns, prefills, tensors
        acts = capture(adapter, batch, chosen, positions="all")  # (N, L, T, d)
        cache = tl.ActivationCache({site_name(l): acts[:, i] for i, l in enumerate(chosen)}, model=None)
        cache.attention_mask = batch.inputs["attention_mask"].cpu()
        return cache
    acts = collect(adapter, prompts, chosen, position=position)  # (N, L, d)
    return tl.ActivationCache({site_name(l): acts[:, i] for i, l in enumerate(chosen)}, model=None)


def from_activation_cache(cache, layers: Sequence[int]) -> torch.Tensor:
    """(N, len(layers), d) from a cache keyed by `blocks.{l}.hook_resid_pre` (ours or one from
    `HookedTransformer.run_with_cache` reduced to one position), e.g. to fit a gate on it."""
    missing = [site_name(l) for l in layers if site_name(l) not in cache]
    if missing:
        raise KeyError(f"the cache has no {', '.join(missing)}: run it with these sites in names_filter")
    return torch.stack([cache[site_name(l)] for l in layers], dim=1)
