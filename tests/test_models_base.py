"""Adapter behaviour on tiny random instances of every supported family."""
import numpy as np
import pytest
import torch

from conftest import random_image, tiny_adapter


def test_inputs_build_and_forward(family):
    a = tiny_adapter(family)
    batch = a.encode(["what is this ?", "who is the person in this picture ?"], [random_image(0), random_image(1)])
    n_img = int((batch.input_ids == a.tokenizer.convert_tokens_to_ids(a.placeholder)).sum())
    assert n_img == 2 * a.num_image_tokens()
    # left padding: the last column is the last prompt token of every row
    assert batch.prompt_last.tolist() == [batch.input_ids.shape[1] - 1] * 2
    assert batch.inputs["attention_mask"][0].sum() < batch.inputs["attention_mask"][1].sum()
    with torch.no_grad():
        logits = a.logits(batch)
    assert logits.shape[:2] == batch.input_ids.shape
    assert torch.isfinite(logits).all()


def test_pixel_path_matches_processor(family):
    """Our differentiable normalise/patchify equals the family's own image processor."""
    a = tiny_adapter(family)
    for size in [(64, 64), (40, 40)]:
        img = random_image(3, size)
        ref = a.image_processor(images=[img], return_tensors="pt")["pixel_values"]
        mine = a.pixel_inputs(a.to_pixels(img)[None])["pixel_values"]
        assert torch.allclose(ref.reshape(mine.shape), mine, atol=1e-6)


def test_pixels_are_in_unit_range_at_model_resolution(family):
    a = tiny_adapter(family)
    px = a.to_pixels(random_image(4, (70, 50)))
    assert px.shape == (3, a.image_size, a.image_size)
    assert 0.0 <= float(px.min()) and float(px.max()) <= 1.0


def test_a_thin_strip_is_cropped_before_resizing():
    """A 1 x 40000 PNG (239 bytes) used to be resized to 336 x 13 million pixels first: 4 s and
    +770 MB. Cropping the centre square first makes it a 1 x 1 image to resize."""
    import resource
    import time

    from PIL import Image
    a = tiny_adapter("llava")
    strip = Image.new("RGB", (1, 40000), (200, 10, 10))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    px = a.to_pixels(strip)
    assert time.perf_counter() - t < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KB
    assert px.shape == (3, a.image_size, a.image_size)
    assert torch.allclose(px[:, 0, 0], torch.tensor([200, 10, 10]) / 255.0, atol=1e-6)


def test_non_square_images_keep_their_centre():
    """Crop-then-resize shows the centre square: a wide picture's left and right bands are gone."""
    from PIL import Image
    a = tiny_adapter("llava")
    img = Image.new("RGB", (300, 100), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 100, 100))  # left band red, centre and right blue
    px = a.to_pixels(img)
    assert float(px[0].max()) < 0.05 and float(px[2].min()) > 0.95


def test_gradient_reaches_pixels(family):
    a = tiny_adapter(family)
    px = torch.stack([a.to_pixels(random_image(i)) for i in range(2)]).requires_grad_(True)
    batch = a.encode(["what is this ?"] * 2, px, answers=["red", "a blue circle"])
    a.answer_nll(batch).sum().backward()
    assert px.grad is not None and px.grad.abs().sum() > 0
    assert (px.grad[0].abs().sum() > 0) and (px.grad[1].abs().sum() > 0)


def test_answer_labels_cover_only_the_answer(family):
    a = tiny_adapter(family)
    batch = a.encode(["what is this ?", "who ?"], [random_image(0), random_image(1)], answers=["red", "blue circle"])
    n_labels = (batch.labels != -100).sum(-1).tolist()
    assert n_labels == [2, 3]  # answer words + EOS
    assert (batch.labels[:, : batch.prompt_last.min() + 1] == -100).all()


def test_left_padding_does_not_change_results(family):
    """A row's last-token logits are the same alone and inside a padded batch."""
    a = tiny_adapter(family)
    imgs = [random_image(0), random_image(1)]
    qs = ["what is this ?", "who is the person in this picture ? tell me about the name"]
    with torch.no_grad():
        both = a.logits(a.encode(qs, imgs))[:, -1]
        alone = a.logits(a.encode(qs[:1], imgs[:1]))[:, -1]
    assert torch.allclose(both[0], alone[0], atol=1e-4)


def test_text_only_prompt_has_no_image_inputs(family):
    a = tiny_adapter(family)
    batch = a.encode(["what is the name of this person ?"])
    assert "pixel_values" not in batch.inputs
    assert a.tokenizer.convert_tokens_to_ids(a.placeholder) not in batch.input_ids[0].tolist()


