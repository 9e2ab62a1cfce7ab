"""Loading from folders, clear errors, fingerprints and weight hashes."""

import pytest
import torch

from conftest import random_image
from core.models.load import ModelNotFoundError, fingerprint, load_adapter, resolve, state_hash
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


def test_fingerprint_tells_checkpoints_apart():
    a, _, _ = build_tiny("llava", seed=0)
    b, _, _ = build_tiny("llava", seed=1)
    assert fingerprint(a) == fingerprint(build_tiny("llava", seed=0)[0])
    assert fingerprint(a) != fingerprint(b)
