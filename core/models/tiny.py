"""Tiny, randomly initialised instances of every supported architecture.

Why: no pretrained weights can be downloaded here, yet every adapter must be exercised on the
real transformers classes. These builders make a model of the SAME architecture as LLaVA-1.5,
Qwen2-VL, Qwen2.5-VL, Idefics3, SmolVLM and PaliGemma from config objects, with a word-level
tokenizer and a PIL image processor built offline, in well under a second. They also let a
user try the workbench's plumbing on an architecture before pointing it at real weights.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
from transformers import PreTrainedTokenizerFast

_WORDS = (
    "what is the this person who name where born job colour color of a an in on and to is are "
    "shape how many picture image describe tell me about please answer yes no red green blue "
    "circle square triangle one two three four user assistant system sorry cannot share"
).split()

# Special tokens each family's prompt format needs (the union is harmless for the others).
_SPECIALS = [
    "<pad>", "<s>", "</s>", "<unk>", "<image>",
    "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
    "<|video_pad|>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>",
] + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]

_TEMPLATES = {
    "llava": (
        "{% for m in messages %}{% if m['role'] == 'user' %}USER: "
        "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
        "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
        " {% else %}ASSISTANT: {% for c in m['content'] %}{{ c['text'] }}{% endfor %}</s>{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    ),
    "qwen": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
        "{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "idefics3": (
        "<|im_start|>{% for m in messages %}{{ m['role'] | capitalize }}:"
        "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}"
        "{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
        "{% if add_generation_prompt %}Assistant:{% endif %}"
    ),
    "paligemma": None,  # PaliGemma has no chat format: "<image>*N<bos>question\n"
}


def tiny_tokenizer(template: str | None, extra_words: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with every special token the supported families use."""
    vocab = {tok: i for i, tok in enumerate(_SPECIALS)}
    for w in list(_WORDS) + list(extra_words) + list("?.,:!'\n") + ["USER", "ASSISTANT", "User", "Assistant"]:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        unk_token="<unk>", padding_side="left",
        additional_special_tokens=[t for t in _SPECIALS if t not in ("<pad>", "<s>", "</s>", "<unk>")],
    )
    if template is not None:
        fast.chat_template = _TEMPLATES[template]
    return fast


def _text_kwargs(tok: PreTrainedTokenizerFast, hidden: int = 64, layers: int = 2, shape: dict | None = None) -> dict:
    return {**dict(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id), **(shape or {})}


