"""Training-based unlearning baselines, the rows MLLMEraser is compared against (benchmark.md).

Why here: test-time steering only means something next to what weight editing achieves on the
same model and forget set. Each baseline fine-tunes a COPY of a toy model on its forget people
(and, for most, its retain people), then saves it like any toy model so that
`python -m core evaluate --model OUT` scores it with the same harness. l(x, y) is the mean
token NLL of the answer; L_f and L_r its mean over a forget and a retain batch.

    ga       -L_f
    ga_diff  -L_f + c L_r
    kl_min   -L_f + a KL(p_orig || p_theta) on retain answer tokens + L_r
    npo      -(2/b) mean log sigmoid(-b (log p_theta(y|x) - log p_ref(y|x))) + c L_r
    idk      NLL of the refusal answer on forget prompts + L_r   (IdkNLL)
    mmunlearner  -L_f, interleaved with L_r steps, both updating only the entries where
             Fisher_forget / Fisher_retain >= 1   (MMUnlearner's masked GA)
    smfa     a forgetting update (refusal NLL on forget + NLL on a few retain examples) and an
             anchor update (those retain examples only), both from the original weights; the
             forgetting update is added with its conflicting entries zeroed (see smfa_merge).
             Full fine-tuning deltas stand in for the paper's LoRA adapters.
    vkd      only the vision tower and projector train: on forget portraits the cosine between
             their visual representations (every vision layer and the projector output) and the
             frozen original's is minimised, on retain images 1 - that cosine is (our reading of
             VKD's described idea; its exact loss is not public). Text-only knowledge is untouched.

Full fine-tuning (the tiny model is small enough; the papers use LoRA on 7B models). The
recipe is fixed per method (BaselineConfig defaults) and recorded in the saved folder.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.models.base import Batch, VLMAdapter
from core.data.source import ForgetData
from core.data.training import Example, batches_by_modality, record_examples

METHODS = ("ga", "ga_diff", "kl_min", "npo", "idk", "mmunlearner", "smfa", "vkd")
_NEEDS_RETAIN = {"ga_diff", "kl_min", "npo", "idk", "mmunlearner", "smfa", "vkd"}
_WEIGHT_FILES = {"model.safetensors", "config.json", "generation_config.json", "training.json", "unlearning.json"}


@dataclass
class BaselineConfig:
    """One unlearning run. Defaults: the recipe used for the README's baseline rows."""

    method: str = "ga_diff"
    epochs: float = 2.0          # passes over the forget examples
    lr: float = 5e-5
    batch_size: int = 16
    retain_weight: float = 1.0   # c
    kl_weight: float = 1.0       # a (kl_min)
    beta: float = 0.9            # b (npo)
    smfa_k: float = 5.0          # k (smfa): conflict threshold, in units of rho
    smfa_retain: int = 64        # retain examples the smfa runs see
    seed: int = 0
    # subjects whose facts are not retain targets although they are not forgotten in this run: those
    # forgotten by earlier requests (core.sequential), which the retain loss would otherwise teach again
    not_retained: tuple[str, ...] = ()

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown baseline {self.method!r}; choose one of {', '.join(METHODS)}")
        if not (self.epochs > 0 and self.lr > 0 and self.batch_size > 0):
            raise ValueError("epochs, lr and batch_size must be positive")
        # inf epochs ended in an OverflowError; a NaN weight trained a model that scores 0 everywhere, saved as a result
        for name, top in (("epochs", 1000), ("lr", 1.0), ("retain_weight", 1e6), ("kl_weight", 1e6), ("beta", 1e3)):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v <= top):
                raise ValueError(f"--{name.replace('_', '-')} must be a finite number in [0, {top:g}], got {v}")
        if self.beta == 0:  # NPO divides by it
            raise ValueError("--beta (NPO's temperature) must be above 0")


def forget_examples(data: ForgetData, rng: np.random.Generator, refusal: bool = False) -> list[Example]:
    """The forget subjects' training facts (every format, image and text), optionally with the
    answer replaced by the model's refusal (IdkNLL). A toy world draws them from its training
    generator; other sources use their records' items."""
    if data.builder is not None:
        out = data.builder.forget_examples(rng)
    else:
        out = [e for rec in data.forget for e in record_examples(rec)]
    if not out:
        raise ValueError("the forget subjects have no questions with answers to train on: add facts "
                         "(MLLMU items, or qa / mcq / cloze in the photo folder's facts.json)")
    if refusal:
        out = [Example(e.image, e.prompt, data.wordings.refusal, "refusal", e.person_id, e.attribute) for e in out]
    return out


