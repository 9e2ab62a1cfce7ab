"""Tiny random instances are real transformers architectures and small."""
import pytest
import torch

from conftest import random_image
from core.activations import Prompt, collect, shared_starts
from core.models.load import adapter_from_model
from core.models.tiny import TINY_FAMILIES, build_tiny, tiny_tokenizer

EXPECTED = {"llava": "LlavaForConditionalGeneration", "qwen2_vl": "Qwen2VLForConditionalGeneration",
            "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration", "idefics3": "Idefics3ForConditionalGeneration",
            "smolvlm": "SmolVLMForConditionalGeneration", "paligemma": "PaliGemmaForConditionalGeneration"}


def test_every_family_builds_the_real_class(family):
    model, tok, proc = build_tiny(family, layers=3)
    assert type(model).__name__ == EXPECTED[family]
    assert len(model.get_decoder().layers) == 3
    assert sum(p.numel() for p in model.parameters()) < 500_000
    assert tok.padding_side == "left" and tok.pad_token_id is not None


def test_seed_makes_identical_weights():
    a, _, _ = build_tiny("qwen2_vl", seed=3)
    b, _, _ = build_tiny("qwen2_vl", seed=3)
    assert all((p == q).all() for p, q in zip(a.parameters(), b.parameters()))


def test_tokenizer_round_trip_and_template():
    tok = tiny_tokenizer("llava")
    ids = tok("what is the colour of this shape ?", add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == "what is the colour of this shape?"
    text = tok.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}],
                                   tokenize=False, add_generation_prompt=True)
    assert text == "USER: <image>\nhi ASSISTANT:"
    assert set(TINY_FAMILIES) == set(EXPECTED)


def test_a_picture_of_real_length_on_the_qwen_families():
    """`image=(448, 14)`: a Qwen picture of 448 x 448 pixels is 256 image tokens (32 x 32
    patches, merged 2 x 2), as the adapter caps a real checkpoint's; questions about one such
    picture still share its start and equal whole prompts (their M-RoPE positions continue from
    a 16 x 16 grid, not the tiny tower's 2 x 2)."""
    for family in ("qwen2_vl", "qwen2_5_vl"):
        a = adapter_from_model(*build_tiny(family, image=(448, 14)))
        assert a.num_image_tokens() == 256
        assert adapter_from_model(*build_tiny(family)).num_image_tokens() == 4  # the tiny default
        pic = random_image(0)
        prompts = [Prompt(q, pic) for q in ("what is this ?", "who is it ?", "what is the name of this person ?")]
        assert [g.rows for g in shared_starts(a, prompts)[0]] == [[0, 1, 2]]
        whole = collect(a, prompts, position="mean", share_starts=False)
        assert torch.allclose(collect(a, prompts, position="mean"), whole, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="llava and the Qwen families only, not 'idefics3'"):
        build_tiny("idefics3", image=(448, 14))


@pytest.mark.parametrize("family", ["qwen2_vl", "paligemma"])
def test_a_wider_text_shape_still_takes_pictures(family):
    """The vision side's output width was fixed at 64, so any other text width broke every image
    prompt of these two families (bench's real shapes use other widths)."""
    model, tok, proc = build_tiny(family, layers=1, text_shape={"hidden_size": 128, "intermediate_size": 256})
    a = adapter_from_model(model, tok, proc)
    assert a.hidden_size == 128
    h = collect(a, [Prompt("who is the person in this picture ?", random_image(0))], [0])
    assert h.shape[-1] == 128 and torch.isfinite(h).all()
