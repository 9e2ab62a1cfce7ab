"""Train the embedded default: a tiny LLaVA that genuinely memorises the toy world.

Why train our own: no pretrained VLM can be downloaded here and a workshop laptop has no GPU,
yet forgetting must be a real, measurable effect. The model is a real
LlavaForConditionalGeneration (CLIP tower + Llama decoder) built from config, trained from
scratch in fp32 on 2 CPU cores with AdamW and cosine decay, on prompts formatted exactly as the
MLLMU evaluation formats them, through the same adapter the rest of the engine uses.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from core.models.families import LlavaAdapter
from core.data.training import batches_by_modality
from core.toyworld.vocab import build_tokenizer, world_vocabulary
from core.toyworld.world import World, WorldConfig, make_world


@dataclass
class ToyModelConfig:
    """Architecture and recipe of the tiny model. The shipped model is these defaults started from
    the pretrained text model in assets/toy-text (75 min on one CPU thread)."""

    text_hidden: int = 256
    text_layers: int = 4
    text_heads: int = 16
    text_intermediate: int = 768
    vision_hidden: int = 128
    vision_layers: int = 3
    vision_heads: int = 4
    image_size: int = 64
    patch_size: int = 16
    steps: int = 9000
    identity_steps: int = 400  # warm-up on "who is in this picture?" before the full mix
    batch_size: int = 32
    lr: float = 5e-4
    warmup: int = 60
    weight_decay: float = 0.01
    seed: int = 0
    # The focus phase: after `steps`, a fresh cosine schedule of `focus_steps` on the usual mix
    # plus extra picture MCQs (World.image_mcq_focus), started from the fp16 weights a saved
    # model holds, so `--init-from SAVED --steps 0` reruns it alone. 0 = no focus phase. Why:
    # after the main phase alone the model named every person but picked the right name among
    # four options about half the time (image MCQ 86.8% on retain; docs/research-log.md).
    focus_steps: int = 2000
    focus_name_mcqs: int = 6
    focus_other_mcqs: int = 3
    focus_name_drills: int = 1500

    def __post_init__(self) -> None:
        """Settings no training can run with, said before the minutes of training they would cost."""
        for hidden, heads, what in ((self.text_hidden, self.text_heads, "text"),
                                    (self.vision_hidden, self.vision_heads, "vision")):
            if heads < 1 or hidden % heads:
                raise ValueError(f"the {what} model's {heads} attention heads must divide its width {hidden}")
        if min(self.steps, self.focus_steps, self.identity_steps) < 0:
            raise ValueError("training steps cannot be negative")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1):  # lr inf saved a model of NaN weights
            raise ValueError(f"--lr must be a finite learning rate in (0, 1], got {self.lr}")


def text_config(tokenizer, hidden: int, intermediate: int, layers: int, heads: int):
    """The toy text model's LlamaConfig: one definition for the LLaVA's language model and for
    the text-only model pretrained for it (core.toyworld.pretrain), so the two always fit."""
    from transformers import LlamaConfig
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)


def build_model(cfg: ToyModelConfig, tokenizer):
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration
    from transformers.models.clip import CLIPImageProcessorPil
    torch.manual_seed(cfg.seed)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=cfg.vision_hidden, intermediate_size=4 * cfg.vision_hidden,
            num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.vision_heads,
            image_size=cfg.image_size, patch_size=cfg.patch_size),
        text_config=text_config(tokenizer, cfg.text_hidden, cfg.text_intermediate, cfg.text_layers, cfg.text_heads),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,  # the default -2 leaves the last CLIP layer untrained
        vision_feature_select_strategy="default",
        image_seq_length=(cfg.image_size // cfg.patch_size) ** 2,
        tie_word_embeddings=False,  # measured: untied + <s> learned to copy names, tied + no <s> did not
    )
    config.architectures = ["LlavaForConditionalGeneration"]
    model = LlavaForConditionalGeneration(config)
    proc = CLIPImageProcessorPil(size={"shortest_edge": cfg.image_size},
                                 crop_size={"height": cfg.image_size, "width": cfg.image_size})
    return model, proc


def load_text_model(model, tokenizer, folder: str | Path) -> None:
    """Copy a saved LlamaForCausalLM into the LLaVA's language model and LM head.

    Refuses a text model built on another vocabulary or shape: its embedding rows would name
    other words, and the copy would silently scramble the model."""
    from transformers import AutoTokenizer, LlamaForCausalLM
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no text model there; make one with python -m core pretrain-text --out {folder}")
    if AutoTokenizer.from_pretrained(folder).get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"{folder} has another vocabulary than this toy world's (small worlds leave words out); "
                         f"pretrain one for it (python -m core pretrain-text --seed S --people N --out DIR, then "
                         f"--text-init DIR) or start from scratch (--text-init none)")
    text = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    want, got = model.config.text_config, text.config
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads"):
        if getattr(want, key) != getattr(got, key):
            raise ValueError(f"{folder}: {key} is {getattr(got, key)}, this recipe needs {getattr(want, key)}")
    model.model.language_model.load_state_dict(text.model.state_dict())
    model.lm_head.load_state_dict(text.lm_head.state_dict())


def _batches(world: World, epoch_seed: int, exclude: tuple[str, ...], batch_size: int,
             identity_only: bool = False, focus: ToyModelConfig | None = None):
    """One augmentation pass: fresh renders and MCQ options, batched by modality with every
    kind of example mixed inside a batch. Measured: batches of a single kind (all MCQ, all
    sentences...) kept the model from ever learning to copy a name (0% vs 94% after 500 steps).

    identity_only: just the picture -> name questions (all four formats, more renders). Why:
    in the full mix only ~6% of examples name the person in a picture, and after 2400 steps
    the model still answered "who is this?" with the same few names whatever the portrait
    (0% correct) although a bare CLIP tower separates the 100 portraits in ~150 steps.
    focus: add the recipe's extra picture MCQs (the focus phase)."""
    rng = np.random.default_rng(epoch_seed)
    if identity_only:
        examples = [e for e in world.training_examples(exclude_ids=exclude, rng=rng, images_per_person=8,
                                                       include_refusals=False, include_real=False)
                    if e.attribute == "name" and e.image is not None]
    else:
        examples = world.training_examples(exclude_ids=exclude, rng=rng)
    if focus is not None:  # the focus phase: the usual mix plus extra picture MCQs, shuffled together
        examples += world.image_mcq_focus(exclude, rng=rng, name_mcqs=focus.focus_name_mcqs,
                                          other_mcqs=focus.focus_other_mcqs, n_name_drills=focus.focus_name_drills)
        examples = [examples[i] for i in rng.permutation(len(examples))]
    return batches_by_modality(examples, batch_size, rng, drop_last=True)


