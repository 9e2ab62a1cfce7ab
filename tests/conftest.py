"""Shared test set-up: offline hub, one torch thread (2-core machines busy-wait otherwise)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("PIP_NO_INDEX", "1")  # transformer-lens may try to pip install torchvision

import torch  # noqa: E402

torch.set_num_threads(1)

import functools  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from core.models.load import adapter_from_model  # noqa: E402
from core.models.tiny import TINY_FAMILIES, build_tiny  # noqa: E402


@functools.lru_cache(maxsize=None)
def tiny_adapter(family: str, layers: int = 2):
    """One tiny random adapter per family per test session (building takes well under a second)."""
    model, tok, proc = build_tiny(family, seed=0, layers=layers)
    return adapter_from_model(model, tok, proc)


def random_image(seed: int = 0, size: tuple[int, int] = (48, 48)) -> Image.Image:
    rng = np.random.RandomState(seed)
    return Image.fromarray((rng.rand(size[1], size[0], 3) * 255).astype("uint8"))


@pytest.fixture(params=TINY_FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def mini_toy(tmp_path_factory):
    """A miniature toy model (6 people, 2 layers) trained for a few steps, with its world: the
    app and CLI tests run the real pipeline on it in seconds."""
    from core.toyworld.train import ToyModelConfig, train_toy
    from core.toyworld.world import WorldConfig
    world = WorldConfig(seed=3, n_people=6, n_real_scenes=2, n_train_scenes=4, images_per_person=2, fact_repeats=1,
                        option_drills=8, option_lookups=0, private_requests=0, mcq_per_question=1)
    model = ToyModelConfig(text_hidden=32, text_layers=2, text_heads=2, text_intermediate=64, vision_hidden=16,
                           vision_layers=1, vision_heads=2, steps=12, identity_steps=3, batch_size=8, warmup=2, seed=3,
                           focus_steps=0)
    return train_toy(tmp_path_factory.mktemp("mini_toy") / "model", world, model)
