"""The null-space constrained ridge fit of MLLMEraser / AlphaSteer, and its diagnostics.

Per layer, with retain activations H_r (N_r x d) and forget activations H_f (N_f x d):

    P     = Q Q^T, Q = eigenvectors of H_r^T H_r with the k SMALLEST eigenvalues
    X     = H_f P
    W     = P pinv(X^T X + gamma P) X^T (1 r^T)          (d x d, the paper's f(h) = W P h)

With `retain_weight` w > 0 (a workbench option, not the paper's), the retain activations also
enter the ridge as rows with target 0: X^T X becomes X^T X + w P H_r^T H_r P. Why: the null
space keeps only the directions where retain activations are SMALL, not zero, and a person's
identity is a small-variance direction, so the paper's fit reads forget people's identity in
directions some retained people share. On the shipped toy model (layer 3, prompt-mean gate,
ratio 0.6, gamma 10), 11% / 16% of retained people's image / text-only evaluation questions had
a gate above 0.5; with the retain rows (ratio 1.0, w = 1) 3% / 2%, while forget questions stayed
at 98% / 99% and held-out test questions rose from 86% to 90% / 87% (docs/method-notes.md, item 6).

With `subjects` (a workbench option, not the paper's), each forget subject j (a person of the
forget set) gets its own gate u_j, fitted with that subject's rows as targets 1 and the retain
rows AND the other subjects' forget rows as target-0 rows (weight w); the gate is max_j h . u_j.
Why: one linear function that is ~1 on ten separate identities and ~0 on ninety others is hard
to fit, and its errors land on retained people who resemble the average forget person; one
identity against everyone else is a simpler separation. On the shipped toy model (layer 3,
prompt-mean gate, ratio 1.0, gamma 10, w = 0.3; results/gate_selectivity.txt), the share of
retained people's image / text-only evaluation questions whose gate reaches 0.3 of the forget
median fell from 19.6% / 22.7% to 9.3% / 7.3%, while forget questions at 0.7 of it stayed at
96-97% (docs/method-notes.md, item 7).

Every target row equals r, so W = u r^T with u = P pinv(X^T X + gamma P) X^T 1: the steering is
a scalar gate c(h) = h . u times a fixed direction. The fit never needs P as a matrix: P removes
the retain directions of largest energy (P = I - V V^T), found on the small side of H_r, and u
is a ridge solution, found on the small side of the stacked rows (N x N when N < d, by the
push-through identity A^T (A A^T + gamma I)^-1 = (A^T A + gamma I)^-1 A^T). At d = 4096 with
1024 retain rows that replaces a d x d eigendecomposition (8.7 s per layer here) by a
1024 x 1024 one. When the retain rows are fewer than the width, the smallest-eigenvalue
subspace of the paper's construction is not unique; the fit then uses the whole exact null
space (`RetainSpace`, reported as `exact_null_space`). All in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GateFit:
    """Result of the fit for one layer, with what the null-space inspector shows."""

    u: torch.Tensor  # (d,) gate vector, or (K, d): one per forget subject
    eigenvalues: torch.Tensor  # (d,) retain Gram spectrum, ascending
    k: int  # null-space dimension
    leakage: float  # ||H_r P||_F / ||H_r||_F (0 = retain activations fully outside the null space)
    forget_energy: float  # ||H_f P||_F^2 / ||H_f||_F^2 (share of forget activations inside it)
    forget_gates: torch.Tensor  # (N_f,) c(h) on the forget activations (target ~1)
    retain_gates: torch.Tensor  # (N_r,) c(h) on the retain activations (target ~0)
    exact_null_space: bool = False  # k grew to the whole exact null space (fewer retain rows than the width)


def choose_k(eigenvalues: torch.Tensor, ratio: float | None = 0.3, threshold: float | None = None) -> int:
    """Null-space size: `ratio * d` (public code) or the number of eigenvalues at most
    `threshold * largest eigenvalue` (threshold mode). Always at least 1."""
    d = eigenvalues.numel()
    if threshold is not None:
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        k = int((eigenvalues <= threshold * eigenvalues.max()).sum())
    else:
        if ratio is None or not 0 < ratio <= 1:
            raise ValueError(f"null-space ratio must be in (0, 1], got {ratio}")
        k = int(ratio * d)
    return max(1, min(d, k))


def null_space(H_r: torch.Tensor, ratio: float | None = 0.3, threshold: float | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(Q (d x k), eigenvalues ascending (d,), k): the k smallest eigenvectors of the uncentred
    retain Gram matrix, the paper's construction as written (the reference of `full_matrix`).
    Ill-defined when k < d - rank(H_r): then Q is whichever basis of the zero eigenspace the
    solver returns. `fit_gate` uses `retain_space`, which is not."""
    H = H_r.double()
    evals, evecs = torch.linalg.eigh(H.T @ H)
    k = choose_k(evals, ratio, threshold)
    return evecs[:, :k], evals, k