def test_greedy_generation_is_deterministic_and_uses_cache(family):
    a = tiny_adapter(family)
    batch = a.encode(["what is this ?", "who is it ?"], [random_image(0), random_image(1)])
    first, second = a.generate(batch, 6), a.generate(batch, 6)
    assert first == second and len(first) == 2
    # the cached greedy tokens equal an uncached argmax loop
    ids = batch.inputs["input_ids"]
    out = a.model.generate(**batch.inputs, max_new_tokens=4, do_sample=False, use_cache=True,
                           pad_token_id=a.tokenizer.pad_token_id, eos_token_id=None)
    nocache = a.model.generate(**batch.inputs, max_new_tokens=4, do_sample=False, use_cache=False,
                               pad_token_id=a.tokenizer.pad_token_id, eos_token_id=None)
    assert torch.equal(out[:, ids.shape[1]:], nocache[:, ids.shape[1]:])


def test_empty_question_is_a_clear_error():
    a = tiny_adapter("llava")
    for image, named in (("photos/ada.png", "str 'photos/ada.png'"), (np.zeros((8, 8, 3), np.uint8), "ndarray")):
        with pytest.raises(TypeError, match=f"an image must be a PIL image .*got {named}"):
            a.encode(["what ?"], [image])  # a path or an array: "no attribute 'convert'" from deep inside
    with pytest.raises(ValueError, match="empty question"):
        a.encode(["   "], [random_image(0)])
    with pytest.raises(ValueError, match="2 images for 1 questions"):
        a.encode(["what ?"], [random_image(0), random_image(1)])


def test_a_later_turn_keeps_one_image_in_the_first_turn_and_ends_with_the_prefill(family):
    """Multi-turn follow-ups and answer prefilling (robustness attacks) go through the model's
    own chat template: the image once, in the first user turn; the reply's forced start last."""
    a = tiny_adapter(family)
    history = (("who is the person in this picture ?", "a person"),)
    prefill = a.conversation("what is this ?", True, prefill="the name")
    assert prefill.startswith(a.prompt("what is this ?", True)) and prefill.endswith(a.answer_prefix + "the name")
    assert a.conversation("what is this ?", True) == a.prompt("what is this ?", True)
    if not a.chat_template:
        with pytest.raises(ValueError, match="no chat template"):
            a.encode(["what is this ?"], [random_image(0)], histories=[history])
        return
    text = a.conversation("what is this ?", True, history, "the name")
    assert text.count(a.placeholder) == 1
    assert text.index(a.placeholder) < text.index("who is the person") < text.index("a person") \
        < text.index("what is this") < text.rindex("the name")
    batch = a.encode(["what is this ?", "what ?"], [random_image(0), random_image(1)],
                     histories=[history, ()], prefills=["the name", ""])
    ids = batch.input_ids
    assert int((ids == a.tokenizer.convert_tokens_to_ids(a.placeholder)).sum()) == 2 * a.num_image_tokens()
    assert batch.prompt_last.tolist() == [ids.shape[1] - 1] * 2
    assert a.tokenizer.decode(ids[0, -2:]).strip().endswith("the name".split()[-1])
    with torch.no_grad():
        assert torch.isfinite(a.logits(batch)).all()


def test_prompt_ids_are_built_once_per_prompt_and_stay_equal_to_a_fresh_build(family, monkeypatch):
    """Gate sets ask one question about many pictures: the ids of a prompt are built once per
    adapter. A cached prompt's ids equal what the template and tokenizer give, a caller editing
    its list changes nothing for the next, later turns and prefills are prompts of their own, and
    the memo is bounded and can be cleared (the bench times builds from scratch)."""
    import core.models.base as base
    a = tiny_adapter(family)  # shared between tests: questions no other test asks
    calls = []
    render = a.conversation
    monkeypatch.setattr(a, "conversation", lambda *args: calls.append(args) or render(*args))
    first = a.prompt_ids("what is on this memo test picture ?", True)
    first.append(-1)
    again = a.prompt_ids("what is on this memo test picture ?", True)
    assert len(calls) == 1 and again == first[:-1]
    text = a.expand_image_tokens(render("what is on this memo test picture ?", True))
    assert again == a.after_prompt_ids(a.tokenizer(text, add_special_tokens=a.add_bos)["input_ids"])
    assert a.prompt_ids("what is on this memo test picture ?", False) != again and len(calls) == 2
    if a.chat_template:
        later = a.prompt_ids("what is on this memo test picture ?", True, [["who ?", "a person"]], "the")
        assert later != again and a.prompt_ids("what is on this memo test picture ?", True, (("who ?", "a person"),), "the") == later
        assert len(calls) == 3
    a.clear_prompt_cache()
    assert a.prompt_ids("what is on this memo test picture ?", True) == again and len(calls) == 3 + bool(a.chat_template)
    monkeypatch.setattr(base, "PROMPT_IDS_CACHE", 2)
    for q in ("memo a ?", "memo b ?", "memo c ?"):
        a.prompt_ids(q, False)
    assert len(a._prompt_ids_cache) <= 2


