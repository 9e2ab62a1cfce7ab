"""Loading from folders and hub ids, devices, dtypes and shards, and the errors that say what to do."""

import pytest
import torch

from conftest import random_image
from core.models.load import ModelNotFoundError, load_adapter, resolve
from core.models.weights import fingerprint, state_hash
from core.models.tiny import build_tiny, save_tiny


def test_save_and_load_round_trip_every_family(family, tmp_path):
    folder = save_tiny(family, tmp_path / family)
    a = load_adapter(folder)
    assert a.family == family
    model, _, _ = build_tiny(family)
    assert state_hash(a.model) == state_hash(model)
    batch = a.encode(["what is this ?"], [random_image(0)])
    with torch.no_grad():
        assert torch.allclose(a.logits(batch), model(**a.forward_inputs(batch)).logits, atol=1e-5)


def test_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve(tmp_path / "empty")


def test_offline_hub_id_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="hub is offline") as info:
        resolve("llava-hf/llava-1.5-7b-hf")
    assert "--model DIR" in str(info.value)


def test_unsupported_model_type(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="not supported"):
        load_adapter(tmp_path)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return save_tiny("llava", tmp_path_factory.mktemp("saved") / "model")


def _drop_tensor(folder, name):
    from safetensors.torch import load_file, save_file
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors[name]
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _edit_config(folder, change):
    import json
    cfg = json.loads((folder / "config.json").read_text())
    change(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


def _template_file(folder, text):
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    (folder / "chat_template.json").write_text(text)


def _no_template(folder):
    import json
    for name in ("chat_template.jinja", "chat_template.json"):
        (folder / name).unlink(missing_ok=True)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "config.json").write_text("{model_type: llava"), r"config.json is not valid JSON .*copy config.json"),
    (lambda f: (f / "model.safetensors").unlink(), r"the weights in .* cannot be loaded \(OSError"),
    (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:5000]),
     r"cannot be loaded \(SafetensorError.*download or copy the weights again"),
    (lambda f: [(f / n).unlink() for n in ("tokenizer.json", "tokenizer_config.json")],
     r"the tokenizer or image processor of .* cannot be loaded .*copy tokenizer.json"),
    # these loaded: a checkpoint missing a tensor (or another model's weights) with that tensor drawn at
    # random, and templates that failed at the first prompt or as a KeyError / JSONDecodeError
    (lambda f: _drop_tensor(f, "language_model.model.layers.1.mlp.down_proj.weight"),
     r"lack 1 tensor\(s\) the model needs \(model.language_model.layers.1.mlp.down_proj.weight\), which would start "
     r"from random values"),
    (lambda f: _edit_config(f, lambda c: c["text_config"].update(intermediate_size=c["text_config"].get(
        "intermediate_size", 64) * 2)), r"do not fit its config.json, or it is malformed"),
    (lambda f: _template_file(f, "{}"), r"chat_template.json holds no chat_template text"),
    (lambda f: _template_file(f, "{oops"), r"chat_template.json is not valid JSON"),
    (lambda f: _no_template(f), r"has no chat template .* llava prompts need one"),
])
def test_a_damaged_model_folder_names_what_to_copy_again(saved, tmp_path, damage, message):
    """Damaged checkpoints are a ValueError with the fix (the CLI and the app report those), not a
    safetensors or tokenizers traceback; the folder itself is left as it was."""
    import shutil

    from core.models.load import ModelLoadError
    folder = shutil.copytree(saved, tmp_path / "model")
    damage(folder)
    before = sorted((p.name, p.stat().st_size) for p in folder.iterdir())
    with pytest.raises(ModelLoadError, match=message):
        load_adapter(folder)
    assert sorted((p.name, p.stat().st_size) for p in folder.iterdir()) == before


def test_a_device_this_machine_lacks_is_named_before_loading(saved):
    with pytest.raises(ValueError, match="'junk' is not a device name"):
        load_adapter(saved, device="junk")
    if torch.cuda.is_available():  # a GPU machine loads there
        assert load_adapter(saved, device="cuda").device.type == "cuda"
    else:  # torch's own error was an AssertionError from deep inside the load
        with pytest.raises(ValueError, match="asks for a GPU, but this torch sees none.*--device cpu"):
            load_adapter(saved, device="cuda")


