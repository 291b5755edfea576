"""Solvers, generic over objectives (see ``objectives.Objective``): newton, gd, adam, lbfgs.

Every solver minimizes one objective per window for all windows at once and returns a
``Solution``: θ (A, T, p), and per window ``converged`` / ``diverged`` (A, T) bool and
``n_iter`` (A, T) int32.

First-order solvers start cold (θ = 0) and work in Jacobi-preconditioned coordinates
``u = D^½ θ`` (D = the per-window Hessian diagonal), where the Hessian has a unit diagonal; with
the factors standardized beforehand it is close to the identity, so a step of ``1/L`` (L a
Gershgorin bound) converges in tens of iterations on daily returns.

Convergence, per window: the preconditioned gradient ``max_i |g_i| / D_i^½`` falls to
``tol · √(2·loss(0))`` (i.e. tol relative to the window's root-sum-of-squares of y). For a
step of 1/L this is equivalent to a relative loss decrease below ``tol²/L``. A window that has
converged is frozen. The loop exits early when every window is done.

Divergence, per window: a non-finite loss or gradient, or a rising loss for the descent methods
(gd, lbfgs: any rise beyond rounding; adam, which is not monotone: a loss above its cold-start
value). Diverged windows are reported as ``diverged`` and never returned as estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from quantfit.engine.linalg import Cholesky, cholesky, dot, param_zeros, solve
from quantfit.engine.objectives import Objective

#: Per-solver defaults: (tol for float64, tol for float32, max_iter).
DEFAULTS: dict[str, tuple[float, float, int]] = {
    "newton": (1e-10, 1e-6, 1),  # 1 step is exact for a quadratic; 50 otherwise
    "gd": (1e-8, 1e-5, 500),
    "adam": (1e-8, 1e-5, 3000),
    "lbfgs": (1e-8, 1e-5, 100),
}


@dataclass
class Solution:
    theta: Tensor  # (A, T, p)
    converged: Tensor  # (A, T) bool
    diverged: Tensor  # (A, T) bool
    n_iter: Tensor  # (A, T) int32
    chol: Cholesky | None = None  # factor of the Hessian at theta when it does not depend on θ


def default_tol(solver: str, dtype: torch.dtype) -> float:
    tol64, tol32, _ = DEFAULTS[solver]
    return tol64 if dtype == torch.float64 else tol32


def default_max_iter(solver: str, quadratic: bool = True) -> int:
    if solver == "newton" and not quadratic:
        return 50
    return DEFAULTS[solver][2]


class _Monitor:
    """Per-window convergence on the preconditioned gradient and bookkeeping of n_iter."""

    def __init__(self, obj: Objective, diag: Tensor, tol: float, shape: tuple[int, int]):
        self.rs = diag.rsqrt()  # (B, T, p)
        self.thresh = (2.0 * obj.loss_scale).sqrt_().mul_(tol)  # (A, T)
        dev = self.thresh.device
        self.converged = torch.zeros(shape, dtype=torch.bool, device=dev)
        self.diverged = torch.zeros(shape, dtype=torch.bool, device=dev)
        self.n_iter = torch.zeros(shape, dtype=torch.int32, device=dev)
        self.eps = torch.finfo(diag.dtype).eps

    def gnorm(self, g: Tensor) -> Tensor:
        m = (g[..., 0] * self.rs[..., 0]).abs_()
        for i in range(1, g.shape[-1]):
            m = torch.maximum(m, (g[..., i] * self.rs[..., i]).abs_())
        return m

    @property
    def done(self) -> Tensor:
        return self.converged | self.diverged

    def update(self, it: int, g: Tensor, bad: Tensor) -> bool:
        """Record iteration ``it``; returns True when every window is done."""
        open_ = ~self.done
        newly_bad = bad & open_
        self.diverged |= newly_bad
        ok = (self.gnorm(g) <= self.thresh) & open_ & ~newly_bad
        self.converged |= ok
        self.n_iter.masked_fill_(open_, it)
        return bool(self.done.all())


def newton(obj: Objective, tol: float, max_iter: int) -> Solution:
    """Newton's method from θ = 0; for a quadratic objective one step solves the normal
    equations exactly (batched Cholesky, singular windows flagged)."""
    theta = None
    g = obj.grad(None)
    A, T, p = g.shape
    conv = torch.zeros((A, T), dtype=torch.bool, device=g.device)
    div = torch.zeros_like(conv)
    n_iter = torch.zeros((A, T), dtype=torch.int32, device=g.device)
    diag, _ = obj.curvature()
    mon = _Monitor(obj, diag, tol, (A, T))
    ch = None
    for it in range(1, max_iter + 1):
        ch = cholesky(obj.hessian(theta))
        step = solve(ch, g)
        theta = -step if theta is None else theta - step
        n_iter.fill_(it)
        if obj.quadratic:
            conv = ch.ok.expand(A, T).clone()
            break
        _, g = obj.value_and_grad(theta)
        bad = ~torch.isfinite(g).all(-1)
        if mon.update(it, g, bad):
            break
    if not obj.quadratic:
        conv, div, n_iter = mon.converged, mon.diverged, mon.n_iter
        ch = None
    return Solution(theta, conv, div, n_iter, ch)


def gd(obj: Objective, tol: float, max_iter: int) -> Solution:
    """Jacobi-preconditioned gradient descent with the safe step 1/L, from θ = 0."""
    diag, lip = obj.curvature()
    step = (1.0 / lip)[..., None] / diag  # (B, T, p): η / D_i
    g = obj.grad(None)
    A, T, p = g.shape
    theta = param_zeros((A, T), p, g)
    loss = obj.loss_scale.clone()
    mon = _Monitor(obj, diag, tol, (A, T))
    slack = 64 * mon.eps * obj.loss_scale
    if mon.update(0, g, torch.zeros_like(mon.converged)):
        return Solution(theta, mon.converged, mon.diverged, mon.n_iter)
    for it in range(1, max_iter + 1):
        frozen = mon.done
        theta_new = theta - g * step
        loss_new, g_new = obj.value_and_grad(theta_new)
        bad = ~torch.isfinite(loss_new) | (loss_new > loss + slack)
        keep = frozen[..., None]
        theta = torch.where(keep, theta, theta_new)
        g = torch.where(keep, g, g_new)
        loss = torch.where(frozen, loss, loss_new)
        if mon.update(it, g, bad):
            break
    return Solution(theta, mon.converged, mon.diverged, mon.n_iter)


SOLVERS = {"newton": newton, "gd": gd}


def run_solver(name: str, obj: Objective, tol: float | None, max_iter: int | None) -> Solution:
    """Dispatch by name with the documented defaults for tol and max_iter."""
    fn = SOLVERS[name]
    dtype = obj.loss_scale.dtype
    tol = default_tol(name, dtype) if tol is None else tol
    max_iter = default_max_iter(name, obj.quadratic) if max_iter is None else max_iter
    return fn(obj, tol, max_iter)
