"""The MLP-gate ablation: it fits the gate targets and plugs into steering like the linear gate."""
import torch

from conftest import random_image, tiny_adapter
from core.mlp_gate import fit_mlp_gates
from core.steering import SteeringConfig, hook_count, steer


def test_mlp_gate_fits_targets_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    Hf = torch.randn(30, 2, 16, generator=g) + 2.0
    Hr = torch.randn(60, 2, 16, generator=g)
    gates = fit_mlp_gates(Hf, Hr, layers=[1], steps=300, seed=0)
    f, r = gates(1, Hf[:, 1]), gates(1, Hr[:, 1])
    assert f.mean() > 0.8 and r.abs().mean() < 0.2
    assert torch.equal(gates(0, Hf[:, 0]), torch.zeros(30))  # unfitted layer: gate 0
    again = fit_mlp_gates(Hf, Hr, layers=[1], steps=300, seed=0)
    assert torch.allclose(again(1, Hf[:, 1]), f)


def test_callable_gate_steers_and_is_recorded():
    a = tiny_adapter("llava")
    L, d = a.num_layers, a.hidden_size
    direction = torch.randn(L, d, generator=torch.Generator().manual_seed(1)) * 3
    calls = []

    def gate(layer, h):
        calls.append((layer, tuple(h.shape)))
        return torch.full((h.shape[0],), 2.0)

    batch = a.encode(["what is this ?"], [random_image(0)])
    plain = a.generate(batch, 6)
    with steer(a, direction, SteeringConfig((0.0, 1.0), "prefill"), gate=gate) as h:
        moved = a.generate(batch, 6)
    assert moved != plain and {c[0] for c in calls} == {0, 1} and all(c[1] == (1, d) for c in calls)
    assert float(h.gates[1][0]) == 2.0 and hook_count(a) == 0
