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
at 98% / 99% and held-out test questions rose from 86% to 90% / 87% (README, concept 6).

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

    u: torch.Tensor  # (d,) gate vector
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


def fit_gate(H_f: torch.Tensor, H_r: torch.Tensor, ratio: float | None = 0.3, gamma: float = 0.1,
             threshold: float | None = None, retain_weight: float = 0.0) -> GateFit:
    """u = P pinv(X^T X + w P H_r^T H_r P + gamma P) X^T 1 with X = H_f P (w = 0: the paper's fit),
    plus diagnostics."""
    if H_f.ndim != 2 or H_r.ndim != 2 or H_f.shape[1] != H_r.shape[1]:
        raise ValueError(f"expected (N, d) forget and retain activations, got {tuple(H_f.shape)} and {tuple(H_r.shape)}")
    _check_penalties(gamma, retain_weight)
    Hf, Hr = H_f.double(), H_r.double()
    Q, evals, k = null_space(Hr, ratio, threshold)
    Z = Hf @ Q  # forget activations in null-space coordinates (N_f x k)
    Zr = Hr @ Q
    A = Z.T @ Z + retain_weight * (Zr.T @ Zr) + gamma * torch.eye(k, dtype=torch.float64)
    coef = torch.linalg.pinv(A, hermitian=True) @ (Z.T @ torch.ones(Hf.shape[0], dtype=torch.float64))
    u = Q @ coef
    Hr_P = Zr @ Q.T
    return GateFit(
        u=u, eigenvalues=evals, k=k,
        leakage=float(Hr_P.norm() / Hr.norm().clamp_min(1e-30)),
        forget_energy=float(Z.norm() ** 2 / (Hf.norm() ** 2).clamp_min(1e-30)),
        forget_gates=Hf @ u, retain_gates=Hr @ u,
    )


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