def test_paligemma_answer_tokens_are_causal_as_its_processor_marks_them():
    """Answer tokens appended for teacher forcing are PaliGemma's suffix (token type 1, causal). Typed
    0, as the prompt, each one saw the answer tokens after it: the logits before the last answer word
    moved when only that word changed."""
    a = tiny_adapter("paligemma")
    img = random_image(0, (32, 32))
    b1 = a.encode(["what is the name"], [img], answers=["red green blue"])
    b2 = a.encode(["what is the name"], [img], answers=["red green circle"])
    n_answer = int((b1.labels[0] != -100).sum())
    assert b1.inputs["token_type_ids"][0].tolist() == [0] * (b1.input_ids.shape[1] - n_answer) + [1] * n_answer
    assert a.encode(["what is the name"], [img]).inputs["token_type_ids"].sum() == 0  # a prompt alone is prefix
    with torch.no_grad():
        l1, l2 = a.logits(b1)[0], a.logits(b2)[0]
    changed = (b1.input_ids[0] != b2.input_ids[0]).nonzero().min()
    assert changed > 0 and torch.equal(l1[:changed], l2[:changed])


def test_a_template_that_writes_bos_gets_no_second_one_from_the_tokenizer():
    """Idefics3-8B's Llama-3 template starts with BOS and its tokenizer adds one too: the prompt began
    with two (transformers' own processors turn the tokenizer's off in this case)."""
    from tokenizers import processors

    from core.models.load import adapter_from_model
    from core.models.tiny import build_tiny
    model, tok, proc = build_tiny("idefics3")
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)])  # a tokenizer that adds BOS
    plain = adapter_from_model(model, tok, proc, chat_template=tok.chat_template)
    own = adapter_from_model(model, tok, proc, chat_template="<s>" + tok.chat_template)
    for a in (plain, own):
        ids = a.prompt_ids("what is this", True)
        assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id


def test_generation_stops_at_the_checkpoints_end_of_turn_token_too(family):
    """A chat model ends its turn with its own token (Idefics3-8B's <end_of_utterance>), which its
    tokenizer's EOS may not be: generation stopped only at the tokenizer's and wrote past the turn."""
    from core.models.load import adapter_from_model
    from core.models.tiny import build_tiny
    a = adapter_from_model(*build_tiny(family, seed=0))  # its own: the shared tiny adapters stay as they are
    batch = a.encode(["what is this ?"], [random_image(0)])
    first = a.model.generate(**batch.inputs, max_new_tokens=1, do_sample=False)[0, -1].item()
    assert first != a.tokenizer.eos_token_id
    a.model.generation_config.eos_token_id = [first]  # the checkpoint's end of turn: the model's first token
    assert first in a.stop_ids and a.tokenizer.eos_token_id in a.stop_ids
    out = a.model.generate(**batch.inputs, max_new_tokens=6, do_sample=False, eos_token_id=a.stop_ids,
                           pad_token_id=a.tokenizer.pad_token_id)
    assert out.shape[1] == batch.input_ids.shape[1] + 1  # stopped at that token
    assert a.generate(batch, 6) == [a.tokenizer.decode([first], skip_special_tokens=True).strip()]


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_special_token_text_in_a_question_is_refused(family):
    """"<image>" typed in a question became a real image token (an error about image features deep
    inside, or without a picture a fake one), "</s>" ended the turn."""
    a = tiny_adapter(family)
    for text in (a.placeholder, "</s>" if "</s>" in a.special_texts else a.tokenizer.eos_token):
        with pytest.raises(ValueError, match="a special token of this model's tokenizer"):
            a.encode([f"who is {text} this person ?"], [random_image(0)])
    with pytest.raises(ValueError, match="special token"):
        a.encode(["who is this person ?"], None, histories=[[("hi " + a.placeholder, "hello")]])
    a.encode(["who is < this person > ?"], [random_image(0)])  # brackets alone are text


def test_transparent_pixels_are_white_as_the_processors_make_them():
    from PIL import Image
    a = tiny_adapter("llava")
    im = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (8, 8, 24, 24))
    px = a.to_pixels(im)
    s = a.image_size
    assert torch.allclose(px[:, 0, 0], torch.ones(3)) and torch.allclose(px[:, s // 2, s // 2], torch.tensor([1., 0, 0]))


def test_pixel_tensors_of_another_type_size_or_range_are_refused():
    """A uint8 tensor gave NaN activations and empty answers; another size a reshape error."""
    a = tiny_adapter("llava")
    s = a.image_size
    for bad, message in ((torch.zeros(1, 3, s, s, dtype=torch.uint8), "floating point"),
                         (torch.zeros(1, 3, s + 4, s + 4), f"\\(batch, 3, {s}, {s}\\)"),
                         (torch.full((1, 3, s, s), 200.0), r"in \[0, 1\].*divide 0-255 values by 255")):
        with pytest.raises(ValueError, match=message):
            a.encode(["who is this person ?"], bad)
    a.encode(["who is this person ?"], torch.rand(1, 3, s, s))
