"""A shrinkage prior as a penalty on any objective: ``½·λ·‖β − b0‖²`` on the slopes.

``Penalized(base, Q, q, c0)`` wraps an objective (see ``objectives.Objective``) and adds the
quadratic ``pen(θ) = ½ θᵀQθ − θ·q + c0`` to its value, ``Qθ − q`` to its gradient and ``Q`` to
its Hessian. Objectives hold ½·(sum of squared residuals), so a penalty ``λ‖β − b0‖²`` added to
the sum of squared residuals is ``½λ‖β − b0‖²`` here: with R the rows of the slopes in θ,
``Q = λ RᵀR``, ``q = λ Rᵀb0``, ``c0 = ½λ‖b0‖²`` (``prior_terms`` builds them, also in the
engine's transformed coordinates). The intercept is never penalized.

Shapes: Q (p, p) shared by every window; q (A, 1, p) per asset; c0 (A, 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from quantfit.engine.linalg import dot, matvec
from quantfit.engine.objectives import jacobi_gershgorin


def prior_terms(
    b0: Tensor,
    lam: float,
    p: int,
    intercept: bool,
    M: Tensor | None = None,
    scale: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """(Q (p, p), q (A, 1, p), c0 (A, 1)) of ``½λ‖β − b0‖²`` in working coordinates.

    b0 : (A or 1, k) target slopes in the original units. M : (p, p) with θ_original = M θ
    (None = identity). scale : (A,) per-asset y scale when y was standardized (β = scale·(Mθ)_s),
    which divides the target: in working units the penalty is ½λ‖(Mθ)_s − b0/scale‖².
    """
    k = p - int(intercept)
    dt, dev = b0.dtype, b0.device
    R = torch.zeros((k, p), dtype=dt, device=dev)
    R[:, int(intercept) :] = torch.eye(k, dtype=dt, device=dev)
    if M is not None:
        R = R @ M.to(dtype=dt, device=dev)
    target = b0 if scale is None else b0 / scale.to(dtype=dt, device=dev)[:, None]
    Q = lam * (R.T @ R)
    q = (lam * target @ R)[:, None, :]
    c0 = (0.5 * lam * target.square().sum(-1))[:, None]
    return Q, q, c0


class Penalized:
    """``base`` plus ``½θᵀQθ − θ·q + c0`` (same protocol, same ``quadratic`` flag)."""

    def __init__(self, base, Q: Tensor, q: Tensor, c0: Tensor):
        self.base = base
        dt, dev = base.loss_scale.dtype, base.loss_scale.device
        self.Q, self.q, self.c0 = (t.to(dtype=dt, device=dev) for t in (Q, q, c0))
        self.quadratic = base.quadratic
        self.active = base.active
        self.loss_scale = base.loss_scale + self.c0
        self._hess = None

    def _pen(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        qt = matvec(self.Q, theta)  # Qθ
        value = dot(theta, 0.5 * qt - self.q).add_(self.c0)
        return value, qt.sub_(self.q)

    def value_and_grad(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        v, g = self.base.value_and_grad(theta)
        pv, pg = self._pen(theta)
        return v + pv, g + pg

    def value(self, theta: Tensor) -> Tensor:
        return self.value_and_grad(theta)[0]

    def grad(self, theta: Tensor | None) -> Tensor:
        if theta is None:
            return self.base.grad(None) - self.q
        return self.base.grad(theta) + self._pen(theta)[1]

    def neg_grad(self, theta: Tensor | None) -> Tensor:
        return self.grad(theta).neg()

    def hessian(self, theta: Tensor | None = None) -> Tensor:
        if self.quadratic and self._hess is not None:
            return self._hess
        H = self.base.hessian(theta) + self.Q
        if self.quadratic:
            self._hess = H
        return H

    def curvature(self) -> tuple[Tensor, Tensor]:
        return jacobi_gershgorin(self.hessian(None))
