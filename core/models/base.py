"""The one interface every vision-language model family is used through.

Why an adapter: the steering engine, PGD and the evaluation need the same handful of things
from any model -- a prompt in the model's own format, an image as a [0,1] tensor at model
resolution, a DIFFERENTIABLE path from that tensor to the model's inputs (so PGD perturbs real
pixels, never normalised or patchified tensors), the decoder layers, the last prompt token
under left padding, and greedy generation with a KV cache. Family subclasses only say what
differs: the image-token layout and the pixel pipeline.
"""

from __future__ import annotations

import functools
from array import array
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np
import torch
from PIL import Image

from core.data.folder import rgb
from core.models.weights import FINGERPRINT, fingerprint

PROMPT_IDS_CACHE = 20_000  # prompts whose ids an adapter keeps: 52 MB at most at LLaVA-1.5's 600 ids a prompt


@dataclass
class Batch:
    """Model inputs for a left-padded batch.

    The last PROMPT token of every row sits at `prompt_last[i]`; for prompt-only batches that is
    always the final column (left padding), which is where the steering gate is read.
    """

    inputs: dict[str, torch.Tensor]
    prompt_last: torch.Tensor  # (B,) index of the last prompt token in each row
    labels: torch.Tensor | None = None  # (B, T) answer token ids, -100 elsewhere
    has_image: bool = False

    @property
    def input_ids(self) -> torch.Tensor:
        return self.inputs["input_ids"]

    def __len__(self) -> int:
        return self.inputs["input_ids"].shape[0]


@dataclass
class ModelInfo:
    """What an artefact records about the model it was fitted on."""

    family: str
    name_or_path: str
    revision: str | None
    hidden_size: int
    num_layers: int
    fingerprint: str = field(default="")


