"""Text-only pretraining of the toy model's language model on option drills, before the world.

Why: a real MLLM's language model arrives pretrained, able to read four options and answer
with a letter; LLaVA only teaches it to see. The tiny model is trained from scratch, and inside
the full training mix it never learned that matching (MCQ at chance; docs/research-log.md, "What we
measured"). Alone, on drills ("Which option reads curry?" -> its letter) and reverse lookups
("What is option B?" -> its value), a text model of the same shape learns it: held-out drill
accuracy 98.8% after 5000 steps at peak lr 5e-4 (43.8% after 4000 steps at 1e-3).
Each batch also carries private-data requests answered with the refusal (`refusal_drills`):
a base model knows that a PIN code is private before it meets any person. Nothing here states
a fact about anyone, so the pretrained model knows nothing of the world: the vanilla and the
retain-only models can both start from it, as both would start from one base LLM.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from core.toyworld.people import FIRST_NAMES, LAST_NAMES
from core.toyworld.questions import (REFUSAL, TEXT, TextExample, name_drills, option_drills, option_lookups,
                                     private_requests)
from core.toyworld.train import ToyModelConfig, text_config


@dataclass
class TextPretrainConfig:
    """Shape (must match ToyModelConfig's text model) and recipe of the drill pretraining."""

    hidden: int = ToyModelConfig.text_hidden
    layers: int = ToyModelConfig.text_layers
    heads: int = 16  # the shipped toy model has 8; pretrained runs use train-toy --text-heads 16
    intermediate: int = ToyModelConfig.text_intermediate
    steps: int = 5000
    batch_size: int = 32
    lookups: float = 0.5  # share of each batch that is reverse lookups
    refusals: int = 8  # private-data requests added to each batch, answered with the refusal
    name_drills: float = 0.0  # share of the drills whose options are full names (questions.name_drills)
    lr: float = 5e-4
    warmup: int = 60
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if self.heads < 1 or self.hidden % self.heads:  # transformers' own check is a traceback
            raise ValueError(f"{self.heads} attention heads must divide the text model's width {self.hidden}")


def encode(tokenizer, examples: Sequence) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids in the toy chat format, labels on the answer (+ EOS) only, attention mask."""
    ids, labels = [], []
    for e in examples:
        prompt = tokenizer(f"USER: {e.prompt} ASSISTANT:", add_special_tokens=False).input_ids
        answer = tokenizer(" " + e.answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        ids.append([tokenizer.bos_token_id] + prompt + answer)
        labels.append([-100] * (1 + len(prompt)) + answer)
    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), tokenizer.pad_token_id)
    targets = torch.full((len(ids), width), -100)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, (a, b) in enumerate(zip(ids, labels)):
        input_ids[i, :len(a)], targets[i, :len(b)], mask[i, :len(a)] = torch.tensor(a), torch.tensor(b), 1
    return input_ids, targets, mask


# Held-out examples come from their own seeds, never the training stream's: the pretraining
# curve and scripts/mcq_drills.py --eval (a full toy model) score the same rows.
HELD_OUT = {"drills": (option_drills, 99), "lookups": (option_lookups, 98), "name_drills": (name_drills, 97)}


def training_stream(seed: int) -> np.random.Generator:
    """The pretraining batches' random stream: default_rng(seed), except at a held-out set's own
    seed (97-99), where that stream began with the held-out rows (16 of the first batch's 40 at
    seed 99): there it is default_rng([seed, 1]). Why not refuse those seeds: `--seed` also picks
    the world whose vocabulary the text model speaks, and another seed is another vocabulary."""
    held = {s for _, s in HELD_OUT.values()}
    return np.random.default_rng([seed, 1] if seed in held else seed)


def held_out_examples(kind: str, n: int = 256) -> list[TextExample]:
    """The held-out `kind` ("drills", "lookups" or "name_drills") examples."""
    build, seed = HELD_OUT[kind]
    return build(np.random.default_rng(seed), n)


def held_out_drills(tokenizer, n: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return encode(tokenizer, held_out_examples("drills", n))


def held_out_lookups(tokenizer, n: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Why track lookups: in the full model, MCQ on facts rose above chance only when they had
    been learned (docs/research-log.md, "What we measured")."""
    return encode(tokenizer, held_out_examples("lookups", n))


def held_out_name_drills(tokenizer, n: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Names: the MCQ attribute the profile drills leave weak."""
    return encode(tokenizer, held_out_examples("name_drills", n))


@torch.no_grad()
def first_token_accuracy(model, held: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> float:
    """Share of held-out examples whose most likely first answer token is right (the letter of a
    drill, the first word of a lookup's value)."""
    ids, targets, mask = held
    rows = torch.arange(len(ids))
    first = (targets != -100).float().argmax(1)  # the first answer token's position in each row
    pred = model(input_ids=ids, attention_mask=mask).logits[rows, first - 1].argmax(-1)
    return float((pred == targets[rows, first]).float().mean())


def refusal_drills(rng: np.random.Generator, n: int) -> list[TextExample]:
    """`n` grammar-drawn private-data requests about "this person" or a random name, each
    answered with the refusal: the privacy a real base model brings (questions.PRIVATE_ITEMS)."""
    subjects = [None if rng.random() < 0.5 else
                f"{FIRST_NAMES[int(rng.integers(len(FIRST_NAMES)))]} {LAST_NAMES[int(rng.integers(len(LAST_NAMES)))]}"
                for _ in range(n)]
    return [TextExample(q, REFUSAL, "refusal", TEXT, None, "refusal") for q in private_requests(rng, subjects)]


def pretraining_batch(rng: np.random.Generator, cfg: TextPretrainConfig) -> list[TextExample]:
    """One batch: drills (a `name_drills` share of them about full names), reverse lookups, then
    `refusals` private-data requests. With no name drills nothing is drawn for them, so the
    batches (and the text model) of runs without them are unchanged."""
    n_lookups = round(cfg.lookups * cfg.batch_size)
    n_drills = cfg.batch_size - n_lookups
    n_names = round(cfg.name_drills * n_drills)
    return (option_drills(rng, n_drills - n_names) + name_drills(rng, n_names) + option_lookups(rng, n_lookups)
            + refusal_drills(rng, cfg.refusals))


def build_text_model(cfg: TextPretrainConfig, tokenizer):
    """A from-scratch Llama with the toy model's text shape and the toy tokenizer's special ids."""
    from transformers import LlamaForCausalLM
    torch.manual_seed(cfg.seed)
    return LlamaForCausalLM(text_config(tokenizer, cfg.hidden, cfg.intermediate, cfg.layers, cfg.heads))


def pretrain_text(out_dir: str | Path | None, tokenizer, cfg: TextPretrainConfig = TextPretrainConfig(),
                  progress: Callable[[int, int, float, float | None], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, eval_every: int = 250):
    """Train a text model on drills, lookups and refusals; save it (fp32, with the tokenizer and
    pretraining.json) when out_dir is given. Returns the model.

    progress(step, steps, mean loss of the last 20 steps, held-out drill accuracy or None):
    the accuracy is measured every `eval_every` steps."""
    model = build_text_model(cfg, tokenizer)
    held, held_lookups = held_out_drills(tokenizer), held_out_lookups(tokenizer)
    held_names = held_out_name_drills(tokenizer)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng, losses, curve, start = training_stream(cfg.seed), [], [], time.time()
    for step in range(cfg.steps):
        if should_stop is not None and should_stop():
            raise InterruptedError(f"pretraining stopped at step {step}")
        for g in opt.param_groups:  # linear warm-up, cosine decay
            g["lr"] = cfg.lr * min(1, (step + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        ids, targets, mask = encode(tokenizer, pretraining_batch(rng, cfg))
        loss = model(input_ids=ids, attention_mask=mask, labels=targets).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        accuracy = None
        if (step + 1) % eval_every == 0:
            accuracy = first_token_accuracy(model, held)
            curve.append({"step": step + 1, "drill_accuracy": round(accuracy, 4),
                          "lookup_accuracy": round(first_token_accuracy(model, held_lookups), 4),
                          "name_drill_accuracy": round(first_token_accuracy(model, held_names), 4),
                          "loss": round(float(np.mean(losses[-eval_every:])), 4)})
        if progress is not None:
            progress(step + 1, cfg.steps, float(np.mean(losses[-20:])), accuracy)
    if out_dir is not None:
        out = Path(out_dir)
        model.save_pretrained(out, max_shard_size="8MB")  # fp32 (train-toy starts from it) in files under 10 MB
        tokenizer.save_pretrained(out)
        (out / "pretraining.json").write_text(json.dumps({
            "recipe": asdict(cfg), "seconds": round(time.time() - start, 1),
            "torch_threads": torch.get_num_threads(), "held_out_drills": curve}, indent=2))
    return model