def gate_scores(h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Gate values of activations h (..., d): h . u for one gate vector u (d,), or max_k h . u_k
    for one gate per forget subject (u: (K, d)), so each subject's gate fires for its subject."""
    if u.ndim == 1:
        return h @ u
    return (h @ u.T).amax(-1)


def joint_gate_scores(h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One gate read over several layers at once: h (..., n, d) at the n layers, u (n, d) or
    (n, K, d) their parts; sum_l h_l . u_l (per subject, then the largest). With n = 1 it is
    `gate_scores`. Why: a gate fitted on the layers together needs the attacker to move all of
    them, and told unseen people from forget people better than any one layer (docs/sequential.md)."""
    if u.ndim == 2:
        return torch.einsum("...nd,nd->...", h, u)
    return torch.einsum("...nd,nkd->...k", h, u).amax(-1)


@dataclass
class RetainSpace:
    """What the fit keeps of the retain activations: the directions the gate must NOT read.

    `top` (d, t) are the t retain directions of largest energy (right singular vectors of H_r);
    the null space is their orthogonal complement, P = I - top top^T, of dimension k = d - t.
    Why not the k smallest eigenvectors of H_r^T H_r: when H_r has rank r < d (fewer retain rows
    than the width: the normal case at 7B width), d - r eigenvalues are exactly zero and any
    basis of their eigenspace is as valid as another, so a k < d - r subset of it is chosen by
    the eigensolver (two correct implementations differed by 100% in the gate). Here the null
    space is then the whole exact null space (k = d - r > ratio x d) and `exact` says so."""

    top: torch.Tensor  # (d, t) orthonormal
    eigenvalues: torch.Tensor  # (d,) retain Gram spectrum, ascending (d - rank zeros first)
    k: int  # null-space dimension used (d - t)
    requested: int  # k from ratio / threshold
    rank: int  # numerical rank of H_r

    @property
    def exact(self) -> bool:
        """True when the requested k fell inside the exact null space and all of it is used."""
        return self.k > self.requested

    def project(self, H: torch.Tensor) -> torch.Tensor:
        """H P: rows with the kept retain directions removed."""
        return H - (H @ self.top) @ self.top.T


def retain_space(H_r: torch.Tensor, ratio: float | None = 0.3, threshold: float | None = None) -> RetainSpace:
    """The retain directions to remove, from a decomposition on the small side: the N_r x N_r
    row Gram when N_r < d, the d x d Gram otherwise (float64)."""
    H = H_r.double()
    n, d = H.shape
    if n < d:
        evals_n, U = torch.linalg.eigh(H @ H.T)  # ascending; the nonzero ones are the Gram's
        evals_n = evals_n.clamp_min(0)
        tol = evals_n.max().clamp_min(1e-300) * max(n, d) * torch.finfo(torch.float64).eps
        keep = evals_n > tol
        rank = int(keep.sum())
        s = evals_n[keep].sqrt()
        V = (H.T @ U[:, keep]) / s  # (d, rank) right singular vectors, ascending energy
        evals = torch.cat([torch.zeros(d - rank, dtype=torch.float64), evals_n[keep]])
    else:
        evals, V = torch.linalg.eigh(H.T @ H)
        evals = evals.clamp_min(0)
        tol = evals.max().clamp_min(1e-300) * max(n, d) * torch.finfo(torch.float64).eps
        rank = int((evals > tol).sum())
    requested = choose_k(evals, ratio, threshold)
    t = min(d - requested, rank)
    top = V[:, V.shape[1] - t:] if t else V[:, :0]
    return RetainSpace(top.contiguous(), evals, d - t, requested, rank)


def fit_gate(H_f: torch.Tensor, H_r: torch.Tensor, ratio: float | None = 0.3, gamma: float = 0.1,
             threshold: float | None = None, retain_weight: float = 0.0,
             subjects: torch.Tensor | None = None) -> GateFit:
    """u = P pinv(X^T X + w P H_r^T H_r P + gamma P) X^T 1 with X = H_f P (w = 0: the paper's fit),
    plus diagnostics. `subjects` (N_f,) integer labels 0..K-1 give one gate per subject (K, d).

    Solved on the small side: with A the stacked rows [X; sqrt(w) H_r P] (N rows) and b their
    targets, u = (A^T A + gamma I)^-1 A^T b = A^T (A A^T + gamma I)^-1 b (push-through), an N x N
    system when N < d and a d x d one otherwise; no d x d matrix is built when N < d."""
    if H_f.ndim != 2 or H_r.ndim != 2 or H_f.shape[1] != H_r.shape[1]:
        raise ValueError(f"expected (N, d) forget and retain activations, got {tuple(H_f.shape)} and {tuple(H_r.shape)}")
    _check_penalties(gamma, retain_weight)
    Hf, Hr = H_f.double(), H_r.double()
    space = retain_space(Hr, ratio, threshold)
    X, Xr = space.project(Hf), space.project(Hr)
    n_f, d = X.shape
    if subjects is None:
        labels = torch.zeros(n_f, dtype=torch.int64)
    else:
        labels = torch.as_tensor(subjects, dtype=torch.int64)
        if labels.shape != (n_f,) or labels.min() < 0:
            raise ValueError(f"expected {n_f} subject labels >= 0, got shape {tuple(labels.shape)}")
    K = int(labels.max()) + 1
    rows = torch.cat([X, Xr]) if retain_weight > 0 else X  # retain rows only matter with a weight
    small = len(rows) < d
    if small:
        gram = rows @ rows.T  # N x N, shared by every subject (each only rescales its rows)
        eye = torch.eye(len(rows), dtype=torch.float64)
    else:  # every row at weight w; a subject's own rows then get 1 - w more
        base = gamma * torch.eye(d, dtype=torch.float64)
        if retain_weight > 0:
            base = base + retain_weight * (rows.T @ rows)
    coefs = []
    for j in range(K):
        own = labels == j
        if not own.any():
            raise ValueError(f"subject {j} has no forget rows")
        if small:
            scale = torch.full((len(rows),), retain_weight ** 0.5, dtype=torch.float64)
            scale[:n_f][own] = 1.0  # other subjects' rows and retain rows: target 0 at weight w
            b = torch.zeros(len(rows), dtype=torch.float64)
            b[:n_f][own] = 1.0
            M = scale[:, None] * gram * scale[None, :] + gamma * eye
            coefs.append(rows.T @ (scale * _solve(M, b, gamma)))
        else:
            Xj = X[own]
            M = base + (1.0 - retain_weight) * (Xj.T @ Xj)
            coefs.append(_solve(M, Xj.sum(0), gamma))
    u = coefs[0] if subjects is None else torch.stack(coefs)
    u = space.project(u)  # already in the null space in exact arithmetic; this removes round-off
    return GateFit(
        u=u, eigenvalues=space.eigenvalues, k=space.k,
        leakage=float(Xr.norm() / Hr.norm().clamp_min(1e-30)),
        forget_energy=float(X.norm() ** 2 / (Hf.norm() ** 2).clamp_min(1e-30)),
        forget_gates=gate_scores(Hf, u), retain_gates=gate_scores(Hr, u), exact_null_space=space.exact,
    )


def _solve(M: torch.Tensor, b: torch.Tensor, gamma: float) -> torch.Tensor:
    """M^-1 b for a symmetric M that gamma > 0 makes positive definite (Cholesky); with gamma = 0
    it may be singular: the pseudo-inverse, as the paper's formula."""
    if gamma > 0:
        L, info = torch.linalg.cholesky_ex(M)
        if int(info) == 0:
            return torch.cholesky_solve(b[:, None], L)[:, 0]
    return torch.linalg.pinv(M, hermitian=True) @ b


def full_matrix(H_f: torch.Tensor, H_r: torch.Tensor, r: torch.Tensor, ratio: float | None = 0.3,
                gamma: float = 0.1, threshold: float | None = None, retain_weight: float = 0.0) -> torch.Tensor:
    """The paper's full d x d W = P pinv(X^T X + gamma P) X^T 1 r^T (reference for tests and
    for users who want the matrix; memory d^2), with the retain rows when retain_weight > 0."""
    _check_penalties(gamma, retain_weight)
    Q, _, _ = null_space(H_r, ratio, threshold)
    P = Q @ Q.T
    X = H_f.double() @ P
    Xr = H_r.double() @ P
    ones = torch.ones(H_f.shape[0], 1, dtype=torch.float64)
    return P @ torch.linalg.pinv(X.T @ X + retain_weight * Xr.T @ Xr + gamma * P) @ X.T @ ones @ r.double()[None, :]


def _check_penalties(gamma: float, retain_weight: float) -> None:
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if not retain_weight >= 0:
        raise ValueError(f"retain_weight must be >= 0, got {retain_weight}")