# ---------------------------------------------------------------- devices, dtypes, shards (issue 23)
def _eraser_for(a, seed=0):
    from core.eraser import Eraser, EraserConfig
    g = torch.Generator().manual_seed(seed)
    L, d = a.num_layers, a.hidden_size
    return Eraser(torch.randn(L, d, generator=g, dtype=torch.float64) * 2,
                  torch.randn(L, d, generator=g, dtype=torch.float64), EraserConfig(strength=1.5))


@pytest.fixture(scope="module")
def three_layers(tmp_path_factory):
    return save_tiny("llava", tmp_path_factory.mktemp("llava3") / "model", layers=3)


def test_a_model_with_blocks_offloaded_to_disk_steers_captures_and_runs_pgd_like_the_whole_one(three_layers, tmp_path):
    """accelerate's offload (no second device needed): block 1 and the embeddings on disk, the
    rest on the CPU. Steering, capture and PGD put their tensors on each block's device and give
    what the whole model gives."""
    from core.activations import Prompt, collect
    from core.pgd import PGDConfig, run_pgd
    whole = load_adapter(three_layers)
    lm = "model.language_model"
    shards = {"model.vision_tower": "cpu", "model.multi_modal_projector": "cpu", f"{lm}.embed_tokens": "disk",
              f"{lm}.layers.0": "cpu", f"{lm}.layers.1": "disk", f"{lm}.layers.2": "cpu", f"{lm}.norm": "cpu",
              "lm_head": "cpu"}
    sharded = load_adapter(three_layers, device_map=shards, offload_folder=tmp_path / "offload")
    assert any(p.device.type == "meta" for p in sharded.model.parameters())  # really offloaded
    assert fingerprint(sharded.model) == fingerprint(whole.model)  # offloaded weights count too
    eraser = _eraser_for(whole)
    prompts = [Prompt("what is this ?", random_image(0)), Prompt("who is the person in this picture ?", random_image(1))]
    results = []
    for a in (whole, sharded):
        batch = a.encode([p.question for p in prompts], [p.image for p in prompts])
        with torch.no_grad(), eraser.apply(a, layers=[1, 2]) as h:
            logits = a.logits(batch)
        pgd = run_pgd(a, [random_image(2)], ["what is this ?"], ["red"], PGDConfig(eps=8 / 255, step_size=2 / 255,
                                                                                 steps=3, seed=0))
        shared = prompts + [Prompt("who is it ?", prompts[0].image)]  # two questions about one picture
        results.append((logits, h.gates[1], collect(a, shared, position="mean"),
                        collect(a, shared, position="mean", share_starts=False), pgd.loss, pgd.image))
    for mine, ref in zip(results[1], results[0]):
        assert torch.allclose(torch.as_tensor(mine), torch.as_tensor(ref), atol=1e-5)
    assert torch.allclose(results[1][2], results[1][3], atol=1e-5)  # the picture's start, run once on the shards
    # a floored gate read over layers 1-2 and applied at layer 0: generation scouts, then runs blocks
    # 0-2 again steered with their KV cache layers emptied (block 1's weights on disk)
    from core.steering import SteeringConfig, steer
    g = torch.Generator().manual_seed(3)
    r, u = torch.randn(3, whole.hidden_size, generator=g), torch.randn(3, whole.hidden_size, generator=g)
    u = -u  # with this seed both rows then read a gate above the floor
    cfg = SteeringConfig((4.0, 0.0, 0.0), "latched", floor=1e-3)
    scouted = []
    for a in (whole, sharded):
        batch = a.encode([p.question for p in prompts], [p.image for p in prompts])
        with steer(a, r, cfg, u, gate_from=(1, 2)) as h:
            scouted.append((a.generate(batch, 4), h.gates[0]))
    assert bool((cfg.coefficient(scouted[0][1]) > 0).any())  # the gate opened: the blocks ran again
    assert scouted[1][0] == scouted[0][0] and torch.allclose(scouted[1][1], scouted[0][1], atol=1e-5)


