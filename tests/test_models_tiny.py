"""Tiny random instances are real transformers architectures and small."""
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
