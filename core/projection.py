"""2-D projections of activations with the erasure direction overlaid.

PCA is the default: exact, deterministic and instant (scikit-learn's full SVD of an N x d
matrix). UMAP is opt-in: numba compiles its kernels for ~15-35 s on first use, so the app warms it in
the background at start-up (`warm_umap`), keeps each fitted map, and has numba keep the
compiled kernels on disk (`_cache_umap_kernels`): a second process on the same install loads
them in about a second instead of compiling again.
"""

from __future__ import annotations

import sys
import threading
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
    """PCA of (N, d) activations to 2-D (scikit-learn's exact solver); `direction` (d,) is
    projected onto the same axes.

    Signs are fixed (largest loading positive) so that the picture does not flip between runs."""
    from sklearn.decomposition import PCA
    X = acts.double()
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"PCA needs an (N >= 2, d) matrix of activations, got {tuple(X.shape)}")
    n = min(2, *X.shape)
    pca = PCA(n_components=n, svd_solver="full").fit(X.numpy())
    comps = torch.zeros(2, X.shape[1], dtype=X.dtype)
    comps[:n] = torch.from_numpy(pca.components_)
    for i in range(2):
        j = comps[i].abs().argmax()
        if comps[i, j] < 0:
            comps[i] = -comps[i]
    explained = torch.zeros(2, dtype=X.dtype)
    explained[:n] = torch.from_numpy(pca.explained_variance_ratio_)
    mean = torch.from_numpy(pca.mean_)
    arrow = None if direction is None else direction.double() @ comps.T
    return Projection((X - mean) @ comps.T, comps, mean, explained, arrow)


_KERNELS_CACHED = False
_KERNELS_LOCK = threading.Lock()


def _cache_umap_kernels() -> None:
    """Ask numba to keep UMAP's compiled kernels on disk. umap-learn compiles most of its kernels
    without numba's `cache=True` (pynndescent caches its own), so every new process, each app
    restart, each test process, spent ~13 s compiling the same code. `enable_caching` is the call
    numba's decorator makes for `cache=True`; it must come before a kernel's first compilation,
    and numba checks each cached kernel against its source file's timestamp when it loads it
    (in the package's __pycache__, or a per-user folder where that is read-only)."""
    global _KERNELS_CACHED
    import umap  # noqa: F401  (imports its kernel modules)
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher
    with _KERNELS_LOCK:  # the start-up warm-up and a visitor's first map can both get here
        if _KERNELS_CACHED:
            return
        _KERNELS_CACHED = True  # tried once per process, whatever comes of it
        for name, module in list(sys.modules.items()):
            if name.split(".")[0] in ("umap", "pynndescent"):
                for kernel in list(vars(module).values()):
                    if isinstance(kernel, CPUDispatcher) and isinstance(kernel._cache, NullCache):
                        try:
                            kernel.enable_caching()
                        except RuntimeError:  # no writable cache folder (numba: "no locator available")
                            return  # compiled per process, as before


def umap_model(acts: torch.Tensor, seed: int = 0, n_neighbors: int = 15):
    """A seeded UMAP fitted on (N, d) activations; `.embedding_` holds the (N, 2) coordinates and
    `.transform(new)` places new activations (the current input) without refitting."""
    import umap  # heavy import, opt-in
    _cache_umap_kernels()
    X = acts.double().numpy()
    if X.ndim != 2 or X.shape[0] < 4:
        raise ValueError(f"UMAP needs an (N >= 4, d) matrix of activations, got {X.shape}")
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, X.shape[0] - 1), random_state=seed,
                        n_jobs=1, init="spectral" if X.shape[0] > 10 else "random")
    reducer.fit(X)
    return reducer


def umap_2d(acts: torch.Tensor, seed: int = 0, n_neighbors: int = 15) -> torch.Tensor:
    """(N, 2) UMAP embedding, seeded. Slow on first use in a process (numba JIT, ~10-30 s):
    call `warm_umap` off the critical path. No arrow: UMAP is non-linear, a direction has no image."""
    import numpy as np
    return torch.from_numpy(np.asarray(umap_model(acts, seed, n_neighbors).embedding_, dtype=np.float64))


def warm_umap() -> None:
    """Compile UMAP's numba kernels (fit and transform) on a small problem, so that the first
    visitor who asks for the UMAP view does not wait for the JIT."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 8, generator=g, dtype=torch.float64)
    umap_model(X).transform(X[:2].numpy())