def retain_examples(data: ForgetData, rng: np.random.Generator, not_retained: Sequence[str] = ()) -> list[Example]:
    """What the model must keep: retained subjects' facts (a toy world also adds refusals, scenes and
    general facts from its generator), without the subjects of `not_retained`. Never the `real`
    split: it is scored as the general knowledge the model had, and a baseline fine-tuned on those
    very rows would be scored on what it was just trained on."""
    out = data.builder.retain_examples(rng) if data.builder is not None else [
        e for rec in data.retain for e in record_examples(rec)]
    skip = set(not_retained)
    out = [e for e in out if e.person_id not in skip]
    if not out:
        raise ValueError("this baseline trains on retained data: pass --data retain=PATH (people to keep; the "
                         "real split is only scored)")
    return out


def _encode(adapter: VLMAdapter, batch: Sequence[Example]) -> Batch:
    images = [e.image for e in batch] if batch[0].image is not None else None
    return adapter.encode([e.prompt for e in batch], images, [e.answer for e in batch])


def sequence_logprob(adapter: VLMAdapter, batch: Batch) -> torch.Tensor:
    """log p(y|x) of each row's whole answer, (B,)."""
    n = (batch.labels[:, 1:] != -100).sum(-1).clamp(min=1)
    return -adapter.answer_nll(batch) * n


def answer_kl(ref: VLMAdapter, model: VLMAdapter, batch: Batch) -> torch.Tensor:
    """KL(p_ref || p_model) per answer token, averaged over the batch's answer tokens."""
    mask = batch.labels[:, 1:] != -100
    with torch.no_grad():
        p_ref = torch.log_softmax(ref.logits(batch)[:, :-1].float(), -1)[mask]
    p_mod = torch.log_softmax(model.logits(batch)[:, :-1].float(), -1)[mask]
    return F.kl_div(p_mod, p_ref, log_target=True, reduction="batchmean")


