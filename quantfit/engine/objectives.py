"""Objectives: one loss over every (asset, window) pair, evaluated in one batched call.

An objective owns the data of all windows and answers, for parameters ``theta`` of shape
``(A, T, p)`` (assets × windows × parameters):

* ``value_and_grad(theta) -> (loss (A, T), grad (A, T, p))``
* ``grad(theta | None)`` (``None`` = the cold start θ = 0, which may be cheaper) and
  ``neg_grad(theta | None)`` (−grad; may be a view of the objective's data: do not modify)
* ``hessian(theta) -> (B, T, p, p)`` for Newton (``B`` is ``A`` or 1 when shared)
* ``curvature() -> (diag (B, T, p), lip (B, T))``: the Jacobi preconditioner (a positive
  per-window diagonal D) and an upper bound on the largest eigenvalue of ``D^-1/2 H D^-1/2``,
  which is all the first-order solvers need to choose safe steps.
* ``loss_scale (A, T)``: the loss at θ = 0, which makes tolerances relative (scale-free).
* ``active (B, T)`` bool: the windows to solve (enough rows); solvers treat the others as done.
* ``quadratic``: True when one Newton step from anywhere is exact.

Solvers (``solvers.py``) only use this protocol, so a new loss is one new class here and a
penalty is a wrapper that adds its value, gradient and Hessian (e.g. a ridge-like prior
``lam·‖β − b0‖²`` adds ``2·lam`` to the penalized diagonal entries of the Hessian and
``lam`` to ``curvature``'s Lipschitz bound after scaling by D).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from quantfit.engine.linalg import dot, matvec
from quantfit.engine.moments import WindowMoments


class Objective(Protocol):
    quadratic: bool
    loss_scale: Tensor  # (A, T)
    active: Tensor  # (B, T) bool

    def value_and_grad(self, theta: Tensor) -> tuple[Tensor, Tensor]: ...

    def value(self, theta: Tensor) -> Tensor: ...

    def grad(self, theta: Tensor | None) -> Tensor: ...

    def neg_grad(self, theta: Tensor | None) -> Tensor: ...

    def hessian(self, theta: Tensor | None) -> Tensor: ...

    def curvature(self) -> tuple[Tensor, Tensor]: ...


class SquaredLoss:
    """Weighted least squares in every window, from the window moments.

    loss(θ) = ½ Σ_s w_s (y_s − z_sᵀθ)² = ½ (yy − 2 θ·zy + θᵀ G θ)   (A, T)
    grad(θ) = G θ − zy                                              (A, T, p)
    hessian = G                                                     (B, T, p, p)

    Each evaluation costs O(A · T · p²) whatever the window length. ``active`` (B, T) marks
    the windows with enough rows. Windows without rows have all-zero moments, which every
    solver handles without inf/NaN (singular Grams are flagged by the Cholesky).
    """

    quadratic = True

    def __init__(self, mom: WindowMoments, active: Tensor):
        self.gram = mom.gram
        self.zy = mom.zy
        self.yy = mom.yy
        self.p = mom.gram.shape[-1]
        self.active = active
        self.loss_scale = 0.5 * self.yy

    def grad(self, theta: Tensor | None) -> Tensor:
        if theta is None:
            return -self.zy
        g = matvec(self.gram, theta)
        return g.sub_(self.zy)

    def neg_grad(self, theta: Tensor | None) -> Tensor:
        return self.zy if theta is None else self.grad(theta).neg_()

    def value_and_grad(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        g = self.grad(theta)
        # θᵀGθ − 2θ·zy = θ·(g − zy), reusing Gθ inside the gradient.
        loss = dot(theta, g - self.zy).add_(self.yy).mul_(0.5)
        return loss, g

    def value(self, theta: Tensor) -> Tensor:
        return self.value_and_grad(theta)[0]

    def hessian(self, theta: Tensor | None = None) -> Tensor:
        return self.gram

    def curvature(self) -> tuple[Tensor, Tensor]:
        return jacobi_gershgorin(self.gram)


def jacobi_gershgorin(H: Tensor) -> tuple[Tensor, Tensor]:
    """Jacobi diagonal D (…, p) of an SPD batch H (…, p, p) and the Gershgorin bound
    ``max_i Σ_j |H_ij| / sqrt(D_i D_j)`` (…) on the spectrum of ``D^-1/2 H D^-1/2``."""
    p = H.shape[-1]
    diag = torch.stack([H[..., i, i] for i in range(p)], -1)
    diag = torch.where(diag > 0, diag, torch.ones((), dtype=H.dtype, device=H.device))
    rs = diag.rsqrt()
    lip = torch.zeros_like(rs[..., 0])
    for i in range(p):
        row = torch.ones_like(rs[..., i])
        for j in range(p):
            if j != i:
                row = row + (H[..., i, j] * rs[..., i] * rs[..., j]).abs()
        lip = torch.maximum(lip, row)
    return diag, lip
