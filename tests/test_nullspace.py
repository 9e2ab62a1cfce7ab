"""The null-space ridge fit: rank-one factors equal the paper's full matrix, gates behave."""
import pytest
import torch

from core.nullspace import choose_k, fit_gate, full_matrix, gate_scores, joint_gate_scores, null_space


def _data(seed=0, d=64, n_r=30, n_f=8):
    g = torch.Generator().manual_seed(seed)
    H_r = torch.randn(n_r, d, generator=g, dtype=torch.float64)
    H_f = torch.randn(n_f, d, generator=g, dtype=torch.float64) + 0.5
    r = torch.randn(d, generator=g, dtype=torch.float64)
    return H_f, H_r, r


@pytest.mark.parametrize("ratio,gamma,w,n_r", [(0.3, 0.1, 0.0, 80), (0.5, 1.0, 0.0, 80), (0.4, 10.0, 0.0, 80),
                                              (1.0, 1.0, 0.5, 80), (0.7, 0.1, 2.0, 80), (0.7, 0.5, 0.5, 40),
                                              (0.3, 0.0, 0.0, 80)])
def test_rank_one_equals_full_matrix(ratio, gamma, w, n_r):
    """Where the paper's construction is well defined (more retain rows than the width, or a null
    space larger than the exact one), the fit equals its full d x d matrix; n_r = 40 < d = 64
    with the retain rows in the ridge goes through the N x N side."""
    H_f, H_r, r = _data(n_r=n_r)
    W = full_matrix(H_f, H_r, r, ratio=ratio, gamma=gamma, retain_weight=w)
    fit = fit_gate(H_f, H_r, ratio=ratio, gamma=gamma, retain_weight=w)
    assert torch.allclose(torch.outer(fit.u, r), W, atol=1e-10, rtol=1e-8)
    assert torch.linalg.matrix_rank(W).item() == 1
    # steering(h) = h W == (h . u) r for any h
    h = torch.randn(5, 64, dtype=torch.float64)
    assert torch.allclose(h @ W, (h @ fit.u)[:, None] * r[None], atol=1e-12)


def test_threshold_mode_equals_full_matrix():
    H_f, H_r, r = _data(1)
    W = full_matrix(H_f, H_r, r, ratio=None, threshold=1e-8, gamma=0.1)
    fit = fit_gate(H_f, H_r, ratio=None, threshold=1e-8, gamma=0.1)
    assert fit.k == 64 - 30  # exactly the zero eigenvalues of a rank-30 Gram matrix
    assert torch.allclose(torch.outer(fit.u, r), W, atol=1e-12)


def test_gates_near_one_on_forget_and_zero_on_retain():
    H_f, H_r, _ = _data(2)
    fit = fit_gate(H_f, H_r, ratio=0.3, gamma=0.01)
    assert fit.retain_gates.abs().max() < 1e-8  # retain rows are orthogonal to the null space
    assert (fit.forget_gates - 1).abs().max() < 0.05
    assert fit.leakage < 1e-8
    assert 0 < fit.forget_energy < 1


def test_retain_rows_pull_retain_gates_toward_zero():
    # full-rank retain activations: the null space cannot hold them out, the retain rows can
    H_f, H_r, _ = _data(4, n_r=200)
    plain = fit_gate(H_f, H_r, ratio=1.0, gamma=0.1)
    weighted = fit_gate(H_f, H_r, ratio=1.0, gamma=0.1, retain_weight=1.0)
    assert weighted.retain_gates.pow(2).mean() < 0.5 * plain.retain_gates.pow(2).mean()
    assert weighted.forget_gates.mean() > 0.4 > 4 * weighted.retain_gates.abs().mean()  # the gate still opens
    # it is the ridge with the retain rows as target-0 rows, solved directly
    X = torch.cat([H_f, H_r])
    y = torch.cat([torch.ones(len(H_f)), torch.zeros(len(H_r))]).double()
    u = torch.linalg.solve(X.T @ X + 0.1 * torch.eye(64, dtype=torch.float64), X.T @ y)
    assert torch.allclose(weighted.u, u, atol=1e-10)