def build_tiny(family: str, seed: int = 0, layers: int = 2, words: tuple[str, ...] = (),
               text_shape: dict | None = None, image: tuple[int, int] | None = None):
    """Return (model, tokenizer, image_processor) for a tiny random model of `family`.

    Families: llava, qwen2_vl, qwen2_5_vl, idefics3, smolvlm, paligemma. `words` extends the
    word-level vocabulary (e.g. `plain_english_words()`, so that the project's own questions and
    requests reach the model as words, as they do with a real model's tokenizer). `text_shape`
    overrides the language model's config (hidden_size, intermediate_size, heads, vocab_size):
    a model of a real checkpoint's width with random weights (`core.bench.real_shape`). `image`
    (llava and the Qwen families): the vision tower's (image size, patch size), so (336, 14)
    gives LLaVA-1.5's 576 patches per picture (577 image tokens with the CLS feature), and
    (448, 14) a Qwen picture of 448 x 448 pixels (256 image tokens after the 2 x 2 merge).
    Default: the tiny towers' (32, 8) and (56, 14).
    """
    if image is not None and family not in ("llava", "qwen2_vl", "qwen2_5_vl"):
        raise ValueError(f"a picture length (image=) is set for llava and the Qwen families only, not {family!r}")
    torch.manual_seed(seed)
    if family == "llava":
        image = image or (32, 8)
        from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig,
                                  LlavaForConditionalGeneration)
        from transformers.models.clip import CLIPImageProcessorPil
        tok = tiny_tokenizer("llava", tuple(words))
        cfg = LlavaConfig(
            vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, image_size=image[0], patch_size=image[1]),
            text_config=LlamaConfig(**_text_kwargs(tok, layers=layers, shape=text_shape)),
            image_token_id=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
            vision_feature_select_strategy="full", image_seq_length=(image[0] // image[1]) ** 2,
        )
        model = LlavaForConditionalGeneration(cfg)
        proc = CLIPImageProcessorPil(size={"shortest_edge": image[0]}, crop_size={"height": image[0], "width": image[0]})
    elif family in ("qwen2_vl", "qwen2_5_vl"):
        from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil
        image = image or (56, 14)
        tok = tiny_tokenizer("qwen", tuple(words))
        ids = {k: tok.convert_tokens_to_ids(v) for k, v in dict(
            image_token_id="<|image_pad|>", video_token_id="<|video_pad|>",
            vision_start_token_id="<|vision_start|>", vision_end_token_id="<|vision_end|>").items()}
        text = dict(_text_kwargs(tok, layers=layers, shape=text_shape))
        half = text["hidden_size"] // text["num_attention_heads"] // 2  # mrope splits half a head's dimensions
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0,
                                   "mrope_section": [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]}
        if family == "qwen2_vl":
            from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
            # hidden_size is the merger's output: the language model's width (a fixed 64 broke other text shapes)
            vision = dict(depth=2, embed_dim=32, hidden_size=text["hidden_size"], num_heads=2, patch_size=image[1],
                          spatial_merge_size=2, temporal_patch_size=2)
            cfg = Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
            model = Qwen2VLForConditionalGeneration(cfg)
        else:
            from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
            vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=text["hidden_size"],
                          patch_size=image[1], spatial_merge_size=2, temporal_patch_size=2,
                          window_size=56, fullatt_block_indexes=[1])
            cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
            model = Qwen2_5_VLForConditionalGeneration(cfg)
        proc = Qwen2VLImageProcessorPil(size={"shortest_edge": image[0] ** 2, "longest_edge": image[0] ** 2},
                                        patch_size=image[1])
    elif family in ("idefics3", "smolvlm"):
        from transformers.models.idefics3 import Idefics3ImageProcessorPil
        tok = tiny_tokenizer("idefics3", tuple(words))
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      image_size=32, patch_size=8)
        ids = dict(image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=2)
        if family == "idefics3":
            from transformers import Idefics3Config, Idefics3ForConditionalGeneration
            from transformers import LlamaConfig
            cfg = Idefics3Config(vision_config=vision,
                                 text_config=LlamaConfig(**_text_kwargs(tok, layers=layers, shape=text_shape)),
                                 **ids)
            model = Idefics3ForConditionalGeneration(cfg)
        else:
            from transformers import LlamaConfig, SmolVLMConfig, SmolVLMForConditionalGeneration
            cfg = SmolVLMConfig(vision_config=vision,
                                text_config=LlamaConfig(**_text_kwargs(tok, layers=layers, shape=text_shape)),
                                **ids)
            model = SmolVLMForConditionalGeneration(cfg)
        proc = Idefics3ImageProcessorPil(do_image_splitting=False, size={"longest_edge": 32},
                                         max_image_size={"longest_edge": 32})
    elif family == "paligemma":
        from transformers import GemmaConfig, PaliGemmaConfig, PaliGemmaForConditionalGeneration, SiglipVisionConfig
        from transformers.models.siglip import SiglipImageProcessorPil
        tok = tiny_tokenizer(None, tuple(words))
        text = GemmaConfig(**dict(_text_kwargs(tok, layers=layers, shape=text_shape), head_dim=16))
        cfg = PaliGemmaConfig(
            vision_config=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=2, image_size=32, patch_size=8,
                                             projection_dim=text.hidden_size),
            text_config=text, image_token_id=tok.convert_tokens_to_ids("<image>"), projection_dim=text.hidden_size,
        )
        model = PaliGemmaForConditionalGeneration(cfg)
        proc = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    else:
        raise ValueError(f"unknown tiny family {family!r}; choose one of {TINY_FAMILIES}")
    model.eval()
    return model, tok, proc


TINY_FAMILIES = ("llava", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm", "paligemma")


def plain_english_words(extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every word of the data layer's plain-English templates (core.data.wordings), plus `extra`."""
    from core.data.folder import SPARE_NAMES
    from core.data.wordings import PLAIN_ENGLISH
    w = PLAIN_ENGLISH
    texts = [*w.private_requests, *w.held_out_requests, *w.scene_questions, *w.answer_starts.values(), w.refusal,
             *(t for ts in w.profile_questions.values() for t in ts), *SPARE_NAMES, *extra,
             "this person's {poss} {subj} {Subj} {Poss}"]
    words = " ".join(texts).replace("'s", " 's")
    for ch in "?.,:!'{}":
        words = words.replace(ch, " ")
    return tuple(dict.fromkeys(words.split() + ["'s"]))


def save_tiny(family: str, out_dir: str | Path | None = None, seed: int = 0, layers: int = 2,
              words: tuple[str, ...] = ()) -> Path:
    """Build a tiny model and save model, tokenizer and image processor in HF format."""
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix=f"tiny-{family}-"))
    model, tok, proc = build_tiny(family, seed=seed, layers=layers, words=words)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    proc.save_pretrained(out)
    return out
