"""2-D projections of activations with the erasure direction overlaid.

PCA is the default: exact, deterministic and instant (an SVD of an N x d matrix). UMAP is
opt-in (numba compiles for ~20 s on first use) and is left to callers that can run it in the
background.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Projection:
    coords: torch.Tensor  # (N, 2)
    components: torch.Tensor  # (2, d) principal axes
    mean: torch.Tensor  # (d,)
    explained: torch.Tensor  # (2,) share of variance per axis
    arrow: torch.Tensor | None  # (2,) the direction in the same axes (no centring: it is a difference)

    def project(self, acts: torch.Tensor) -> torch.Tensor:
        """Place new activations (e.g. the current input) in the same plane."""
        return (acts.double() - self.mean) @ self.components.T


def pca_2d(acts: torch.Tensor, direction: torch.Tensor | None = None) -> Projection:
    """PCA of (N, d) activations to 2-D; `direction` (d,) is projected onto the same axes.

    Signs are fixed (largest loading positive) so that the picture does not flip between runs."""
    X = acts.double()
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"PCA needs an (N >= 2, d) matrix of activations, got {tuple(X.shape)}")
    mean = X.mean(0)
    U, S, Vh = torch.linalg.svd(X - mean, full_matrices=False)
    comps = Vh[:2].clone()
    if comps.shape[0] < 2:
        comps = torch.cat([comps, torch.zeros(2 - comps.shape[0], X.shape[1], dtype=X.dtype)])
    for i in range(2):
        j = comps[i].abs().argmax()
        if comps[i, j] < 0:
            comps[i] = -comps[i]
    var = S ** 2
    explained = (var[:2] / var.sum().clamp_min(1e-30))
    explained = torch.cat([explained, torch.zeros(2 - explained.numel(), dtype=X.dtype)])
    arrow = None if direction is None else direction.double() @ comps.T
    return Projection((X - mean) @ comps.T, comps, mean, explained, arrow)


def umap_2d(acts: torch.Tensor, seed: int = 0, n_neighbors: int = 15) -> torch.Tensor:
    """(N, 2) UMAP embedding, seeded. Slow on first use in a process (numba JIT, ~10-30 s):
    call it off the critical path. No arrow: UMAP is non-linear, a direction has no image."""
    import numpy as np
    import umap  # heavy import, opt-in
    X = acts.double().numpy()
    if X.ndim != 2 or X.shape[0] < 4:
        raise ValueError(f"UMAP needs an (N >= 4, d) matrix of activations, got {X.shape}")
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, X.shape[0] - 1), random_state=seed,
                        n_jobs=1, init="spectral" if X.shape[0] > 10 else "random")
    return torch.from_numpy(np.asarray(reducer.fit_transform(X), dtype=np.float64))
