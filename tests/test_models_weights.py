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
    assert fingerprint(a) == fingerprint(half) and fingerprint(a).startswith("w2-")
    b, _, _ = build_tiny("llava", seed=0)
    before = state_hash(b), legacy_fingerprint(b)
    with torch.no_grad():
        b.model.language_model.layers[0].mlp.down_proj.weight.add_(1e-3)
    assert state_hash(b) != before[0] and fingerprint(b) != fingerprint(a)
    assert legacy_fingerprint(b) == before[1]


def test_a_bfloat16_checkpoint_loaded_in_float16_keeps_its_print():
    """Qwen2-VL and Idefics3 ship bfloat16 weights; loaded in float16, their small values become
    float16 subnormals and the version 1 print changed, so the checkpoint's own erasers were refused.
    Version 2 flushes what float16 cannot hold; version 1 stays computable for older erasers."""
    a, _, _ = build_tiny("llava", seed=0)
    with torch.no_grad():
        a.model.language_model.layers[0].mlp.down_proj.weight[0, :8] = 3.3e-6  # under float16's normal range
    ckpt = a.to(torch.bfloat16)
    fp16, _, _ = build_tiny("llava", seed=0)
    fp16.load_state_dict({k: v.to(torch.float16) for k, v in ckpt.state_dict().items()})
    fp16.to(torch.float16)
    assert fingerprint(ckpt) == fingerprint(fp16) and fingerprint(ckpt.float()) == fingerprint(fp16)
    assert fingerprint(ckpt, 1) != fingerprint(fp16, 1) and fingerprint(ckpt, 1).startswith("w1-")


def test_an_eraser_is_checked_with_the_print_version_it_was_saved_with(tmp_path):
    """The shipped eraser carries a version 1 print: it still applies to its model, and a version 2
    print of other weights is refused."""
    import pytest

    from core.eraser import Eraser, ModelMismatchError
    from core.models.load import load_adapter
    a = load_adapter("assets/toy-llava")
    shipped = Eraser.from_pretrained("assets/toy-llava-eraser", adapter=a)
    assert shipped.config.model["fingerprint"].startswith("w1-") and a.info().fingerprint.startswith("w2-")
    other = Eraser(shipped.direction, shipped.gate, shipped.config, joint=shipped.joint)
    other.config = type(shipped.config)(**{**shipped.config.__dict__, "model": {"fingerprint": "w2-" + "0" * 16}})
    with pytest.raises(ModelMismatchError, match="w2-0000000000000000"):
        other.check_model(a)


def test_the_shipped_float16_checkpoint_prints_the_same_in_every_dtype():
    """A value just under 2^-14 rounds up to it in a bfloat16 load: flushed before the rounding, the
    float32 and bfloat16 loads of the shipped checkpoint printed differently (one of its 20,992
    sampled values sits there)."""
    from core.models.load import load_adapter
    prints = {dt: fingerprint(load_adapter("assets/toy-llava", dtype=dt).model) for dt in
              ("float32", "bfloat16", "float16")}
    assert len(set(prints.values())) == 1, prints
    a, _, _ = build_tiny("llava", seed=0)
    with torch.no_grad():
        a.model.language_model.layers[0].mlp.down_proj.weight[0, 0] = 2 ** -14 * (1 - 2 ** -12)
    b, _, _ = build_tiny("llava", seed=0)
    b.load_state_dict(a.state_dict())
    assert fingerprint(a) == fingerprint(b.to(torch.bfloat16))
