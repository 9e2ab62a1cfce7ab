"""The layer x strength tuner: grid, constraints, choice."""
import pytest
import torch

from conftest import random_image, tiny_adapter
from core.activations import Prompt
from core.eraser import Eraser, EraserConfig
from core.tuner import tune


def _eraser(a):
    g = torch.Generator().manual_seed(0)
    L, d = a.num_layers, a.hidden_size
    return Eraser(torch.randn(L, d, generator=g, dtype=torch.float64) * 5,
                  torch.randn(L, d, generator=g, dtype=torch.float64), EraserConfig())


def test_grid_and_constraints():
    a = tiny_adapter("llava")
    forget = [Prompt("who is it ?", random_image(i)) for i in range(3)]
    retain = [Prompt("what colour is the shape ?", random_image(10 + i)) for i in range(4)]
    res = tune(a, _eraser(a), forget, retain, [[0], [1], [0, 1]], [0.0, 2.0], mode="latched", max_new_tokens=4,
               min_fluency=0.0)
    assert len(res.grid) == 6
    zero = [c for c in res.grid if c.strength == 0.0]
    assert all(c.retain == 1.0 and c.ok for c in zero)  # no steering: every retain answer unchanged
    assert res.best is not None and res.best.ok
    assert res.best.forget == max(c.forget for c in res.grid if c.ok)
    assert res.to_json()["mode"] == "latched"
    with pytest.raises(ValueError, match="forget and retain"):
        tune(a, _eraser(a), [], retain, [[1]], [1.0])
    with pytest.raises(InterruptedError):
        tune(a, _eraser(a), forget, retain, [[1]], [1.0], should_stop=lambda: True)
