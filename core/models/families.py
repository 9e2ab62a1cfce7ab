"""Family adapters: only what differs between architectures (image-token layout, pixel path)."""

from __future__ import annotations

import torch
from PIL import Image

from core.models.base import VLMAdapter


class LlavaAdapter(VLMAdapter):
    """LLaVA-1.5 (LlavaForConditionalGeneration): CLIP tower, `<image>` repeated per patch."""

    family = "llava"
    shared_prefix = True

    def default_image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    def num_image_tokens(self) -> int:
        vc = self.model.config.vision_config
        n = (vc.image_size // vc.patch_size) ** 2
        return n + (1 if self.model.config.vision_feature_select_strategy == "full" else 0)


class QwenVLAdapter(VLMAdapter):
    """Qwen2-VL / Qwen2.5-VL: images are patchified into (patches, C*T*p*p) rows, grouped by
    spatial merge windows, with a grid (t, h, w) per image and M-RoPE positions that need
    `mm_token_type_ids`. The patchify below is the processor's, written in torch so that
    gradients reach the pixels."""

    family = "qwen2_vl"
    placeholder = "<|image_pad|>"
    add_bos = False
    answer_prefix = ""
    shared_prefix = True

    @property
    def _vc(self):
        return self.model.config.vision_config

    def default_image_size(self) -> int:
        """A square side: the processor's pixel budget, capped at 448 (256 tokens) for speed."""
        unit = self._vc.patch_size * self._vc.spatial_merge_size
        size = getattr(self.image_processor, "size", None) or {}
        budget = int(size.get("longest_edge", 448 * 448) ** 0.5)
        return max(2 * unit, min(448, budget) // unit * unit)

    def _grid(self) -> tuple[int, int]:
        g = self.image_size // self._vc.patch_size
        return g, g

    def num_image_tokens(self) -> int:
        gh, gw = self._grid()
        return gh * gw // self._vc.spatial_merge_size ** 2

    def to_pixels(self, image: Image.Image) -> torch.Tensor:
        unit = self._vc.patch_size * self._vc.spatial_merge_size
        if self.image_size % unit:
            raise ValueError(f"image_size {self.image_size} must be a multiple of {unit} for {self.family}")
        return super().to_pixels(image)

    def pixel_inputs(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.normalise(pixels)
        b, c, h, w = x.shape
        p, m, t = self._vc.patch_size, self._vc.spatial_merge_size, self._vc.temporal_patch_size
        gh, gw = h // p, w // p
        x = x.reshape(b, c, gh // m, m, p, gw // m, m, p)
        x = x.permute(0, 2, 5, 3, 6, 1, 4, 7)  # (b, gh/m, gw/m, m, m, c, p, p)
        x = x.unsqueeze(6).expand(*x.shape[:6], t, p, p)  # repeat the frame temporal_patch_size times
        x = x.reshape(b * gh * gw, c * t * p * p)
        grid = torch.tensor([[1, gh, gw]] * b, dtype=torch.long, device=pixels.device)
        return {"pixel_values": x.to(self.dtype), "image_grid_thw": grid}

    def extra_inputs(self, input_ids: torch.Tensor, has_image: bool,
                     answer: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        image_id = self.model.config.image_token_id
        return {"mm_token_type_ids": (input_ids == image_id).to(torch.int32)}

    def plain_prompt(self, question: str, with_image: bool) -> str:
        img = "<|vision_start|><|image_pad|><|vision_end|>" if with_image else ""
        return f"<|im_start|>user\n{img}{question}<|im_end|>\n<|im_start|>assistant\n"

    def forward_inputs(self, batch):
        # Qwen computes its own 3-D (M-RoPE) positions from the attention mask.
        return dict(batch.inputs)

    def positions(self, inputs):
        """(3, B, T) M-RoPE positions (temporal, height, width), as the model computes them: an
        image's tokens take their grid's, the text after it counts on from the largest."""
        return self.model.model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                               image_grid_thw=inputs.get("image_grid_thw"),
                                               attention_mask=inputs["attention_mask"])[0]


class Qwen25VLAdapter(QwenVLAdapter):
    family = "qwen2_5_vl"


class Idefics3Adapter(VLMAdapter):
    """Idefics3 / SmolVLM without image splitting: one global image of S x S, its patch
    features pixel-shuffled into image_seq_len tokens wrapped in <fake_token_around_image>."""

    family = "idefics3"
    shared_prefix = True

    def default_image_size(self) -> int:
        size = getattr(self.image_processor, "max_image_size", None) or {}
        return int(size.get("longest_edge", self.model.config.vision_config.image_size))

    def num_image_tokens(self) -> int:
        vc = self.model.config.vision_config
        return (self.image_size // vc.patch_size) ** 2 // self.model.config.scale_factor ** 2

    def expand_image_tokens(self, text: str) -> str:
        seq = ("<fake_token_around_image><global-img>" + "<image>" * self.num_image_tokens()
               + "<fake_token_around_image>")
        return text.replace("<image>", seq, 1)

    def plain_prompt(self, question: str, with_image: bool) -> str:
        return f"<|im_start|>User:{'<image>' if with_image else ''}{question}<end_of_utterance>\nAssistant:"

    def pixel_inputs(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.normalise(pixels).unsqueeze(1)  # (B, 1 image, 3, S, S)
        b, _, _, h, w = x.shape
        mask = torch.ones(b, 1, h, w, dtype=torch.bool, device=pixels.device)
        return {"pixel_values": x.to(self.dtype), "pixel_attention_mask": mask}


class SmolVLMAdapter(Idefics3Adapter):
    family = "smolvlm"


class PaliGemmaAdapter(VLMAdapter):
    """PaliGemma: `<image>` * N, then <bos>, then the prompt and a newline; no chat template."""

    family = "paligemma"
    add_bos = False

    def default_image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    def num_image_tokens(self) -> int:
        vc = self.model.config.vision_config
        return (vc.image_size // vc.patch_size) ** 2

    def prompt(self, question: str, with_image: bool) -> str:
        bos = self.tokenizer.bos_token
        return f"{'<image>' if with_image else ''}{bos}{question}\n"

    def extra_inputs(self, input_ids: torch.Tensor, has_image: bool,
                     answer: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        # Prefix-LM: the prompt is the "prefix" (type 0), attended both ways; answer tokens appended for
        # teacher forcing are the "suffix" (type 1), causal, as PaliGemma's processor marks them: typed 0
        # they saw the answer tokens after them
        types = torch.zeros_like(input_ids) if answer is None else answer.to(input_ids.dtype)
        return {"token_type_ids": types}


ADAPTERS: dict[str, type[VLMAdapter]] = {
    "llava": LlavaAdapter,
    "qwen2_vl": QwenVLAdapter,
    "qwen2_5_vl": Qwen25VLAdapter,
    "idefics3": Idefics3Adapter,
    "smolvlm": SmolVLMAdapter,
    "paligemma": PaliGemmaAdapter,
}