class VLMAdapter:
    """Base adapter. Subclasses set `family`, `placeholder` and implement the image hooks."""

    family: ClassVar[str] = "base"
    placeholder: ClassVar[str] = "<image>"  # what the chat template emits for one image

    def __init__(self, model, tokenizer, image_processor, *, name_or_path: str = "",
                 chat_template: str | None = None, image_size: int | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.name_or_path = name_or_path or getattr(model.config, "_name_or_path", "") or self.family
        self.chat_template = chat_template if chat_template is not None else getattr(tokenizer, "chat_template", None)
        self.image_size = image_size or self.default_image_size()
        self.mean = torch.tensor(self._proc_attr("image_mean"), dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(self._proc_attr("image_std"), dtype=torch.float32).view(1, 3, 1, 1)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"

    # ------------------------------------------------------------------ structure
    @property
    def layers(self) -> torch.nn.ModuleList:
        """The language model's decoder blocks (steering and capture sites)."""
        return self.model.get_decoder().layers

    @property
    def text_config(self):
        return self.model.config.get_text_config()

    @property
    def hidden_size(self) -> int:
        return int(self.text_config.hidden_size)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @functools.cached_property
    def num_parameters(self) -> int:
        """Parameters of the whole model, counted once (the model is never resized in place)."""
        return sum(p.numel() for p in self.model.parameters())

    @property
    def context_length(self) -> int:
        """Positions the language model was built for (prompt, image tokens and answer together)."""
        return int(getattr(self.text_config, "max_position_embeddings", None) or 4096)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the first parameter that is not offloaded (accelerate's hooks move
        them on to each block's device)."""
        for p in self.model.parameters():
            if p.device.type != "meta":
                return p.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def info(self) -> ModelInfo:
        """Identity of the wrapped model. The weights fingerprint is computed once: eraser.apply
        checks it on every call (the app's hot path) and steering never changes the weights."""
        return ModelInfo(self.family, str(self.name_or_path), getattr(self.model.config, "_commit_hash", None),
                         self.hidden_size, self.num_layers, self.weights_print())

    def weights_print(self, version: int | None = None) -> str:
        """The weights fingerprint of a version (the current one by default), computed once each:
        an eraser saved with an older version is checked against that version's print."""
        cache = self.__dict__.setdefault("_prints", {})
        version = version or FINGERPRINT
        if version not in cache:
            cache[version] = fingerprint(self.model, version)
        return cache[version]

    # ------------------------------------------------------------------ prompts
    def prompt(self, question: str, with_image: bool) -> str:
        """The chat-formatted prompt with at most ONE unexpanded image placeholder."""
        content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": question}]
        if self.chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], chat_template=self.chat_template,
                tokenize=False, add_generation_prompt=True)
        return self.plain_prompt(question, with_image)

    def conversation(self, question: str, with_image: bool, history: Sequence[tuple[str, str]] = (),
                     prefill: str = "") -> str:
        """The prompt of a later turn: earlier (question, answer) turns, the image in the FIRST
        user turn, then `question`, then the start of the assistant's reply (`prefill`) that
        generation continues. Why: multi-turn follow-ups and answer prefilling are attacks on a
        test-time eraser (benchmark.md), and the gate must be read where the model really is."""
        if not history:
            text = self.prompt(question, with_image)
        elif not self.chat_template:
            raise ValueError(f"{self.name_or_path or self.family} has no chat template, so it has no "
                             "multi-turn format: ask one question at a time")
        else:
            turns = [*history, (question, None)]
            messages = []
            for i, (q, a) in enumerate(turns):
                image = [{"type": "image"}] if with_image and i == 0 else []
                messages.append({"role": "user", "content": image + [{"type": "text", "text": q}]})
                if a is not None:
                    messages.append({"role": "assistant", "content": [{"type": "text", "text": a}]})
            text = self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template,
                                                      tokenize=False, add_generation_prompt=True)
        return text + self.answer_prefix + prefill if prefill else text

    def expand_image_tokens(self, text: str) -> str:
        """Replace the single placeholder by as many image tokens as the vision tower yields."""
        return text.replace(self.placeholder, self.placeholder * self.num_image_tokens(), 1)

    def num_image_tokens(self) -> int:
        raise NotImplementedError

    # ------------------------------------------------------------------ pixels
    def default_image_size(self) -> int:
        raise NotImplementedError

    def _proc_attr(self, name: str):
        value = getattr(self.image_processor, name, None)
        if value is None:
            raise ValueError(f"image processor of {self.family} has no {name}")
        return list(value)

    def to_pixels(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> float tensor (3, S, S) in [0, 1] at model resolution (not differentiable).

        The centre square of the shortest edge is cropped first and then resized to S (what
        CLIP-style processors' resize-then-crop gives, up to resampling). Cropping first keeps
        the cost bounded by the square's size: resizing a 1 x 40000 strip's shortest edge to S
        first would build a 336 x 13 million image."""
        if not isinstance(image, Image.Image):  # a path or an array failed deep inside as "no attribute 'convert'"
            raise TypeError(f"an image must be a PIL image (e.g. PIL.Image.open(path)), got {type(image).__name__}"
                            + (f" {image[:80]!r}" if isinstance(image, str) else ""))
        image = rgb(image)
        s = self.image_size
        w, h = image.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
        resample = int(getattr(self.image_processor, "resample", Image.BICUBIC) or Image.BICUBIC)
        if side != s:
            image = image.resize((s, s), resample)
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()

    def check_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """A pixel tensor as `encode` takes it: floating point, (B, 3, S, S) at this model's S, in
        [0, 1]. Why: a uint8 tensor (what image readers return) divided by a mean and std cast to
        uint8 (zeros) gave NaN activations and empty answers, and another size a reshape error."""
        s = self.image_size
        if not pixels.is_floating_point() or pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, s, s):
            raise ValueError(f"a pixel tensor must be floating point, (batch, 3, {s}, {s}) for this model, in [0, 1]; "
                             f"got {pixels.dtype}, {tuple(pixels.shape)} (pass PIL images to have them resized)")
        lo, hi = map(float, torch.aminmax(pixels.detach()))  # one pass over the batch
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"pixel values must lie in [0, 1], got {lo:.3g}..{hi:.3g} (divide 0-255 values by 255)")
        return pixels

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean.to(pixels)) / self.std.to(pixels)

    def pixel_inputs(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Differentiable map from (B, 3, S, S) pixels in [0,1] to the model's image kwargs."""
        return {"pixel_values": self.normalise(pixels).to(self.dtype)}

    def extra_inputs(self, input_ids: torch.Tensor, has_image: bool,
                     answer: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Family-specific tensors derived from the token ids (e.g. Qwen's mm_token_type_ids);
        `answer`: True at the answer tokens appended for teacher forcing (PaliGemma's suffix)."""
        return {}

    def plain_prompt(self, question: str, with_image: bool) -> str:
        """The prompt of a checkpoint without a chat template (families that define their format)."""
        raise ValueError(f"{self.name_or_path} has no chat template (chat_template.jinja, chat_template.json or the "
                         "tokenizer's): copy it from the checkpoint's repository")

    # ------------------------------------------------------------------ batches
    def encode(self, questions: Sequence[str], images: Sequence[Image.Image] | torch.Tensor | None = None,
               answers: Sequence[str] | None = None,
               histories: Sequence[Sequence[tuple[str, str]]] | None = None,
               prefills: Sequence[str] | None = None) -> Batch:
        """Tokenise a batch (left padding). `images` may be PIL images or a (B,3,S,S) pixel tensor
        in [0,1]; gradients flow from a tensor to the model inputs. With `answers`, the answer
        tokens (+ EOS) are appended and returned as labels for teacher forcing. `histories` and
        `prefills` (one per row) make each row a later turn of a conversation (see `conversation`)."""
        has_image = images is not None
        if has_image and len(images) != len(questions):
            raise ValueError(f"{len(images)} images for {len(questions)} questions")
        tok = self.tokenizer
        rows, label_rows, last = [], [], []
        for i, q in enumerate(questions):
            ids = self.prompt_ids(q, has_image, histories[i] if histories else (), prefills[i] if prefills else "")
            labels = [-100] * len(ids)
            last.append(len(ids) - 1)
            if answers is not None:
                ans = tok(self.answer_prefix + answers[i], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
                ids = ids + ans
                labels = labels + ans
            rows.append(ids)
            label_rows.append(labels)
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
        prompt_last = torch.tensor([width - len(r) + l for r, l in zip(rows, last)], dtype=torch.long)
        inputs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": mask}
        if has_image:
            pixels = (self.check_pixels(images) if isinstance(images, torch.Tensor)
                      else torch.stack([self.to_pixels(im) for im in images]))
            inputs.update(self.pixel_inputs(pixels))
        labels = None
        if answers is not None:
            labels = torch.tensor([[-100] * (width - len(r)) + r for r in label_rows], dtype=torch.long)
        inputs.update(self.extra_inputs(input_ids, has_image, None if labels is None else labels != -100))
        dev = self.device
        inputs = {k: v.to(dev) for k, v in inputs.items()}
        return Batch(inputs, prompt_last.to(dev), None if labels is None else labels.to(dev), has_image)

    def prompt_ids(self, question: str, has_image: bool, history: Sequence[tuple[str, str]] = (),
                   prefill: str = "") -> list[int]:
        """The token ids of one prompt, image tokens expanded, unpadded (a row of `encode`)."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("empty question: type a question about the image")
        key = (question, bool(has_image), tuple(tuple(turn) for turn in history), prefill, self.image_size)
        ids = self._prompt_ids_cache.get(key)
        if ids is None:
            self.check_user_text([question, prefill, *(t for turn in history for t in turn)])
            text = self.conversation(question, has_image, history, prefill)
            if has_image:
                if self.placeholder not in text:
                    raise ValueError(f"the chat template of {self.name_or_path} emitted no image placeholder")
                text = self.expand_image_tokens(text)
            # a template that writes BOS itself (Idefics3-8B's Llama-3 one) must not get a second from the tokenizer
            bos = self.tokenizer.bos_token
            add = self.add_bos and not (bos and text.startswith(bos))
            ids = array("i", self.after_prompt_ids(self.tokenizer(text, add_special_tokens=add)["input_ids"]))
            if len(self._prompt_ids_cache) >= PROMPT_IDS_CACHE:
                self._prompt_ids_cache.clear()
            self._prompt_ids_cache[key] = ids
        return list(ids)

    @functools.cached_property
    def special_texts(self) -> tuple[str, ...]:
        """The tokenizer's special and added tokens as text ("<image>", "<|image_pad|>", "</s>"...):
        in a user's text each would be read as that token, not as the characters."""
        tok = self.tokenizer
        added = [t.content for t in getattr(tok, "added_tokens_decoder", {}).values()]
        return tuple(sorted({t for t in [*tok.all_special_tokens, *added, self.placeholder] if t and t.strip()},
                            key=len, reverse=True))

    def check_user_text(self, texts: Sequence[str]) -> None:
        """Why: a question holding "<image>" became a real image token (an error about features
        deep inside, or with no picture a fake one read as an image), and "</s>" ended the turn."""
        firsts = {t[0] for t in self.special_texts}  # most texts hold no "<" at all: skip them at once
        for text in texts:
            if not firsts.intersection(text):
                continue
            hit = next((t for t in self.special_texts if t in text), None)
            if hit is not None:
                raise ValueError(f"the text {text[:60]!r} holds {hit!r}, a special token of this model's tokenizer: "
                                 "remove it (the picture goes in the image, not in the text)")

    def clear_prompt_cache(self) -> None:
        """Forget the prompts built so far (what `core.bench` does before timing a build from
        scratch, so that a repeat is not helped by the one before)."""
        self._prompt_ids_cache.clear()

    @functools.cached_property
    def _prompt_ids_cache(self) -> dict[tuple, array]:
        """Token ids of prompts already built. Why: a gate set asks the same question about many
        pictures (7,054 prompts, 4,758 distinct, in the shipped eraser's), and rendering the chat
        template then tokenizing took 1.4 s of its 11 s build; refits and the app's views ask the
        same prompts again. The ids depend only on these arguments and the adapter's tokenizer and
        template, which never change after loading."""
        return {}

    @property
    def image_token_id(self) -> int:
        """The id of one image token in a prompt (what `expand_image_tokens` repeats)."""
        return int(self.tokenizer.convert_tokens_to_ids(self.placeholder))

    add_bos: ClassVar[bool] = True
    answer_prefix: ClassVar[str] = " "
    # Whether prompts that show the same image and start with the same tokens may run that start once
    # (`core.activations`): true where the decoder is causal, so a prompt's first tokens never see
    # the rest, and `positions` gives the start's. Not PaliGemma (prefix-LM: image and prompt
    # tokens attend both ways).
    shared_prefix: ClassVar[bool] = False

    def after_prompt_ids(self, ids: list[int]) -> list[int]:
        return ids

    def forward_inputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Inputs for a plain forward pass: left padding needs explicit position ids."""
        inputs = dict(batch.inputs)
        inputs["position_ids"] = self.positions(inputs)
        return inputs

    def positions(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The position ids of left-padded `inputs` ((B, T): each row counts from its first
        attended token), in the layout the language model takes them; the last column is where
        a prompt's next token continues from (+1)."""
        return (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)

    def logits(self, batch: Batch) -> torch.Tensor:
        return self.model(**self.forward_inputs(batch), use_cache=False).logits

    def answer_nll(self, batch: Batch) -> torch.Tensor:
        """Mean token negative log-likelihood of the answer, per row (B,). Needs labels."""
        if batch.labels is None:
            raise ValueError("answer_nll needs a batch encoded with answers")
        logits = self.logits(batch)[:, :-1].float()
        target = batch.labels[:, 1:]
        logp = torch.log_softmax(logits, dim=-1)
        mask = target != -100
        tok_lp = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
        return -tok_lp.sum(-1) / mask.sum(-1).clamp(min=1)

    @torch.no_grad()
    def generate(self, batch: Batch, max_new_tokens: int = 20) -> list[str]:
        """Greedy decoding with the KV cache; returns the new text of every row."""
        out = self.model.generate(**batch.inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                  num_beams=1, use_cache=True, pad_token_id=self.tokenizer.pad_token_id,
                                  eos_token_id=self.stop_ids)
        new = out[:, batch.input_ids.shape[1]:]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    @functools.cached_property
    def stop_ids(self) -> list[int]:
        """Tokens that end an answer: the tokenizer's EOS and the checkpoint's generation config's (a
        chat model ends its turn with its own token, Idefics3-8B's <end_of_utterance> or Qwen's
        <|im_end|>, which its tokenizer's EOS may not be; with the tokenizer's alone it wrote on
        past the end of its turn)."""
        ids = [self.tokenizer.eos_token_id]
        cfg = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids += cfg if isinstance(cfg, (list, tuple)) else [cfg]
        return [int(i) for i in dict.fromkeys(ids) if i is not None]

    def ask(self, question: str, image: Image.Image | None = None, max_new_tokens: int = 20) -> str:
        """One question, one answer: the convenience path for notebooks."""
        batch = self.encode([question], None if image is None else [image])
        return self.generate(batch, max_new_tokens)[0]
