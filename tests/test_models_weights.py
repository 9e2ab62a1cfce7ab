"""The weights' identity: the fingerprint an eraser is bound to and the whole-state hash."""
import torch

from core.models.tiny import build_tiny
from core.models.weights import fingerprint, legacy_fingerprint, state_hash


def test_fingerprint_tells_checkpoints_apart():
    a, _, _ = build_tiny("llava", seed=0)
    b, _, _ = build_tiny("llava", seed=1)
    assert fingerprint(a) == fingerprint(build_tiny("llava", seed=0)[0])
    assert fingerprint(a) != fingerprint(b)


def test_fingerprint_sees_a_vision_only_change():
    """VKD edits only the vision tower and projector: its eraser check must tell it apart."""
    a, _, _ = build_tiny("llava", seed=0)
    b, _, _ = build_tiny("llava", seed=0)
    with torch.no_grad():
        for p in b.model.vision_tower.parameters():
            p.mul_(1.01)
    assert fingerprint(a) != fingerprint(b)


def test_the_print_ignores_dtype_and_the_state_hash_sees_every_change():
    """One print for float32 and bfloat16 copies of the same weights (an eraser fitted in one
    applies to the other); the state hash, which proves steering edits nothing, changes with any
    parameter; the older print (embeddings only) misses a change to the decoder."""
    a, _, _ = build_tiny("llava", seed=0)
    half, _, _ = build_tiny("llava", seed=0)
    half.to(torch.bfloat16)
    assert fingerprint(a) == fingerprint(half) and fingerprint(a).startswith("w1-")
    b, _, _ = build_tiny("llava", seed=0)
    before = state_hash(b), legacy_fingerprint(b)
    with torch.no_grad():
        b.model.language_model.layers[0].mlp.down_proj.weight.add_(1e-3)
    assert state_hash(b) != before[0] and fingerprint(b) != fingerprint(a)
    assert legacy_fingerprint(b) == before[1]
