"""PCA projection: exact axes, stable signs, the direction in the same plane."""
import pytest
import torch

from core.projection import pca_2d


def test_pca_recovers_the_dominant_axes_and_projects_the_direction():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 6, generator=g, dtype=torch.float64) * torch.tensor([5.0, 2.0, 0.1, 0.1, 0.1, 0.1])
    d = torch.tensor([1.0, 0, 0, 0, 0, 0], dtype=torch.float64)
    p = pca_2d(X, d)
    assert p.coords.shape == (200, 2)
    assert abs(abs(float(p.components[0, 0])) - 1) < 0.01 and abs(abs(float(p.components[1, 1])) - 1) < 0.01
    assert float(p.explained.sum()) > 0.99
    assert torch.allclose(p.arrow, d @ p.components.T)
    assert torch.allclose(p.project(X), p.coords)
    assert p.components[0].abs().argmax() == 0 and p.components[0, 0] > 0  # sign convention


def test_pca_is_deterministic_and_validates_input():
    X = torch.randn(10, 4)
    assert torch.equal(pca_2d(X).coords, pca_2d(X.clone()).coords)
    with pytest.raises(ValueError, match="N >= 2"):
        pca_2d(torch.randn(1, 4))


def test_umap_is_seeded_and_separates_two_clusters():
    from core.projection import umap_2d
    g = torch.Generator().manual_seed(0)
    X = torch.cat([torch.randn(20, 8, generator=g), torch.randn(20, 8, generator=g) + 8.0])
    a, b = umap_2d(X, seed=3), umap_2d(X, seed=3)
    assert a.shape == (40, 2) and torch.allclose(a, b)  # same seed, same picture
    ca, cb = a[:20].mean(0), a[20:].mean(0)
    spread = max(float(a[:20].std(0).norm()), float(a[20:].std(0).norm()))
    assert float((ca - cb).norm()) > 3 * spread
    with pytest.raises(ValueError, match="N >= 4"):
        umap_2d(torch.randn(3, 8))


def test_umap_kernels_are_kept_on_disk_for_the_next_process():
    """umap-learn compiles its own kernels without numba's cache: each new process (an app
    restart, a test process) compiled them again for ~13 s. After a fit they are on disk."""
    import os

    import umap.layouts
    import umap.umap_
    from core.projection import umap_2d
    umap_2d(torch.randn(30, 4, dtype=torch.float64))
    for kernel in (umap.umap_.smooth_knn_dist, umap.umap_.compute_membership_strengths,
                   umap.layouts._nb_optimize_layout_euclidean_single_epoch):
        assert kernel.signatures and os.path.exists(kernel._cache._cache_file._index_path)