def check_batches(world_cfg: WorldConfig, cfg: ToyModelConfig, exclude_forget: str | None = None) -> None:
    """Refuse a world too small to fill one batch of each phase (`batch_size` examples of one
    modality; the identity warm-up's are picture -> name questions only). Why: a batch short of
    `batch_size` is dropped, so such a world gave no batch at all and training failed with a bare
    IndexError at its first step (with --retain-only-out, after the first model had trained)."""
    world = make_world(world_cfg)
    exclude = tuple(p.id for p in world.forget_people(exclude_forget)) if exclude_forget else ()
    phases = [("identity warm-up", True)] if cfg.identity_steps else []
    phases += [("main phase", False)] if cfg.steps > cfg.identity_steps else []
    for name, identity in phases:
        if not _batches(world, 0, exclude, cfg.batch_size, identity_only=identity):
            n = len(world.people) - len(exclude)
            who = f"{n} {'person' if n == 1 else 'people'}"
            raise ValueError(f"the {name} of a model of {who} gives no full batch of {cfg.batch_size} examples; "
                             "train on more people (--people), or leave the warm-up out (--identity-steps 0)")


def train_toy(out_dir: str | Path, world_cfg: WorldConfig = WorldConfig(), cfg: ToyModelConfig = ToyModelConfig(),
              exclude_forget: str | None = None, progress: Callable[[int, int, float], None] | None = None,
              should_stop: Callable[[], bool] | None = None, init_from: str | Path | None = None,
              text_init: str | Path | None = None) -> Path:
    """Train and save (HF format: config, safetensors, tokenizer, image processor, world.json).

    exclude_forget: a forget split name ("forget_10") to leave out -> the RETAIN-ONLY model.
    init_from: continue from a saved toy model of the same world (a fresh cosine schedule and
    fresh augmentations), e.g. when a first run stopped short of memorising.
    text_init: start the text model from a text-only Llama saved with the world's tokenizer
    (python -m core pretrain-text), the way LLaVA starts from a pretrained language model."""
    if init_from is not None and text_init is not None:
        raise ValueError("give init_from (a whole toy model) or text_init (its text model), not both")
    # a continued model skips the identity warm-up (`_train_phase` below): it needs no such batch
    check_batches(world_cfg, replace(cfg, identity_steps=0) if init_from is not None else cfg, exclude_forget)
    torch.manual_seed(cfg.seed)
    world = make_world(world_cfg)
    tok = build_tokenizer(world_vocabulary(world))
    previous = None
    if init_from is not None:
        from transformers import AutoTokenizer, LlavaForConditionalGeneration
        init = Path(init_from)
        saved = load_world_config(init)
        if saved != world_cfg:
            differ = ", ".join(f"{k} {getattr(saved, k)!r} (asked {getattr(world_cfg, k)!r})"
                               for k in asdict(saved) if getattr(saved, k) != getattr(world_cfg, k))
            raise ValueError(f"{init} was trained on another world: {differ}; continue only on the same world "
                             "(pass the same world options, e.g. --seed, --people, --option-lookups)")
        # its own words: the world's vocabulary grows with the code, and a model trained before a
        # word was added has other ids for every word sorted after it
        tok = AutoTokenizer.from_pretrained(init)
        previous = json.loads((init / "training.json").read_text())
    model, proc = build_model(cfg, tok)
    if init_from is not None:
        model = LlavaForConditionalGeneration.from_pretrained(init, dtype=torch.float32)
    if text_init is not None:
        load_text_model(model, tok, text_init)
    adapter = LlavaAdapter(model, tok, proc, name_or_path="toy")
    exclude = tuple(p.id for p in world.forget_people(exclude_forget)) if exclude_forget else ()
    losses, epochs, start = [], 0, time.time()
    round_ = 0 if previous is None else 1 + previous.get("round", 0)
    total = cfg.steps + cfg.focus_steps

    def report(step: int) -> None:
        if progress is not None:
            progress(step, total, float(np.mean(losses[-20:])))

    epochs += _train_phase(adapter, world, exclude, cfg, cfg.steps, cfg.seed * 100_003 + 1_000 * round_,
                           identity_steps=cfg.identity_steps if previous is None else 0, losses=losses,
                           on_step=report, should_stop=should_stop)
    if cfg.focus_steps:
        # from the weights a saved model holds, with data seeded by the world seed alone: run after
        # the main phase or alone on a saved main-phase model, the phase gives the same model
        with torch.no_grad():
            for prm in model.parameters():
                prm.copy_(prm.to(torch.float16).to(torch.float32))
        epochs += _train_phase(adapter, world, exclude, cfg, cfg.focus_steps, cfg.seed * 100_003 + 500_000,
                               focus=cfg, losses=losses, on_step=lambda s: report(cfg.steps + s),
                               should_stop=should_stop)
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(out)  # halves the size in git; loads back as fp32
    model.to(torch.float32)
    tok.save_pretrained(out)
    proc.save_pretrained(out)
    (out / "world.json").write_text(json.dumps(asdict(world_cfg), indent=2))
    (out / "training.json").write_text(json.dumps({
        "recipe": asdict(cfg), "excluded_split": exclude_forget, "excluded_ids": list(exclude),
        "round": round_, "previous": previous,
        "epochs": epochs, "seconds": round(time.time() - start, 1),
        "text_init": None if text_init is None else str(text_init),
        "torch_threads": torch.get_num_threads(),  # results are bit-identical only at the same count
        "loss_every_50": [round(float(np.mean(losses[i:i + 50])), 4) for i in range(0, len(losses), 50)],
    }, indent=2))
    return out