def _subjects(noise_seed=6, d=16, k=4, per=12, n_r=300):
    """k forget subjects and 60 retained ones, each a cluster around its own centre (the same
    centres for every noise seed): the forget-vs-retain boundary is not linear, each
    subject-vs-rest boundary nearly is."""
    centres = torch.randn(k + 60, d, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2
    g = torch.Generator().manual_seed(noise_seed)
    H_f = torch.cat([centres[j] + 0.3 * torch.randn(per, d, generator=g, dtype=torch.float64) for j in range(k)])
    who = torch.randint(k, k + 60, (n_r,), generator=g)
    H_r = centres[who] + 0.3 * torch.randn(n_r, d, generator=g, dtype=torch.float64)
    return H_f, H_r, torch.arange(k).repeat_interleave(per)


def test_subject_gates_are_one_ridge_per_subject_against_everyone_else():
    H_f, H_r, labels = _subjects()
    w, gamma = 0.5, 0.1
    fit = fit_gate(H_f, H_r, ratio=1.0, gamma=gamma, retain_weight=w, subjects=labels)
    d = H_f.shape[1]
    assert fit.u.shape == (4, d)
    for j in range(4):  # direct weighted ridge: subject j -> 1, retain and other subjects -> 0 (weight w)
        own, rest = H_f[labels == j], torch.cat([H_r, H_f[labels != j]])
        A = own.T @ own + w * rest.T @ rest + gamma * torch.eye(d, dtype=torch.float64)
        assert torch.allclose(fit.u[j], torch.linalg.solve(A, own.sum(0)), atol=1e-9)
    assert torch.allclose(fit.forget_gates, gate_scores(H_f, fit.u)) and torch.allclose(
        fit.forget_gates, (H_f @ fit.u.T).max(1).values)
    # one subject is exactly the plain fit
    one = fit_gate(H_f, H_r, ratio=0.5, gamma=gamma, retain_weight=w, subjects=torch.zeros(len(H_f), dtype=torch.long))
    assert torch.allclose(one.u[0], fit_gate(H_f, H_r, ratio=0.5, gamma=gamma, retain_weight=w).u, atol=1e-10)


def test_subject_gates_separate_clustered_subjects_better_than_one_gate():
    H_f, H_r, labels = _subjects()
    single = fit_gate(H_f, H_r, ratio=1.0, gamma=1.0, retain_weight=0.3)
    per = fit_gate(H_f, H_r, ratio=1.0, gamma=1.0, retain_weight=0.3, subjects=labels)
    new_f, new_r, _ = _subjects(noise_seed=7)  # held-out rows of the same people
    opened = {name: tuple((gate_scores(H, fit.u) > 0.5).double().mean() for H in (new_f, new_r))
              for name, fit in (("single", single), ("per", per))}
    # measured: single gate opens for 60% of the forget rows and 12.7% of the retain rows; per subject 100% / 3.3%
    assert opened["per"][0] >= 0.95 > opened["single"][0]
    assert opened["per"][1] < 0.5 * opened["single"][1]
    with pytest.raises(ValueError, match="subject"):
        fit_gate(H_f, H_r, subjects=labels[:-1])
    with pytest.raises(ValueError, match="subject 1 has no forget rows"):
        fit_gate(H_f, H_r, subjects=torch.where(labels == 1, 0, labels))


def test_spectrum_is_ascending_and_k_follows_ratio():
    H_f, H_r, _ = _data()
    Q, evals, k = null_space(H_r, ratio=0.25)
    assert k == 16 and Q.shape == (64, 16)
    assert torch.all(evals[1:] >= evals[:-1])
    assert torch.allclose(Q.T @ Q, torch.eye(16, dtype=torch.float64), atol=1e-10)


def test_leakage_grows_when_the_null_space_eats_retain_directions():
    H_f, H_r, _ = _data(3, n_r=60)  # full-rank retain: no exact null space
    small = fit_gate(H_f, H_r, ratio=0.1)
    big = fit_gate(H_f, H_r, ratio=0.9)
    assert small.leakage < big.leakage


def test_bad_parameters_are_clear_errors():
    H_f, H_r, _ = _data()
    with pytest.raises(ValueError, match="ratio"):
        choose_k(torch.ones(4), ratio=0.0)
    with pytest.raises(ValueError, match="gamma"):
        fit_gate(H_f, H_r, gamma=-1)
    with pytest.raises(ValueError, match="retain_weight"):
        fit_gate(H_f, H_r, retain_weight=float("nan"))
    with pytest.raises(ValueError, match="expected"):
        fit_gate(H_f[:, :10], H_r)


def test_fewer_retain_rows_than_the_width_use_the_exact_null_space_whatever_the_solver():
    """N_r = 20 retain rows at width 96: the Gram matrix has 76 zero eigenvalues, so 'the 48
    smallest eigenvectors' (ratio 0.5) is any 48-dim subspace of them: two correct solvers gave
    gates 100% apart. The fit uses the whole exact null space instead (k = 76, reported), and an
    independent numpy implementation of that rule agrees to 1e-9."""
    import numpy as np
    H_f, H_r, _ = _data(7, d=96, n_r=20, n_f=12)
    fit = fit_gate(H_f, H_r, ratio=0.5, gamma=0.1)
    assert fit.k == 76 and fit.exact_null_space
    Hr, Hf = H_r.numpy(), H_f.numpy()
    evals, evecs = np.linalg.eigh(Hr.T @ Hr)
    Q = evecs[:, :76]  # the zero eigenvalues: a well-defined subspace (the gap to the 77th is large)
    assert evals[75] < 1e-9 * evals[-1] < evals[76]
    P = Q @ Q.T
    X = Hf @ P
    u = P @ np.linalg.pinv(X.T @ X + 0.1 * P) @ X.T @ np.ones(len(Hf))
    assert np.linalg.norm(fit.u.numpy() - u) < 1e-9 * np.linalg.norm(u)
    shuffled = fit_gate(H_f, H_r[torch.randperm(20, generator=torch.Generator().manual_seed(0))], ratio=0.5, gamma=0.1)
    assert torch.allclose(shuffled.u, fit.u, atol=1e-10)
    assert fit.retain_gates.abs().max() < 1e-9  # the exact null space holds every retain row out
    wide = fit_gate(H_f, H_r, ratio=0.9, gamma=0.1)  # k = 86 > 76: beyond the exact null space, well defined
    assert wide.k == 86 and not wide.exact_null_space


def test_no_width_by_width_matrix_is_decomposed_when_rows_are_fewer(monkeypatch):
    """At 7B width (d = 4096) a few thousand prompts are fewer than the width: the fit works on
    the N x N side (push-through identity) and never builds or decomposes a d x d matrix."""
    H_f, H_r, r = _data(8, d=200, n_r=50, n_f=10)
    shapes = []
    for name in ("eigh", "pinv", "cholesky_ex", "solve"):
        real = getattr(torch.linalg, name)

        def spy(M, *a, _real=real, **k):
            shapes.append(tuple(M.shape))
            return _real(M, *a, **k)
        monkeypatch.setattr(torch.linalg, name, spy)
    for w, subjects in ((0.0, None), (0.5, None), (0.5, torch.arange(10) % 2)):
        fit = fit_gate(H_f, H_r, ratio=0.5, gamma=0.1, retain_weight=w, subjects=subjects)
        assert fit.u.shape[-1] == 200
    assert shapes and max(max(s) for s in shapes) <= 60  # N_r x N_r and (N_f + N_r) x (N_f + N_r) only
    monkeypatch.undo()
    W = full_matrix(H_f, H_r, r, ratio=0.8, gamma=0.1, retain_weight=0.5)  # k = 160 > d - N_r: well defined
    assert torch.allclose(torch.outer(fit_gate(H_f, H_r, ratio=0.8, gamma=0.1, retain_weight=0.5).u, r), W,
                          atol=1e-10, rtol=1e-8)


def test_joint_gate_scores_sum_the_layers_parts_per_subject_then_take_the_largest():
    g = torch.Generator().manual_seed(3)
    h = torch.randn(5, 2, 16, generator=g, dtype=torch.float64)  # 5 rows, 2 layers
    u = torch.randn(2, 16, generator=g, dtype=torch.float64)
    assert torch.allclose(joint_gate_scores(h, u), h[:, 0] @ u[0] + h[:, 1] @ u[1])
    assert torch.allclose(joint_gate_scores(h[:, :1], u[:1]), gate_scores(h[:, 0], u[0]))
    U = torch.randn(2, 3, 16, generator=g, dtype=torch.float64)  # 3 subjects
    per_subject = h[:, 0] @ U[0].T + h[:, 1] @ U[1].T
    assert torch.allclose(joint_gate_scores(h, U), per_subject.amax(-1))
    # not the largest subject of each layer added up: one subject must carry both parts
    assert not torch.allclose(joint_gate_scores(h, U), (h[:, 0] @ U[0].T).amax(-1) + (h[:, 1] @ U[1].T).amax(-1))
