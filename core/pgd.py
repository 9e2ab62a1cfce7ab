"""L-infinity PGD in [0,1] pixel space at model resolution, as an iterator a UI can stream.

Why an iterator: the workbench shows the perturbed image, the amplified perturbation and the
loss step by step, and must be able to stop. Each step yields a PGDStep; stop by breaking out of
the loop (or pass should_stop). Gradients flow through the adapter's differentiable pixel path
(normalisation, and patchify for Qwen), never through normalised tensors.

    delta_0 ~ U(-eps, eps), clipped so that x + delta in [0, 1]
    loss    = mean over targets of the mean token NLL of y_target given (x + delta, prompt)
    delta  <- clip(delta - alpha * sign(grad), -eps, eps);  delta <- clip(x + delta, 0, 1) - x
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from PIL import Image

from core.models.base import Batch, VLMAdapter


@dataclass(frozen=True)
class PGDConfig:
    eps: float = 16 / 255
    step_size: float = 1 / 255
    steps: int = 100
    random_start: bool = True
    seed: int = 0
    early_stop_nll: float | None = None  # stop once the target's mean NLL falls below this (not the total)
    eot: int = 1  # expectation over transformation: each step averages the loss over this many
    # random rephrasings of the perturbed image (`rephrase`); 1 = plain PGD

    def __post_init__(self):
        if not 0 < self.eps <= 1:
            raise ValueError(f"eps must be in (0, 1] (a fraction of the pixel range, e.g. 16/255), got {self.eps}")
        if not 0 < self.step_size <= 1:
            raise ValueError(f"step size must be in (0, 1], got {self.step_size}")
        if not 1 <= self.steps <= 100_000:
            raise ValueError(f"steps must be between 1 and 100000, got {self.steps}")
        if not 1 <= self.eot <= 64:
            raise ValueError(f"eot (rephrasings averaged per step) must be between 1 and 64, got {self.eot}")


@dataclass
class PGDStep:
    step: int
    image: torch.Tensor  # (B, 3, S, S) perturbed pixels in [0, 1]
    delta: torch.Tensor  # (B, 3, S, S) perturbation in [-eps, eps]
    loss: float  # mean NLL of the targets (lower = target more likely)
    target_logprob: torch.Tensor  # (B,) summed log-probability of each target answer
    losses: torch.Tensor | None = None  # (B,) each image's own objective (the mean `loss` is theirs)


def rephrase(pixels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random rephrasing of (B, 3, S, S) pixels in [0, 1], differentiable, for EOT: Gaussian
    noise (sigma 0.02), brightness or contrast x U(0.8, 1), a resize to U(0.7, 1) and back, or a
    centre crop keeping U(0.8, 1) resized back: the kinds of the robustness report's image
    rephrasings, at random strengths. Why: a perturbation that survives them is not a
    brittle pixel pattern (Athalye et al. 2018, "Synthesizing robust adversarial examples")."""
    import torch.nn.functional as F
    kind = int(torch.randint(5, (1,), generator=gen))
    f = 0.8 + 0.2 * float(torch.rand(1, generator=gen))
    size = pixels.shape[-2:]
    if kind == 0:
        out = pixels + 0.02 * torch.randn(pixels.shape, generator=gen).to(pixels)
    elif kind == 1:
        out = pixels * f
    elif kind == 2:
        mean = pixels.mean(dim=(1, 2, 3), keepdim=True)
        out = (pixels - mean) * f + mean
    elif kind == 3:
        small = [max(1, round(n * (0.7 + 1.5 * (f - 0.8)))) for n in size]  # U(0.7, 1) of each side
        out = F.interpolate(F.interpolate(pixels, size=small, mode="bilinear", align_corners=False), size=size,
                            mode="bilinear", align_corners=False)
    else:
        h, w = (max(1, round(n * f)) for n in size)
        top, left = (size[0] - h) // 2, (size[1] - w) // 2
        out = F.interpolate(pixels[..., top:top + h, left:left + w], size=size, mode="bilinear", align_corners=False)
    return out.clamp(0, 1)


def _as_pixels(adapter: VLMAdapter, images) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        return images.detach().float().clamp(0, 1)
    return torch.stack([adapter.to_pixels(im) for im in images])