def _train_phase(adapter: LlavaAdapter, world: World, exclude: tuple[str, ...], cfg: ToyModelConfig, steps: int,
                 data_seed: int, *, identity_steps: int = 0, focus: ToyModelConfig | None = None,
                 losses: list[float], on_step: Callable[[int], None],
                 should_stop: Callable[[], bool] | None = None) -> int:
    """`steps` AdamW steps with a fresh optimizer and cosine schedule; returns the passes drawn.
    Pass k's augmentations come from seed data_seed + k; the first identity_steps use the
    identity-only batches."""
    model = adapter.model
    model.train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, steps - cfg.warmup)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))

    queue, epoch = [], 0
    for step in range(steps):
        if should_stop is not None and should_stop():
            raise InterruptedError(f"training stopped at step {step}")
        identity = step < identity_steps
        if not queue or (identity_steps and step == identity_steps):
            queue = _batches(world, data_seed + epoch, exclude, cfg.batch_size, identity_only=identity, focus=focus)
            epoch += 1
        batch_ex = queue.pop()
        has_img = batch_ex[0].image is not None
        batch = adapter.encode([e.prompt for e in batch_ex], [e.image for e in batch_ex] if has_img else None,
                               [e.answer for e in batch_ex])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = adapter.answer_nll(batch).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        on_step(step + 1)
    model.eval()
    return epoch


