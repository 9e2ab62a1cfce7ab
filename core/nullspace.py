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
a scalar gate c(h) = h . u times a fixed direction. We solve for u in the k-dimensional basis of
Q, which is exact (pinv of Q (A + gamma I) Q^T is Q (A + gamma I)^-1 Q^T) and costs a k x k solve
instead of a d x d pseudo-inverse. All in float64.
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
    """(Q (d x k), eigenvalues ascending (d,), k) of the uncentred retain Gram matrix."""
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


def fit_gate(H_f: torch.Tensor, H_r: torch.Tensor, ratio: float | None = 0.3, gamma: float = 0.1,
             threshold: float | None = None, retain_weight: float = 0.0,
             subjects: torch.Tensor | None = None) -> GateFit:
    """u = P pinv(X^T X + w P H_r^T H_r P + gamma P) X^T 1 with X = H_f P (w = 0: the paper's fit),
    plus diagnostics. `subjects` (N_f,) integer labels 0..K-1 give one gate per subject (K, d)."""
    if H_f.ndim != 2 or H_r.ndim != 2 or H_f.shape[1] != H_r.shape[1]:
        raise ValueError(f"expected (N, d) forget and retain activations, got {tuple(H_f.shape)} and {tuple(H_r.shape)}")
    _check_penalties(gamma, retain_weight)
    Hf, Hr = H_f.double(), H_r.double()
    Q, evals, k = null_space(Hr, ratio, threshold)
    Z = Hf @ Q  # forget activations in null-space coordinates (N_f x k)
    Zr = Hr @ Q
    base = retain_weight * (Zr.T @ Zr) + gamma * torch.eye(k, dtype=torch.float64)
    if subjects is None:
        u = Q @ _ridge(Z.T @ Z + base, Z)
    else:
        labels = torch.as_tensor(subjects, dtype=torch.int64)
        if labels.shape != (Hf.shape[0],) or labels.min() < 0:
            raise ValueError(f"expected {Hf.shape[0]} subject labels >= 0, got shape {tuple(labels.shape)}")
        ZZ = Z.T @ Z
        coefs = []
        for j in range(int(labels.max()) + 1):
            Zj = Z[labels == j]
            if not len(Zj):
                raise ValueError(f"subject {j} has no forget rows")
            own = Zj.T @ Zj  # this subject's rows are targets; the other subjects' rows weigh like retain rows
            coefs.append(_ridge(own + retain_weight * (ZZ - own) + base, Zj))
        u = (Q @ torch.stack(coefs, 1)).T
    Hr_P = Zr @ Q.T
    return GateFit(
        u=u, eigenvalues=evals, k=k,
        leakage=float(Hr_P.norm() / Hr.norm().clamp_min(1e-30)),
        forget_energy=float(Z.norm() ** 2 / (Hf.norm() ** 2).clamp_min(1e-30)),
        forget_gates=gate_scores(Hf, u), retain_gates=gate_scores(Hr, u),
    )


def _ridge(A: torch.Tensor, Z: torch.Tensor) -> torch.Tensor:
    """pinv(A) Z^T 1: the ridge solution in null-space coordinates for target-1 rows Z."""
    return torch.linalg.pinv(A, hermitian=True) @ (Z.T @ torch.ones(Z.shape[0], dtype=torch.float64))


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