def pgd(adapter: VLMAdapter, images: Sequence[Image.Image] | torch.Tensor, questions: Sequence[str],
        targets: Sequence[str], cfg: PGDConfig = PGDConfig(),
        should_stop: Callable[[], bool] | None = None, extra_loss: Callable[[Batch], torch.Tensor] | None = None,
        nll_weight: float = 1.0) -> Iterator[PGDStep]:
    """Perturb each image so the model answers its question with its target (batched).

    extra_loss(batch) -> (B,) is added to nll_weight * NLL (e.g. the eraser's gate value, for
    the adaptive attack that keeps the answer while keeping the gate shut); the step's `loss`
    is then that total. Yields step 0 (the start point) and then every update. The model's
    weights are untouched (no parameter gradients are kept)."""
    if not nll_weight and extra_loss is None:
        raise ValueError("nothing to optimise: nll_weight is 0 and no extra_loss is given")
    if not (len(questions) == len(targets) == len(images)):
        raise ValueError(f"{len(images)} images, {len(questions)} questions and {len(targets)} targets: "
                         "give one question and one target per image")
    x = _as_pixels(adapter, images).to(adapter.device)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    if cfg.random_start:
        delta = (torch.rand(x.shape, generator=gen) * 2 - 1).to(x) * cfg.eps
    else:
        delta = torch.zeros_like(x)
    delta = (x + delta).clamp(0, 1) - x
    params = [p for p in adapter.model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        for step in range(cfg.steps + 1):
            delta.requires_grad_(True)
            views = [x + delta] if cfg.eot == 1 else [rephrase(x + delta, gen) for _ in range(cfg.eot)]
            each, mean_nll = 0.0, 0.0
            for view in views:  # with EOT, the loss (and its gradient) is the mean over the rephrasings
                batch = adapter.encode(list(questions), view, list(targets))
                if nll_weight or cfg.early_stop_nll is not None:
                    nll = adapter.answer_nll(batch)  # (B,) mean token NLL per target
                    part = nll_weight * nll
                else:  # a gate-only objective (hardening): no forward to the logits for a term weighted 0
                    nll = torch.full((len(questions),), float("nan"))
                    part = 0.0
                if extra_loss is not None:
                    part = part + extra_loss(batch)
                each = each + part / len(views)
                if cfg.early_stop_nll is not None:  # a device sync per view: only when the stop reads it
                    mean_nll = mean_nll + float(nll.detach().mean()) / len(views)
            loss = each.mean()
            n_tok = (batch.labels != -100).sum(-1)  # the last view's log-probabilities are reported (NaN: not computed)
            value = float(loss.detach())
            yield PGDStep(step, (x + delta).detach().cpu(), delta.detach().cpu(), value,
                          (-nll.detach().cpu() * n_tok.cpu()), each.detach().float().cpu())
            if step == cfg.steps or (should_stop is not None and should_stop()):
                return
            if cfg.early_stop_nll is not None and mean_nll < cfg.early_stop_nll:  # the answer's NLL, not the total
                return
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta = (delta - cfg.step_size * grad.sign()).clamp(-cfg.eps, cfg.eps)
                delta = (x + delta).clamp(0, 1) - x
    finally:
        for p in params:
            p.requires_grad_(True)


def run_pgd(adapter: VLMAdapter, images, questions, targets, cfg: PGDConfig = PGDConfig(),
            progress: Callable[[int, int, float], None] | None = None,
            should_stop: Callable[[], bool] | None = None, keep: str = "last", **objective) -> PGDStep:
    """Run PGD to the end (or until stopped) and return the last step (objective: pgd's
    extra_loss / nll_weight). keep="best": each image at the step where its own objective was
    lowest (what an attacker keeps: sign steps of a fixed size need not end at their best point);
    the returned step's `step` is then the last one, its `loss` the mean of the kept objectives."""
    if keep not in ("last", "best"):
        raise ValueError(f"keep must be 'last' or 'best', got {keep!r}")
    last = best = None
    for st in pgd(adapter, images, questions, targets, cfg, should_stop, **objective):
        last = st
        if keep == "best":
            if best is None:
                best = PGDStep(st.step, st.image.clone(), st.delta.clone(), st.loss, st.target_logprob.clone(),
                               st.losses.clone())
            else:
                better = st.losses < best.losses
                best.image[better], best.delta[better] = st.image[better], st.delta[better]
                best.target_logprob[better], best.losses[better] = st.target_logprob[better], st.losses[better]
        if progress is not None:
            progress(st.step, cfg.steps, st.loss)
    assert last is not None
    if keep == "best":
        best.step, best.loss = last.step, float(best.losses.mean())
        return best
    return last


def to_image(pixels: torch.Tensor) -> Image.Image:
    """(3, S, S) in [0,1] -> PIL image (for display and for adding to a recall set)."""
    arr = (pixels.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


def amplify(delta: torch.Tensor, eps: float) -> Image.Image:
    """The perturbation made visible: [-eps, eps] mapped to [0, 255] (grey = unchanged)."""
    return to_image((delta / (2 * eps) + 0.5).clamp(0, 1))
