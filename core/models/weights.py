"""What identifies a model's weights: the fingerprint an eraser is bound to, the older print still
accepted, and a whole-state hash (tests prove with it that steering never edits the weights).
A module of its own so that the adapter (`base`) and the loader (`load`) both use it without
importing each other."""

from __future__ import annotations

import hashlib
import json

import torch


def named_weights(model: torch.nn.Module):
    """(name, tensor) of every parameter, sorted by name, with the real values of parameters that
    accelerate offloaded (they sit on the meta device; their values live in the offload hook)."""
    for name, p in sorted(model.named_parameters()):
        if p.device.type == "meta":
            module_name, _, local = name.rpartition(".")
            hook = getattr(model.get_submodule(module_name), "_hf_hook", None)
            weights = getattr(hook, "weights_map", None)
            if weights is None:
                raise ValueError(f"{name} is on the meta device with no offloaded copy")
            p = weights[local]
        yield name, p


FINGERPRINT = 2  # the version written; erasers of version 1 are checked with version 1


def fingerprint(model: torch.nn.Module, version: int = FINGERPRINT) -> str:
    """A short identity of a model's weights, the same whatever dtype or device they are loaded on.

    Every parameter tensor contributes its name, its shape and a strided sample of up to 256 of
    its values rounded to bfloat16 (a checkpoint loaded in float32 or in bfloat16 gives one
    print): a model whose vision tower alone was fine-tuned (VKD) differs from the vanilla one.
    Offloaded parameters count with their offloaded values. Version 2 then flushes the rounded
    values float16 cannot hold exactly (under 2^-14, its subnormals) to 0 and clamps to its range:
    a bfloat16 checkpoint loaded in float16 printed otherwise (version 1) and its erasers were
    refused (flushed before the rounding, a value just under 2^-14 split float32 from bfloat16). A
    float32 checkpoint loaded in float16 still prints otherwise (its values are rounded twice).
    A sample, not every value: an edit of a few rows the sample misses goes unseen."""
    text_cfg = model.config.get_text_config()
    h = hashlib.sha256()
    h.update(json.dumps({"type": model.config.model_type, "hidden": text_cfg.hidden_size,
                         "layers": text_cfg.num_hidden_layers, "vocab": text_cfg.vocab_size}).encode())
    for name, p in named_weights(model):
        h.update(f"{name}{tuple(p.shape)}".encode())
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // 256)
        sample = flat[::step][:256].to(torch.bfloat16).float()
        if version >= 2:  # after the rounding: a value just under 2^-14 rounds up to it in a bfloat16 load
            sample = torch.where(sample.abs() < 2 ** -14, torch.zeros_like(sample), sample).clamp(-65504, 65504)
        h.update(sample.cpu().numpy().tobytes())
    return f"w{version}-" + h.hexdigest()[:16]


def legacy_fingerprint(model: torch.nn.Module) -> str:
    """The print of erasers saved before every parameter counted (a sample of the input
    embeddings in the loaded dtype): still accepted for those erasers, never written."""
    text_cfg = model.config.get_text_config()
    h = hashlib.sha256()
    h.update(json.dumps({"type": model.config.model_type, "hidden": text_cfg.hidden_size,
                         "layers": text_cfg.num_hidden_layers, "vocab": text_cfg.vocab_size}).encode())
    emb = dict(named_weights(model))[next(n for n, p in model.named_parameters()
                                          if p is model.get_input_embeddings().weight)].detach().flatten()
    step = max(1, emb.numel() // 4096)
    h.update(emb[::step][:4096].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def state_hash(model: torch.nn.Module) -> str:
    """Hash of every parameter and buffer: proves that steering never edits the weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
                 if t.dtype != torch.bool else t.cpu().numpy().tobytes())
    return h.hexdigest()
