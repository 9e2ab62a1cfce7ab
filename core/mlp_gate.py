"""A small MLP gate: the paper's ablation against the linear null-space gate.

Why it exists: MLLMEraser (Table/ablation "linear vs MLP") reports that a non-linear gate
fitted to the same forget (-> 1) and retain (-> 0) activations does worse than the closed-form
linear gate constrained to the retain null space. This module fits that alternative so the sweep
can measure the claim on our own model: per layer, standardise h, then Linear -> GELU -> Linear,
trained with MSE on the gate targets (full batch, Adam, seeded).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MLPGates:
    """Callable gate for core.steering.steer: (layer, (B, d) float32) -> (B,)."""

    nets: dict[int, torch.nn.Sequential]
    mean: dict[int, torch.Tensor]
    scale: dict[int, torch.Tensor]

    @torch.no_grad()
    def __call__(self, layer: int, h: torch.Tensor) -> torch.Tensor:
        if layer not in self.nets:
            return torch.zeros(h.shape[0], device=h.device)
        x = (h.float().cpu() - self.mean[layer]) / self.scale[layer]
        return self.nets[layer](x).squeeze(-1).to(h.device)


def fit_mlp_gates(H_forget: torch.Tensor, H_retain: torch.Tensor, layers: list[int], hidden: int = 64,
                  steps: int = 400, lr: float = 3e-3, weight_decay: float = 1e-3, seed: int = 0) -> MLPGates:
    """Fit one MLP per layer on (N, L, d) activations: forget -> 1, retain -> 0 (MSE, like the
    ridge objective of the linear gate, but unconstrained and non-linear)."""
    if not layers:
        raise ValueError("fit at least one layer")
    g = torch.Generator().manual_seed(seed)
    nets, means, scales = {}, {}, {}
    for l in layers:
        X = torch.cat([H_forget[:, l], H_retain[:, l]]).float()
        y = torch.cat([torch.ones(H_forget.shape[0]), torch.zeros(H_retain.shape[0])])
        mean, scale = X.mean(0), X.std(0).clamp_min(1e-6)
        X = (X - mean) / scale
        d = X.shape[1]
        net = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 1))
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (1 / max(1, p.shape[-1])) ** 0.5)
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
        for _ in range(steps):
            loss = torch.nn.functional.mse_loss(net(X).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        nets[l], means[l], scales[l] = net.eval(), mean, scale
    return MLPGates(nets, means, scales)