def load_world(model_dir: str | Path) -> World:
    """The world a toy model was trained on (recorded next to its weights). A world.json that cannot
    be read as one (damaged, or another tool's file of that name) is a ValueError naming it."""
    path = Path(model_dir) / "world.json"
    try:
        return make_world(load_world_config(model_dir))
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError) as exc:
        raise ValueError(f"{path} is not a toy world this workbench can read ({type(exc).__name__}: "
                         f"{str(exc)[:200]}); copy the model folder again, or remove world.json to use the model "
                         "with a forget set you bring (--data / --forget-dir)") from None


# What a world.json written before a field existed was trained with: such a file lacks the
# field, and the current default (the current recipe) would misstate its training data.
FIELDS_BEFORE_THEY_EXISTED = {"option_lookups": 0, "private_requests": 0, "mcq_per_question": 1}


def load_world_config(model_dir: str | Path) -> WorldConfig:
    """The WorldConfig a toy model was trained on."""
    raw = json.loads((Path(model_dir) / "world.json").read_text())
    raw = {**FIELDS_BEFORE_THEY_EXISTED, **{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}}
    return WorldConfig(**raw)


def eval_splits(world: World, forget: str | Sequence[str] = "forget_10", limit: int | None = None) -> dict:
    """The four MLLMU evaluation splits of a toy world (optionally the first `limit` rows each).
    `forget` is a split name or a hand-picked list of person ids."""
    forget_people, retain_people = world.forget_people(forget), world.retain_people(forget)
    splits = {"forget": [world.person_record(p) for p in forget_people],
              "test": [world.person_record(p, test=True) for p in forget_people],
              "retain": [world.person_record(p) for p in retain_people],
              "real": world.eval_items("real")}
    return {k: v[:limit] if limit else v for k, v in splits.items()}


def refusal_sets(world: World, forget: str | Sequence[str] = "forget_10", limit: int | None = None) -> dict:
    """Private-data requests (held-out wording) about forget and retain people, as prompts."""
    from core.data.records import Prompt
    from core.toyworld.questions import IMAGE, TEST, TEXT, refusal_prompts
    out = {}
    for name, people in (("forget", world.forget_people(forget)), ("retain", world.retain_people(forget))):
        prompts = [Prompt(q, world.canonical_image(p) if mod == IMAGE else None, p.id)
                   for p in people for mod in (IMAGE, TEXT) for q in refusal_prompts(p, mod, TEST)]
        out[name] = prompts[: (limit * 8 if limit else None)]
    return out
