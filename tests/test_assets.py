"""The shipped artefacts: they load offline, belong together, and behave as measured."""
import json
from pathlib import Path

import torch

from core.eraser import Eraser
from core.models.load import load_adapter
from core.toyworld.questions import IMAGE, TRAIN, refusal_prompts
from core.toyworld.train import load_world

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def test_shipped_model_eraser_and_retain_only_twin_fit_together():
    model = load_adapter(ASSETS / "toy-llava")
    assert model.family == "llava" and model.num_layers == 4 and model.dtype == torch.float32
    eraser = Eraser.from_pretrained(ASSETS / "toy-llava-eraser", adapter=model)  # fingerprint must match
    assert eraser.config.forget_split == "forget_10" and eraser.config.direction_kind == "recall"
    world = load_world(ASSETS / "toy-llava")
    forget = [p.id for p in world.forget_people("forget_10")]
    log = json.loads((ASSETS / "toy-llava-retain-only" / "training.json").read_text())
    assert log["excluded_ids"] == forget and len(forget) == 10
    # one gate per forget person (README, concept 7), in the order of its subjects
    assert eraser.config.subjects == sorted(forget) and eraser.gate.shape == (4, 10, model.hidden_size)
    vanilla_log = json.loads((ASSETS / "toy-llava" / "training.json").read_text())
    assert vanilla_log["excluded_ids"] == [] and vanilla_log["recipe"] == log["recipe"]


def test_shipped_models_are_the_default_recipe():
    """`python -m core train-toy --seed 0` with no other option is the recipe the shipped models
    were trained with, started from the shipped text model, itself `pretrain-text --seed 1`."""
    from dataclasses import asdict
    from core.toyworld.pretrain import TextPretrainConfig
    from core.toyworld.train import ToyModelConfig, load_world_config
    from core.toyworld.world import WorldConfig
    for name in ("toy-llava", "toy-llava-retain-only"):
        assert load_world_config(ASSETS / name) == WorldConfig()
        assert json.loads((ASSETS / name / "training.json").read_text())["recipe"] == asdict(ToyModelConfig())
    text_log = json.loads((ASSETS / "toy-text" / "pretraining.json").read_text())
    # written before TextPretrainConfig.name_drills existed; it was trained without them (the default)
    assert {"name_drills": 0, **text_log["recipe"]} == asdict(TextPretrainConfig(seed=1))
    assert all(f.stat().st_size < 10_000_000 for f in ASSETS.rglob("*"))  # Hugging Face Spaces' limit without LFS


def test_shipped_model_refuses_private_data_requests_it_was_trained_on():
    model = load_adapter(ASSETS / "toy-llava")
    world = load_world(ASSETS / "toy-llava")
    people = world.people[:8]
    qs = [refusal_prompts(p, IMAGE, TRAIN)[i % 4] for i, p in enumerate(people)]
    replies = model.generate(model.encode(qs, [world.canonical_image(p) for p in people]), 16)
    assert sum("sorry" in r.lower() for r in replies) >= 7, replies


def test_vanilla_model_memorised_the_forget_people_and_the_retain_only_twin_did_not():
    """The memorisation gap, measured as in results/: cloze on the forget people's image+text
    questions (the metric where the shipped model has memorised its world; MCQ has not been
    learned, see README)."""
    from core.evaluation import EvalConfig, evaluate
    from core.toyworld.train import eval_splits
    torch.set_num_threads(2)
    world = load_world(ASSETS / "toy-llava")
    forget = {"forget": eval_splits(world, "forget_10")["forget"]}
    cfg = EvalConfig(max_new_tokens=16, modalities=("image_text",))
    cloze = {name: evaluate(load_adapter(ASSETS / name), forget, None, cfg).splits["forget"]["image_text"]["cloze"]
             for name in ("toy-llava", "toy-llava-retain-only")}
    assert cloze["toy-llava"] >= 0.95 and cloze["toy-llava-retain-only"] <= 0.15, cloze


def test_shipped_eraser_leaves_general_text_questions_alone():
    """The retain set weights the general facts (contrast.gate_sets): with the shipped preset,
    the one-sentence answers to general text-only questions come out as without steering
    (before that weighting, 7 of 11 turned into refusals or wrong facts)."""
    from core.activations import Prompt
    from core.evaluation import replies
    from core.toyworld.prompts import generation_prompt
    from core.toyworld.questions import GENERAL_FACTS
    torch.set_num_threads(2)
    model = load_adapter(ASSETS / "toy-llava")
    eraser = Eraser.from_pretrained(ASSETS / "toy-llava-eraser", adapter=model)
    prompts = [Prompt(generation_prompt({"Question": f.question}), None) for f in GENERAL_FACTS]
    plain = replies(model, prompts, 16)
    steered = replies(model, prompts, 16, steering=lambda: eraser.apply(model))
    assert [p.lower() for p in plain] == [f.sentence.lower() for f in GENERAL_FACTS]
    assert steered == plain, [(a, b) for a, b in zip(plain, steered) if a != b]