def test_bfloat16_weights_steer_like_float32_and_take_the_float32_eraser(three_layers, tmp_path):
    """The same checkpoint loaded in bfloat16: one fingerprint, so an eraser fitted in float32 is
    accepted; its gates (read in float32) agree within 0.05 and the steering moves the logits the
    same way (cosine > 0.99 between the two steering effects)."""
    from core.eraser import Eraser
    f32 = load_adapter(three_layers)
    bf16 = load_adapter(three_layers, dtype="bfloat16")
    assert bf16.dtype == torch.bfloat16 and f32.dtype == torch.float32
    assert fingerprint(bf16.model) == fingerprint(f32.model)
    eraser = _eraser_for(f32)
    eraser.config.model = {"name_or_path": str(three_layers), "fingerprint": f32.info().fingerprint}
    eraser.save_pretrained(tmp_path / "e")
    loaded = Eraser.from_pretrained(tmp_path / "e", adapter=bf16)  # not refused
    effects, gates = [], []
    for a in (f32, bf16):
        batch = a.encode(["who is the person in this picture ?"], [random_image(3)])
        with torch.no_grad():
            plain = a.logits(batch).float()
            with loaded.apply(a, layers=[1, 2]) as h:
                steered = a.logits(batch).float()
        effects.append((steered - plain)[0, -1])
        gates.append(torch.stack([h.gates[1], h.gates[2]]).float())
    assert torch.allclose(gates[0], gates[1], atol=0.05)
    assert torch.nn.functional.cosine_similarity(effects[0], effects[1], dim=0) > 0.99
    with pytest.raises(ValueError, match="dtype 'int8'"):
        load_adapter(three_layers, dtype="int8")


def test_erasers_saved_with_the_older_fingerprint_are_still_checked(three_layers, tmp_path):
    from core.eraser import Eraser, ModelMismatchError
    from core.models.weights import legacy_fingerprint
    a = load_adapter(three_layers)
    eraser = _eraser_for(a)
    eraser.config.model = {"name_or_path": "old", "fingerprint": legacy_fingerprint(a.model)}
    eraser.save_pretrained(tmp_path / "old")
    Eraser.from_pretrained(tmp_path / "old", adapter=a)  # accepted
    other = load_adapter(save_tiny("llava", tmp_path / "other", seed=1, layers=3))
    with pytest.raises(ModelMismatchError, match="fingerprint"):
        Eraser.from_pretrained(tmp_path / "old", adapter=other)


def test_the_cli_loads_on_a_device_map_and_in_a_dtype(three_layers, tmp_path):
    import json

    from core.__main__ import build_parser, load_model
    lm = "model.language_model"
    shards = {"model.vision_tower": "cpu", "model.multi_modal_projector": "cpu", f"{lm}.embed_tokens": "cpu",
              f"{lm}.layers.0": "cpu", f"{lm}.layers.1": "disk", f"{lm}.layers.2": "cpu", f"{lm}.norm": "cpu",
              "lm_head": "cpu"}
    args = build_parser().parse_args(["evaluate", "--model", str(three_layers), "--device-map", json.dumps(shards),
                                      "--offload-folder", str(tmp_path / "off"), "--dtype", "float32"])
    a = load_model(args)
    assert a.model.hf_device_map[f"{lm}.layers.1"] == "disk" and a.dtype == torch.float32
    args = build_parser().parse_args(["fit", "--model", str(three_layers), "--dtype", "bfloat16", "--out", "x"])
    assert load_model(args).dtype == torch.bfloat16


def test_auto_precision_is_float32_on_a_cpu_device_map_too_and_device_with_device_map_is_refused(three_layers,
                                                                                                  tmp_path):
    """dtype "auto" fell back to float32 on a CPU only without a device_map: a half-precision
    checkpoint loaded with device_map={"": "cpu"} stayed in float16 (slow, or failing, matmuls);
    a device given with a device_map was ignored without a word."""
    half = load_adapter(three_layers, dtype="float16")
    half.model.save_pretrained(tmp_path / "fp16")
    for f in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "chat_template.jinja",
              "special_tokens_map.json", "processor_config.json"):
        if (three_layers / f).is_file():
            (tmp_path / "fp16" / f).write_bytes((three_layers / f).read_bytes())
    assert load_adapter(tmp_path / "fp16", device_map={"": "cpu"}).dtype == torch.float32
    if not torch.cuda.is_available():
        assert load_adapter(tmp_path / "fp16", device_map="auto").dtype == torch.float32
    with pytest.raises(ValueError, match="give device .* or device_map .*, not both"):
        load_adapter(three_layers, device="cpu", device_map={"": "cpu"})
