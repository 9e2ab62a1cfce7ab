"""The toy-model trainer, on a miniature world and model (seconds), and the shipped model."""
import json

import numpy as np
import pytest
import torch

from core.models.load import load_adapter
from core.models.weights import state_hash
from core.toyworld.train import ToyModelConfig, _batches, eval_splits, load_world, refusal_sets, train_toy
from core.toyworld.world import WorldConfig

MINI_WORLD = WorldConfig(seed=3, n_people=6, n_real_scenes=2, n_train_scenes=4, images_per_person=2,
                         fact_repeats=1, option_drills=8, option_lookups=0, private_requests=0, mcq_per_question=1)
MINI_MODEL = ToyModelConfig(text_hidden=32, text_layers=2, text_heads=2, text_intermediate=64, vision_hidden=16,
                            vision_layers=1, vision_heads=2, steps=12, identity_steps=3, batch_size=8, warmup=2, seed=3,
                            focus_steps=0)


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    seen = []
    path = train_toy(out / "a", MINI_WORLD, MINI_MODEL, progress=lambda s, n, loss: seen.append(loss))
    return path, seen


def test_training_lowers_the_loss_and_saves_a_loadable_model(mini):
    path, losses = mini
    assert len(losses) == MINI_MODEL.steps
    assert losses[-1] < losses[0]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json",
                 "world.json", "training.json"):
        assert (path / name).is_file(), name
    a = load_adapter(path)
    assert a.family == "llava" and a.num_layers == 2 and a.dtype == torch.float32
    assert a.num_image_tokens() == (64 // 16) ** 2
    log = json.loads((path / "training.json").read_text())
    assert log["recipe"]["seed"] == 3 and log["excluded_ids"] == []


def test_training_is_reproducible_from_the_seed(mini, tmp_path):
    path, _ = mini
    again = train_toy(tmp_path / "b", MINI_WORLD, MINI_MODEL)
    assert state_hash(load_adapter(again).model) == state_hash(load_adapter(path).model)
    # bit-identical only at the same torch thread count, so the count is recorded
    assert json.loads((again / "training.json").read_text())["torch_threads"] == torch.get_num_threads()


def test_retain_only_model_excludes_the_forget_people(tmp_path, monkeypatch):
    """The log's excluded ids were all that was checked: a training phase handed `()` would have
    trained the twin on the forget people. Every example drawn for training is looked at."""
    from core.toyworld.world import World
    drawn, real = [], World.training_examples

    def spy(self, *args, **kw):
        out = real(self, *args, **kw)
        drawn.append((tuple(kw.get("exclude_ids", args[0] if args else ())), {e.person_id for e in out}))
        return out
    monkeypatch.setattr(World, "training_examples", spy)
    out = train_toy(tmp_path / "r", MINI_WORLD, ToyModelConfig(**{**MINI_MODEL.__dict__, "steps": 2}),
                    exclude_forget="forget_15")
    log = json.loads((out / "training.json").read_text())
    world = load_world(out)
    gone = [p.id for p in world.forget_people("forget_15")]
    assert log["excluded_ids"] == gone
    assert drawn and all(set(excluded) == set(gone) and not people & set(gone) for excluded, people in drawn)


def test_world_and_eval_splits_come_back_from_the_model_folder(mini):
    path, _ = mini
    world = load_world(path)
    assert [p.name for p in world.people] == [p.name for p in load_world(path).people]
    splits = eval_splits(world, "forget_15")
    assert set(splits) == {"forget", "test", "retain", "real"}
    forget_ids = {r.id for r in splits["forget"]}
    assert forget_ids == {r.id for r in splits["test"]} and not forget_ids & {r.id for r in splits["retain"]}
    refusals = refusal_sets(world, "forget_15")
    assert refusals["forget"] and all(p.question for p in refusals["forget"])


def test_training_can_continue_from_a_saved_model(mini, tmp_path, monkeypatch):
    from transformers import AutoTokenizer
    import core.toyworld.train as train
    path, _ = mini
    # a word added to the world's language since that model was trained shifts the ids after it:
    # the continued model must keep the words (and ids) it was trained with
    grown = train.world_vocabulary
    monkeypatch.setattr(train, "world_vocabulary", lambda world: ["Aardvark"] + grown(world))
    more = train_toy(tmp_path / "c", MINI_WORLD, ToyModelConfig(**{**MINI_MODEL.__dict__, "steps": 3}), init_from=path)
    assert AutoTokenizer.from_pretrained(more).get_vocab() == AutoTokenizer.from_pretrained(path).get_vocab()
    log = json.loads((more / "training.json").read_text())
    assert log["round"] == 1 and log["previous"]["recipe"]["steps"] == MINI_MODEL.steps
    other = WorldConfig(**{**MINI_WORLD.__dict__, "seed": 9})
    with pytest.raises(ValueError, match=rf"another world: seed {MINI_WORLD.seed} \(asked 9\); continue only"):
        train_toy(tmp_path / "d", other, MINI_MODEL, init_from=path)


def test_a_world_too_small_for_one_batch_is_refused_before_training(tmp_path):
    """A short batch is dropped: a world of one retained person gave the identity warm-up no batch
    at all, and training failed with a bare IndexError at its first step."""
    from core.toyworld.train import check_batches
    tiny = WorldConfig(seed=0, n_people=2, n_real_scenes=1)
    with pytest.raises(ValueError, match="identity warm-up of a model of 1 person gives no full batch of 32"):
        check_batches(tiny, ToyModelConfig(identity_steps=10), "forget_10")
    with pytest.raises(ValueError, match="--identity-steps 0"):
        train_toy(tmp_path / "m", tiny, ToyModelConfig(identity_steps=10), exclude_forget="forget_10")
    assert not (tmp_path / "m").exists()
    check_batches(tiny, ToyModelConfig(identity_steps=0, batch_size=4), "forget_10")  # a smaller batch fills
    # a continued model skips the warm-up: the same world trains on from a saved model
    first = train_toy(tmp_path / "a", tiny, ToyModelConfig(identity_steps=0, steps=1, focus_steps=0),
                      exclude_forget="forget_10")
    more = train_toy(tmp_path / "b", tiny, ToyModelConfig(identity_steps=10, steps=1, focus_steps=0),
                     exclude_forget="forget_10", init_from=first)
    assert json.loads((more / "training.json").read_text())["round"] == 1


def test_identity_warm_up_batches_only_ask_who_is_in_the_picture():
    from core.toyworld.world import make_world
    world = make_world(MINI_WORLD)
    warm = [e for b in _batches(world, 0, (), 4, identity_only=True) for e in b]
    full = [e for b in _batches(world, 0, (), 4) for e in b]
    assert warm and all(e.attribute == "name" and e.image is not None for e in warm)
    assert {e.kind for e in warm} == {"qa", "mcq", "gen", "cloze"}  # formats stay mixed
    assert any(e.image is None for e in full) and {e.attribute for e in full} > {"name"}


def test_eval_splits_for_hand_picked_people(mini):
    path, _ = mini
    world = load_world(path)
    ids = [world.people[0].id, world.people[4].id]
    splits = eval_splits(world, ids)
    assert [r.id for r in splits["forget"]] == ids == [r.id for r in splits["test"]]
    assert len(splits["retain"]) == len(world.people) - 2
    assert {p.tag for p in refusal_sets(world, ids)["forget"]} == set(ids)
    assert splits["forget"] == eval_splits(world, ids)["forget"]  # deterministic


def test_batches_never_mix_modalities():
    from core.toyworld.train import batches_by_modality
    world_free = [type("E", (), {"image": i % 3 or None})() for i in range(50)]
    batches = batches_by_modality(world_free, 8, np.random.default_rng(0))
    assert sum(len(b) for b in batches) == 50
    dropped = batches_by_modality(world_free, 8, np.random.default_rng(0), drop_last=True)
    assert all(len(b) == 8 for b in dropped) and sum(len(b) for b in dropped) == 48  # 33 image rows, 17 text
    assert all(len({e.image is None for e in b}) == 1 for b in batches)


def _text_model(folder, tokenizer, cfg: ToyModelConfig, heads: int | None = None):
    """A from-scratch text model of the toy model's text shape, saved with the given tokenizer."""
    from core.toyworld.pretrain import TextPretrainConfig, build_text_model
    text = build_text_model(TextPretrainConfig(hidden=cfg.text_hidden, layers=cfg.text_layers,
                                               heads=heads or cfg.text_heads, intermediate=cfg.text_intermediate),
                            tokenizer)
    text.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return text


def test_text_model_can_start_from_a_pretrained_llama(mini, tmp_path):
    from transformers import AutoTokenizer
    path, _ = mini
    tok = AutoTokenizer.from_pretrained(path)
    text = _text_model(tmp_path / "llama", tok, MINI_MODEL)
    out = train_toy(tmp_path / "t", MINI_WORLD, ToyModelConfig(**{**MINI_MODEL.__dict__, "steps": 0}),
                    text_init=tmp_path / "llama")
    model = load_adapter(out).model
    # saved in fp16, so compare with the fp16-rounded weights
    assert torch.equal(model.lm_head.weight, text.lm_head.weight.half().float())
    assert torch.equal(model.model.language_model.layers[1].self_attn.q_proj.weight,
                       text.model.layers[1].self_attn.q_proj.weight.half().float())
    assert json.loads((out / "training.json").read_text())["text_init"] == str(tmp_path / "llama")
    _text_model(tmp_path / "wide", tok, MINI_MODEL, heads=4)
    with pytest.raises(ValueError, match="num_attention_heads is 4"):
        train_toy(tmp_path / "u", MINI_WORLD, MINI_MODEL, text_init=tmp_path / "wide")
    with pytest.raises(FileNotFoundError, match="pretrain-text"):
        train_toy(tmp_path / "w", MINI_WORLD, MINI_MODEL, text_init=tmp_path / "missing")
    with pytest.raises(ValueError, match="not both"):
        train_toy(tmp_path / "w", MINI_WORLD, MINI_MODEL, text_init=tmp_path / "llama", init_from=path)
    from core.toyworld.vocab import build_tokenizer
    _text_model(tmp_path / "words", build_tokenizer(["some other words"]), MINI_MODEL)
    with pytest.raises(ValueError, match="another vocabulary"):
        train_toy(tmp_path / "v", MINI_WORLD, MINI_MODEL, text_init=tmp_path / "words")


def test_a_world_json_from_before_a_field_existed_loads_as_it_was_trained(tmp_path):
    """Models saved before option_lookups / private_requests / mcq_per_question existed were
    trained without them: loading their world.json must not pick up today's recipe defaults."""
    from dataclasses import asdict
    from core.toyworld.train import FIELDS_BEFORE_THEY_EXISTED, load_world_config
    old = {k: v for k, v in asdict(MINI_WORLD).items() if k not in FIELDS_BEFORE_THEY_EXISTED}
    (tmp_path / "world.json").write_text(json.dumps(old))
    loaded = load_world_config(tmp_path)
    assert (loaded.option_lookups, loaded.private_requests, loaded.mcq_per_question) == (0, 0, 1)
    assert WorldConfig().mcq_per_question == 3  # while a new world gets the current recipe
    (tmp_path / "world.json").write_text(json.dumps(asdict(MINI_WORLD)))
    assert load_world_config(tmp_path) == MINI_WORLD


@pytest.mark.parametrize("text", ["{not json", '{"people": 5}', "[1, 2]", '{"n_people": "many"}'])
def test_a_damaged_world_json_is_a_clear_error_naming_the_file(tmp_path, text):
    """A damaged world.json (or another tool's file of that name) was a JSONDecodeError or a TypeError
    from deep inside; the app would not start on such a folder."""
    from core.toyworld.train import load_world
    (tmp_path / "world.json").write_text(text)
    with pytest.raises(ValueError, match="world.json is not a toy world this workbench can read .*remove world.json"):
        load_world(tmp_path)


FOCUS = ToyModelConfig(**{**MINI_MODEL.__dict__, "steps": 4, "focus_steps": 3, "focus_name_mcqs": 2,
                          "focus_other_mcqs": 1, "focus_name_drills": 5})


def test_focus_phase_follows_the_main_phase_and_reruns_alone_from_a_saved_model(tmp_path):
    seen = []
    both = train_toy(tmp_path / "both", MINI_WORLD, FOCUS, progress=lambda s, n, loss: seen.append((s, n)))
    assert seen[-1] == (7, 7) and len(seen) == 7  # one bar over both phases
    log = json.loads((both / "training.json").read_text())
    assert log["recipe"]["focus_steps"] == 3 and len(log["loss_every_50"]) == 1
    main = train_toy(tmp_path / "main", MINI_WORLD, ToyModelConfig(**{**FOCUS.__dict__, "focus_steps": 0}))
    alone = train_toy(tmp_path / "alone", MINI_WORLD, ToyModelConfig(**{**FOCUS.__dict__, "steps": 0}), init_from=main)
    # the phase starts from the fp16 weights a saved model holds, so both routes give one model
    assert state_hash(load_adapter(alone).model) == state_hash(load_adapter(both).model)
    assert state_hash(load_adapter(main).model) != state_hash(load_adapter(both).model)


def test_focus_batches_add_picture_mcqs_and_name_drills():
    from core.toyworld.questions import IMAGE, PERSON_TEMPLATES, TRAIN, modalities
    from core.toyworld.world import make_world
    world = make_world(MINI_WORLD)
    plain = [e for b in _batches(world, 0, (), 1) for e in b]
    focus = [e for b in _batches(world, 0, (), 1, focus=FOCUS) for e in b]
    count = lambda examples, kind: sum(e.kind == kind for e in examples)  # noqa: E731
    names = len(PERSON_TEMPLATES["name"].question_set(TRAIN)) * len(world.people) * FOCUS.focus_name_mcqs
    others = sum(len(t.question_set(TRAIN)) for a, t in PERSON_TEMPLATES.items() if a != "name" and IMAGE in modalities(a))
    assert count(focus, "mcq") - count(plain, "mcq") == names + others * len(world.people) * FOCUS.focus_other_mcqs
    assert count(focus, "drill_mcq") - count(plain, "drill_mcq") == FOCUS.focus_name_drills
    assert len(focus) - len(plain) == names + others * len(world.people) + FOCUS.focus_name_drills
    # the batches still mix kinds: measured, single-kind batches stopped the model learning names
    assert len({e.kind for e in focus}) > 4