def saliency_mask(model: VLMAdapter, forget: Sequence[Example], retain: Sequence[Example],
                  n_examples: int = 256) -> dict[str, torch.Tensor]:
    """MMUnlearner's parameter mask: 1 where the diagonal Fisher of the forget NLL is at least
    that of the retain NLL. Why: gradient ascent then moves only the weights that matter more
    to the forget people than to what must be kept. The Fisher is the mean squared gradient of
    single examples (the first `n_examples` of each set). Measured: batch gradients instead
    favour the forget side (10 people give coherent batch gradients, the varied retain set's
    cancel out) and marked 85% of the weights as forget-salient."""
    def fisher(examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        acc = {n: torch.zeros_like(p) for n, p in model.model.named_parameters() if p.requires_grad}
        used = examples[:n_examples]
        for e in used:
            model.model.zero_grad(set_to_none=True)
            model.answer_nll(_encode(model, [e])).mean().backward()
            for n, p in model.model.named_parameters():
                if p.grad is not None:
                    acc[n] += p.grad.detach() ** 2 / len(used)
        model.model.zero_grad(set_to_none=True)
        return acc
    f, r = fisher(forget), fisher(retain)
    return {n: (f[n] >= r[n]).to(f[n].dtype) * (f[n] > 0) for n in f}


def visual_representations(adapter: VLMAdapter, pixels: torch.Tensor) -> list[torch.Tensor]:
    """A LLaVA model's visual representations of (B, 3, S, S) pixels: the patch tokens after every
    vision layer, then the projector output (what the language model reads: transformers' own
    `get_image_features`, which follows the config's vision_feature_layer and select strategy;
    LLaVA-1.5 reads the second-to-last layer, and projecting the last one trained on features no
    language model sees)."""
    out = adapter.model.model.get_image_features(pixel_values=adapter.pixel_inputs(pixels)["pixel_values"],
                                                 output_hidden_states=True)
    return [h[:, 1:] for h in out.hidden_states[1:]] + [torch.stack(list(out.pooler_output))]


def vkd_loss(model: VLMAdapter, reference: VLMAdapter, forget: torch.Tensor, retain: torch.Tensor,
             retain_weight: float = 1.0) -> torch.Tensor:
    """Mean cosine to the original on forget images (push away) + retain_weight * mean
    (1 - cosine) on retain images (stay), averaged over representation levels and tokens."""
    def cosine(pixels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ref = visual_representations(reference, pixels)
        new = visual_representations(model, pixels)
        return torch.stack([F.cosine_similarity(a, b, dim=-1).mean() for a, b in zip(new, ref)]).mean()
    return cosine(forget) + retain_weight * (1 - cosine(retain))


def smfa_merge(forget_delta: dict[str, torch.Tensor], anchor_delta: dict[str, torch.Tensor], k: float
               ) -> dict[str, torch.Tensor]:
    """SMFA's mask on the forgetting update, per weight tensor: 0 where the entry has the opposite
    sign to the anchor's and exceeds it in magnitude by more than k * rho, with
    rho = ||dW_forget||_F / ||dW_anchor||_F (so the two updates are compared at the same scale);
    1 elsewhere. Why: those entries would undo what the retain-only anchor learned."""
    out = {}
    for n, df in forget_delta.items():
        da = anchor_delta[n]
        rho = df.norm() / da.norm().clamp_min(1e-30)
        conflict = (df * da < 0) & (df.abs() > k * rho * da.abs())
        out[n] = (~conflict).to(df.dtype)
    return out


def baseline_loss(cfg: BaselineConfig, model: VLMAdapter, forget: Batch, retain: Batch | None,
                  reference: VLMAdapter | None) -> torch.Tensor:
    """The objective of one method on a forget batch and a retain batch (see module docstring)."""
    m = cfg.method
    if m in ("idk", "smfa"):
        loss = model.answer_nll(forget).mean()
    elif m == "npo":
        with torch.no_grad():
            ref_lp = sequence_logprob(reference, forget)
        ratio = sequence_logprob(model, forget) - ref_lp
        loss = -(2.0 / cfg.beta) * F.logsigmoid(-cfg.beta * ratio).mean()
    else:
        loss = -model.answer_nll(forget).mean()
    if m == "mmunlearner":  # its retain NLL is a separate, interleaved step (see unlearn)
        return loss
    if m == "kl_min":
        loss = loss + cfg.kl_weight * answer_kl(reference, model, retain) + cfg.retain_weight * model.answer_nll(retain).mean()
    elif m in _NEEDS_RETAIN:
        loss = loss + cfg.retain_weight * model.answer_nll(retain).mean()
    return loss


def optimise(model: VLMAdapter, params: Sequence[torch.Tensor], loss_at: Callable[[int], torch.Tensor], total: int,
             lr: float, mask: dict[str, torch.Tensor] | None = None, losses: list[float] | None = None,
             progress: Callable[[int, float], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> list[float]:
    """`total` AdamW steps (no weight decay, gradient norm clipped at 1) on loss_at(step);
    with `mask`, every gradient is multiplied by it first, so masked entries never move.
    progress(step, mean of the last 10 losses) after each step. Returns the losses."""
    losses = [] if losses is None else losses
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.model.train()
    for step in range(total):
        if should_stop is not None and should_stop():
            raise InterruptedError(f"stopped at step {step}")
        loss = loss_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if mask is not None:
            for n, p in model.model.named_parameters():
                if p.grad is not None:
                    p.grad.mul_(mask[n])
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step + 1, float(np.mean(losses[-10:])))
    model.model.eval()
    return losses


def smfa_runs(model: VLMAdapter, forget_run: Callable[[], None], anchor_run: Callable[[], None], k: float
              ) -> dict[str, torch.Tensor]:
    """Run the forgetting and the anchor fine-tuning, both from the current weights, then leave
    the weights at start + smfa_merge mask * forgetting delta. Returns the mask."""
    named = dict(model.model.named_parameters())
    start = {n: p.detach().clone() for n, p in named.items()}
    forget_run()
    forget_delta = {n: p.detach() - start[n] for n, p in named.items()}
    with torch.no_grad():
        for n, p in named.items():
            p.copy_(start[n])
    anchor_run()
    with torch.no_grad():
        kept = smfa_merge(forget_delta, {n: p.detach() - start[n] for n, p in named.items()}, k)
        for n, p in named.items():
            p.copy_(start[n] + kept[n] * forget_delta[n])
    return kept


def unlearn(model_dir: str | Path, out_dir: str | Path, data: ForgetData, cfg: BaselineConfig = BaselineConfig(),
            reference_dir: str | Path | None = None,
            progress: Callable[[int, int, float], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> Path:
    """Fine-tune a copy of a toy model with one baseline and save it (toy-model folder layout).

    reference_dir: NPO's reference model (benchmark.md: the retain-only model); kl_min always
    uses a frozen copy of the original. The source folder is never written."""
    from core.models.load import load_adapter
    out = Path(out_dir)
    if out.resolve() == Path(model_dir).resolve():
        raise ValueError("the output folder must differ from the model folder (it is never overwritten)")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = load_adapter(model_dir, dtype=torch.float32)
    reference = None
    if cfg.method in ("kl_min", "vkd") or (cfg.method == "npo" and reference_dir is None):
        reference = load_adapter(model_dir, dtype=torch.float32)
    elif cfg.method == "npo":
        reference = load_adapter(reference_dir, dtype=torch.float32)
    f_pool = forget_examples(data, rng, refusal=cfg.method in ("idk", "smfa"))
    f_batches = batches_by_modality(f_pool, cfg.batch_size, rng)
    r_pool = retain_examples(data, rng, cfg.not_retained) if cfg.method in _NEEDS_RETAIN else []
    if cfg.method == "vkd":  # images only: the portraits to stop recognising, the images to keep
        f_pool = [e for e in f_pool if e.image is not None]
        r_pool = [e for e in r_pool if e.image is not None]
        f_batches = batches_by_modality(f_pool, cfg.batch_size, rng)
    if cfg.method == "smfa":  # a FEW retain examples, as in the paper
        r_pool = [r_pool[i] for i in rng.permutation(len(r_pool))[:cfg.smfa_retain]]
    r_batches = batches_by_modality(r_pool, cfg.batch_size, rng) if r_pool else []
    steps = max(1, round(cfg.epochs * len(f_batches)))
    params = [p for p in model.model.parameters()]
    for p in params:
        p.requires_grad_(True)
    if cfg.method == "vkd":
        inner = model.model.model
        visual = {id(p) for m in (inner.vision_tower, inner.multi_modal_projector) for p in m.parameters()}
        for p in params:
            p.requires_grad_(id(p) in visual)
        params = [p for p in params if p.requires_grad]
    mask = None
    if cfg.method == "mmunlearner":
        mask = saliency_mask(model, [f_pool[i] for i in rng.permutation(len(f_pool))],
                             [r_pool[i] for i in rng.permutation(len(r_pool))])
        steps *= 2  # every forget step is followed by a retain step
    if cfg.method == "smfa":
        steps *= 2  # the forgetting run, then the anchor run
    losses, start = [], time.time()

    def train(loss_at: Callable[[int], torch.Tensor], total: int, done: int = 0) -> None:
        report = None if progress is None else (lambda step, loss: progress(done + step, steps, loss))
        optimise(model, params, loss_at, total, cfg.lr, mask, losses, report, should_stop)

    def forget_step(step: int) -> torch.Tensor:
        if cfg.method == "vkd":
            pixels = lambda b: torch.stack([model.to_pixels(e.image) for e in b])  # noqa: E731
            return vkd_loss(model, reference, pixels(f_batches[step % len(f_batches)]),
                            pixels(r_batches[step % len(r_batches)]), cfg.retain_weight)
        if mask is not None and step % 2:
            return cfg.retain_weight * model.answer_nll(_encode(model, r_batches[step // 2 % len(r_batches)])).mean()
        i = step // 2 if mask is not None else step
        fb = _encode(model, f_batches[i % len(f_batches)])
        rb = _encode(model, r_batches[i % len(r_batches)]) if r_batches and mask is None else None
        return baseline_loss(cfg, model, fb, rb, reference)

    smfa_kept = None
    if cfg.method == "smfa":
        half = steps // 2
        anchor_step = lambda step: model.answer_nll(_encode(model, r_batches[step % len(r_batches)])).mean()  # noqa: E731
        smfa_kept = smfa_runs(model, lambda: train(forget_step, half), lambda: train(anchor_step, half, done=half),
                              cfg.smfa_k)
    else:
        train(forget_step, steps)  # optimise leaves the model in eval mode
    out.mkdir(parents=True, exist_ok=True)
    for f in Path(model_dir).iterdir():
        if f.is_file() and f.name not in _WEIGHT_FILES:
            shutil.copy(f, out / f.name)  # tokenizer, image processor, world.json
    model.model.to(torch.float16).save_pretrained(out)
    (out / "unlearning.json").write_text(json.dumps({
        "baseline": asdict(cfg), "source": str(model_dir), "forget": data.forget_ids, "data": data.name,
        "reference": str(reference_dir) if reference_dir else ("original" if reference is not None else None),
        "steps": steps, "seconds": round(time.time() - start, 1),
        "updated_fraction": None if mask is None and smfa_kept is None else
        round(float(sum(m.sum() for m in (mask or smfa_kept).values())
                    / sum(m.numel() for m in (mask or smfa_kept).values())), 4),
        "loss_every_10": [round(float(np.mean(losses[i:i + 10])), 4) for i in range(0, len(losses), 10)],
    }, indent=2))
    return out


# ---------------------------------------------------------------- relearning attack

RELEARN_ATTRIBUTES = ("name", "birthplace", "occupation")  # fine-tuned on; the other attributes are held out


@dataclass(frozen=True)
class RelearnConfig:
    """The attacker's fixed budget (benchmark.md, "Relearning")."""

    steps: int = 40
    lr: float = 1e-4
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self):
        if not (1 <= self.steps <= 10_000 and self.lr > 0 and self.batch_size > 0):
            raise ValueError("relearning needs 1-10000 steps, a positive lr and a positive batch size")


def cloze_recall(adapter: VLMAdapter, examples: Sequence[Example]) -> float:
    """Share of cloze examples whose greedy reply contains the answer (the MLLMU cloze metric)."""
    from core.activations import Prompt
    from core.evaluation import Query, mean_score
    cloze = [e for e in examples if e.kind == "cloze"]
    if not cloze:
        raise ValueError("no cloze examples to score")
    return mean_score(adapter, [Query(Prompt(e.prompt, e.image), "cloze",
                                              "image_text" if e.image is not None else "text_only", e.answer) for e in cloze],
                      max_new_tokens=8)


def relearn_split(pool: Sequence[Example]) -> tuple[list[Example], list[Example]]:
    """(shown, held out): the RELEARN_ATTRIBUTES facts are shown, the rest held out. Records
    without attribute labels (real MLLMU rows) alternate: of each subject's items of each kind,
    every other one is shown and the rest held out."""
    if any(e.attribute for e in pool):
        return ([e for e in pool if e.attribute in RELEARN_ATTRIBUTES],
                [e for e in pool if e.attribute not in RELEARN_ATTRIBUTES])
    shown, held = [], []
    for key in dict.fromkeys((e.person_id, e.kind) for e in pool):
        mine = [e for e in pool if (e.person_id, e.kind) == key]
        shown += mine[::2]
        held += mine[1::2]
    # without labels, another kind's item can state a held-out cloze answer ("... was born in Prague."
    # next to "born in [Blank]" -> Prague): those are not shown, or the attack teaches what it scores.
    # Not \b: it never matches before "$85,000" or after "U.S.", and those answers were shown
    scored: dict = {}
    for e in held:
        if e.kind == "cloze" and e.answer.strip():
            scored.setdefault(e.person_id, []).append(re.compile(rf"(?<!\w){re.escape(e.answer.strip())}(?!\w)", re.I))
    shown = [e for e in shown if not any(a.search(f"{e.prompt} {e.answer}") for a in scored.get(e.person_id, ()))]
    return shown, held


def relearn(model_dir: str | Path, data: ForgetData, cfg: RelearnConfig = RelearnConfig(),
            progress: Callable[[int, int, float], None] | None = None) -> dict:
    """Relearning attack on a (weight-edited) model, in memory: fine-tune a copy on the forget
    people's RELEARN_ATTRIBUTES facts for a fixed budget, then score cloze on their OTHER
    attributes, which the attack never shows. Why: if those come back, unlearning hid the
    knowledge instead of removing it; the retain-only model under the same budget is the
    reference for what the attack teaches by itself. Nothing is saved."""
    from core.models.load import load_adapter
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = load_adapter(model_dir, dtype=torch.float32)
    shown, held_out = relearn_split(forget_examples(data, rng))
    if not shown:
        raise ValueError("every fact of the forget subjects restates a held-out cloze answer: the relearning "
                         "attack has nothing to show that it does not also score; give more facts per subject")
    before = {"held_out": cloze_recall(model, held_out), "shown": cloze_recall(model, shown)}
    batches = batches_by_modality(shown, cfg.batch_size, rng)
    optimise(model, list(model.model.parameters()),
             lambda step: model.answer_nll(_encode(model, batches[step % len(batches)])).mean(), cfg.steps, cfg.lr,
             progress=None if progress is None else (lambda step, loss: progress(step, cfg.steps, loss)))
    after = {"held_out": cloze_recall(model, held_out), "shown": cloze_recall(model, shown)}
    return {"model": str(model_dir), "budget": asdict(cfg), "relearned_attributes": list(RELEARN_ATTRIBUTES),
            "before": before, "after": after}
