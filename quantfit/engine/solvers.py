"""Solvers, generic over objectives (see ``objectives.Objective``): newton, gd, adam, lbfgs.

Every solver minimizes one objective per window for all windows at once and returns a
``Solution``: θ (A, T, p), and per window ``converged`` / ``diverged`` (A, T) bool and
``n_iter`` (A, T) int32 (newton on a shared Hessian: one (1, T) row of each for all assets).

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

from quantfit.engine.linalg import Cholesky, cholesky, dot, inverse, matvec, param_zeros, solve
from quantfit.engine.objectives import Objective
from quantfit.engine.quadratic import NormalizedQuadratic

#: Per-solver defaults: (tol for float64, tol for float32, max_iter).
DEFAULTS: dict[str, tuple[float, float, int]] = {
    "newton": (1e-10, 1e-6, 1),  # 1 step is exact for a quadratic; 50 otherwise
    "gd": (1e-8, 1e-5, 1000),
    "adam": (1e-7, 1e-5, 1000),  # slow at high precision: looser than gd/lbfgs
    "lbfgs": (1e-8, 1e-5, 200),
}
#: Adam in preconditioned, y-normalized units: step lr·0.95^t, betas (0.7, 0.9): ~70 iterations
#: to tol 1e-6, ~100 to 1e-8. The usual (0.9, 0.999) with a constant step needs ~300 to 1e-8;
#: faster decays (β1 0.5, 0.92^t) save a third but stall on a few ill-conditioned windows.
ADAM_LR, ADAM_DECAY, ADAM_BETAS = 0.3, 0.95, (0.7, 0.9)  # robust on p = 4, κ ≈ 8 windows
ADAM_BLOWUP, ADAM_LOSS_EVERY, ADAM_CHECK_EVERY = 10.0, 10, 5
GD_LOSS_EVERY = 10  # gd on a quadratic: how often the loss is checked against loss(0)
LBFGS_MEMORY, LBFGS_MAX_BACKTRACK, ARMIJO_C1 = 5, 30, 1e-4


@dataclass
class Solution:
    theta: Tensor  # (A, T, p)
    converged: Tensor  # (A, T) bool, or (1, T) when the same for all assets
    diverged: Tensor  # (A, T) bool, likewise
    n_iter: Tensor  # (A, T) int32, likewise
    chol: Cholesky | None = None  # factor of the Hessian at theta when it does not depend on θ
    hinv: Tensor | None = None  # its inverse (B, T, p, p), when the solver formed it


def default_tol(solver: str, dtype: torch.dtype) -> float:
    tol64, tol32, _ = DEFAULTS[solver]
    return tol64 if dtype == torch.float64 else tol32


def default_max_iter(solver: str, quadratic: bool = True) -> int:
    if solver == "newton" and not quadratic:
        return 50
    return DEFAULTS[solver][2]


class _Monitor:
    """Per-window bookkeeping: convergence on the preconditioned gradient, divergence, n_iter.

    With D the Jacobi diagonal, the squared preconditioned gradient norm is Σ_i g_i² / D_i;
    a window converges when it is ≤ (tol · √(2·loss(0)))².
    """

    def __init__(self, obj: Objective, diag: Tensor, tol: float, shape: tuple[int, int]):
        self.inv_diag = diag.reciprocal()  # (B, T, p)
        self.thresh2 = (2.0 * tol * tol) * obj.loss_scale  # (A, T)
        dev = self.thresh2.device
        self.converged = torch.zeros(shape, dtype=torch.bool, device=dev)
        self.diverged = torch.zeros(shape, dtype=torch.bool, device=dev)
        self.n_iter = torch.zeros(shape, dtype=torch.int32, device=dev)
        # Windows without enough rows are done (neither converged nor diverged) from the start.
        self.open = obj.active.expand(shape).clone()
        self.slack = 64 * torch.finfo(diag.dtype).eps * obj.loss_scale  # rounding of a loss

    def gnorm2(self, g: Tensor, pg: Tensor | None = None) -> Tensor:
        """Σ_i g_i² / D_i, or Σ_i g_i·pg_i when the preconditioned gradient pg is at hand."""
        if pg is None:
            pg = g * self.inv_diag
        return dot(g, pg)

    def update(self, g2: Tensor, bad: Tensor | None, count: bool = True) -> bool:
        """Close converged (g2 small) and diverged (bad) windows; count one iteration for the
        others (not for the check at the cold start). Returns True when none is left open."""
        if count:  # the iteration that produced g2 counts for every window it moved
            self.n_iter += self.open
        ok = (g2 <= self.thresh2) & self.open
        self.converged |= ok
        self.open &= ~ok
        if bad is not None:
            bad = bad & self.open
            self.diverged |= bad
            self.open &= ~bad
        return not bool(self.open.any())


def newton(obj: Objective, tol: float, max_iter: int, callback=None) -> Solution:
    """Newton's method from θ = 0; for a quadratic objective one step solves the normal
    equations exactly (batched Cholesky, singular windows flagged)."""
    rhs = obj.neg_grad(None)
    A, T, p = rhs.shape
    H = obj.hessian(None)
    ch = cholesky(H)
    hinv = None
    if H.shape[0] == 1 and A > 1:
        # One Hessian shared by every asset: invert it once (cheap, (1, T, p, p)); then each
        # asset costs p² multiply-adds instead of a triangular solve.
        hinv = inverse(ch)
        theta = matvec(hinv, rhs)
    else:
        theta = solve(ch, rhs)
    if obj.quadratic:
        conv = ch.ok & obj.active  # (B, T): one row for all assets when H is shared
        n_iter = torch.ones(conv.shape, dtype=torch.int32, device=rhs.device)
        if callback is not None:
            callback(obj.value(theta))
        return Solution(theta, conv, torch.zeros_like(conv), n_iter, ch, hinv)
    diag, _ = obj.curvature()
    mon = _Monitor(obj, diag, tol, (A, T))
    for _ in range(max_iter):
        loss, g = obj.value_and_grad(theta)
        if callback is not None and _ > 0:
            callback(loss)
        if mon.update(mon.gnorm2(g), ~torch.isfinite(loss)):
            break
        step = solve(cholesky(obj.hessian(theta)), g)
        theta = theta - step * mon.open[..., None]
    return Solution(theta, mon.converged, mon.diverged, mon.n_iter)


def gd(obj: Objective, tol: float, max_iter: int, callback=None) -> Solution:
    """Jacobi-preconditioned gradient descent with the safe step 1/L, from θ = 0.

    A descent method: a window whose loss rises beyond rounding (or turns non-finite) has
    diverged. Converged windows are frozen, so results do not depend on which windows share
    a chunk; the loop stops when none is open. Quadratic objectives run the same iteration
    fused in place in normalized units (``quadratic.NormalizedQuadratic``), where the 1/L step
    provably decreases the loss: divergence is a non-finite gradient, or a loss above its
    cold-start value (checked every ``GD_LOSS_EVERY`` iterations and at the end).
    """
    if obj.quadratic:
        return _gd_quadratic(obj, tol, max_iter, callback)
    diag, lip = obj.curvature()
    step = (1.0 / lip)[..., None] / diag  # (B, T, p): η / D_i
    g = obj.grad(None)
    A, T, p = g.shape
    theta = param_zeros((A, T), p, g)
    loss = obj.loss_scale
    mon = _Monitor(obj, diag, tol, (A, T))
    inv_eta = lip  # Σ g_i² / D_i = Σ g_i · s_i / η  with s = η g / D
    s = g * step
    if mon.update(dot(g, s).mul_(inv_eta), None, count=False):
        return Solution(theta, mon.converged, mon.diverged, mon.n_iter)
    for _ in range(max_iter):
        theta.addcmul_(s, mon.open[..., None], value=-1.0)
        loss_new, g = obj.value_and_grad(theta)
        if callback is not None:
            callback(loss_new)
        bad = ~(loss_new <= loss + mon.slack)  # rising, or NaN
        loss = loss_new
        s = g * step
        if mon.update(dot(g, s).mul_(inv_eta), bad):
            break
    return Solution(theta, mon.converged, mon.diverged, mon.n_iter)


def _gd_quadratic(obj: Objective, tol: float, max_iter: int, callback=None) -> Solution:
    """``gd`` on a quadratic: u ← u − ĝ / L in normalized units; a closed window's step is 0."""
    q = NormalizedQuadratic(obj, tol)
    A, T = q.shape
    step = (1.0 / q.lip).expand(A, T)[:, None, :].clone()  # (A, 1, T)
    q.gradient()
    if q.check(0, None):
        return _solution(q)
    for t in range(1, max_iter + 1):
        q.u.addcmul_(q.g, step, value=-1.0)
        q.gradient()
        if callback is not None:
            callback(obj.value(q.theta()))
        last = t == max_iter
        if q.check(t, 1.0 if t % GD_LOSS_EVERY == 0 or last else None):
            break
        step.masked_fill_(~q.open[:, None, :], 0.0)
    return _solution(q)


def _solution(q: NormalizedQuadratic) -> Solution:
    return Solution(q.theta(), q.converged, q.diverged, q.n_iter)


def adam(obj: Objective, tol: float, max_iter: int, callback=None) -> Solution:
    """Adam in preconditioned, normalized units ``u_i = θ_i · √D_i / ‖y‖`` (optimum of order
    one), from θ = 0, with an exponentially decaying step. Not monotone, so a window diverges
    only when its gradient or loss turns non-finite or its loss exceeds ``ADAM_BLOWUP`` × its
    cold-start value. Converged windows are frozen.

    Quadratic objectives (the squared loss, with or without a prior) run a fused loop in
    normalized units (``quadratic.NormalizedQuadratic``), every update in place on stacked
    (A, p, T) buffers, about 8·p passes per iteration. Convergence is checked every
    ``ADAM_CHECK_EVERY`` iterations (every iteration with a callback), so ``n_iter`` has that
    granularity: it is the iteration of the first check that saw the window converged. A
    window is frozen by giving its step an infinite denominator (its u stops moving exactly).
    Adam's step ``m/√v`` does not depend on a per-coordinate scale of the gradient, so this is
    the same iteration as the generic loop (``_adam_generic``, used for other objectives).
    """
    if not obj.quadratic:
        return _adam_generic(obj, tol, max_iter, callback)
    q = NormalizedQuadratic(obj, tol)
    A, T = q.shape
    m, v, den = (torch.zeros_like(q.u) for _ in range(3))
    b1, b2 = ADAM_BETAS
    # Per-window additive term of the step denominator: tiny while open, +inf once closed.
    eps = torch.full(
        (A, 1, T), torch.finfo(q.u.dtype).tiny ** 0.5, dtype=q.u.dtype, device=q.u.device
    )
    every = 1 if callback is not None else ADAM_CHECK_EVERY
    q.gradient()
    if q.check(0, None):
        return _solution(q)
    for t in range(1, max_iter + 1):
        m.lerp_(q.g, 1.0 - b1)
        v.mul_(b2).addcmul_(q.g, q.g, value=1.0 - b2)
        c2 = math.sqrt(1.0 - b2**t)
        lr = ADAM_LR * max(ADAM_DECAY**t, 1e-6) * c2 / (1.0 - b1**t)
        torch.sqrt(v, out=den).add_(eps)
        q.u.addcdiv_(m, den, value=-lr)
        q.gradient()
        last = t == max_iter
        if callback is not None:
            callback(obj.value(q.theta()))
        if t % every == 0 or last:
            blowup = ADAM_BLOWUP if t % ADAM_LOSS_EVERY == 0 or last else None
            if q.check(t, blowup):
                break
            eps.masked_fill_(~q.open[:, None, :], math.inf)
    return _solution(q)


def _adam_generic(obj: Objective, tol: float, max_iter: int, callback=None) -> Solution:
    """Adam in preconditioned units ``u_i = θ_i · √D_i / ‖y‖`` (optimum of order one), from
    θ = 0, with an exponentially decaying step. Not monotone, so a window diverges only when
    its gradient or loss turns non-finite or its loss exceeds ``ADAM_BLOWUP`` × its cold-start
    value (the loss is checked every ``ADAM_LOSS_EVERY`` iterations and at the end).
    Converged windows are frozen."""
    diag, _ = obj.curvature()
    g = obj.grad(None)
    A, T, p = g.shape
    mon = _Monitor(obj, diag, tol, (A, T))
    b1, b2 = ADAM_BETAS
    # θ-step per unit of u-step: ‖y‖ / √D_i, with ‖y‖ = √(2·loss(0)).
    to_theta = (2.0 * obj.loss_scale).sqrt_()[..., None] * diag.rsqrt()  # (A, T, p)
    theta = param_zeros((A, T), p, g)
    m, v = param_zeros((A, T), p, g), param_zeros((A, T), p, g)
    tiny = torch.finfo(g.dtype).tiny ** 0.5
    limit = ADAM_BLOWUP * obj.loss_scale + mon.slack
    if mon.update(mon.gnorm2(g), None, count=False):
        return Solution(theta, mon.converged, mon.diverged, mon.n_iter)
    for t in range(1, max_iter + 1):
        # Adam's step m/√v is invariant to a per-coordinate scale of g, so the moments are
        # kept on the raw gradient; the u → θ scale and the bias corrections go into the step.
        m.mul_(b1).add_(g, alpha=1.0 - b1)
        v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
        c2 = math.sqrt(1.0 - b2**t)
        lr = ADAM_LR * max(ADAM_DECAY**t, 1e-6) * c2 / (1.0 - b1**t)
        upd = v.sqrt().add_(tiny * c2)
        torch.div(m, upd, out=upd).mul_(to_theta)
        theta.addcmul_(upd, mon.open[..., None], value=-lr)
        last = t == max_iter
        if t % ADAM_LOSS_EVERY == 0 or last or callback is not None:
            loss, g = obj.value_and_grad(theta)
            if callback is not None:
                callback(loss)
            g2 = mon.gnorm2(g)
            bad = ~(loss <= limit) | ~(g2 < math.inf)
        else:
            g = obj.grad(theta)
            g2 = mon.gnorm2(g)
            bad = ~(g2 < math.inf)
        if mon.update(g2, bad):
            break
    return Solution(theta, mon.converged, mon.diverged, mon.n_iter)


def lbfgs(obj: Objective, tol: float, max_iter: int, callback=None) -> Solution:
    """Batched L-BFGS: the two-loop recursion with per-window inner products (windows never
    share a line search or a memory), Jacobi-scaled initial Hessian, Armijo backtracking per
    window. A window whose line search cannot decrease the loss is frozen unconverged; one
    whose loss turns non-finite has diverged."""
    diag, lip = obj.curvature()
    inv_diag = diag.reciprocal()
    loss, g = obj.value_and_grad(param_zeros(obj.loss_scale.shape, diag.shape[-1], diag))
    A, T, p = g.shape
    theta = param_zeros((A, T), p, g)
    mon = _Monitor(obj, diag, tol, (A, T))
    S: list[Tensor] = []
    Y: list[Tensor] = []
    R: list[Tensor] = []  # 1 / yᵀs, 0 where the pair fails the curvature condition
    gamma = (1.0 / lip).expand(A, T)  # first step: the safe gradient step
    if mon.update(mon.gnorm2(g), None, count=False):
        return Solution(theta, mon.converged, mon.diverged, mon.n_iter)
    for _ in range(max_iter):
        # Two-loop recursion: d = −H g with H0 = γ D⁻¹.
        q = g.clone()
        alphas = []
        for s_i, y_i, r_i in zip(reversed(S), reversed(Y), reversed(R)):
            a_i = dot(s_i, q).mul_(r_i)
            q.sub_(y_i * a_i[..., None])
            alphas.append(a_i)
        r = q.mul_(inv_diag).mul_(gamma[..., None])
        for (s_i, y_i, r_i), a_i in zip(zip(S, Y, R), reversed(alphas)):
            b_i = dot(y_i, r).mul_(r_i)
            r.add_(s_i * (a_i - b_i)[..., None])
        d = r.neg_()
        gd_ = dot(g, d)
        not_descent = ~(gd_ < 0)  # reset to the gradient step where H lost definiteness
        if bool((not_descent & mon.open).any()):
            d = torch.where(not_descent[..., None], -g * inv_diag / lip[..., None], d)
            gd_ = dot(g, d)
        # Armijo backtracking, per window.
        t = mon.open.to(g.dtype)  # closed windows take no step
        new_theta, new_loss, new_g = theta, loss, g
        pending = mon.open.clone()
        for _bt in range(LBFGS_MAX_BACKTRACK):
            trial = theta + d * t[..., None]
            f_t, g_t = obj.value_and_grad(trial)
            ok = (f_t <= loss + ARMIJO_C1 * t * gd_ + mon.slack) & pending
            if bool(ok.any()):
                new_theta = torch.where(ok[..., None], trial, new_theta)
                new_loss = torch.where(ok, f_t, new_loss)
                new_g = torch.where(ok[..., None], g_t, new_g)
            pending &= ~ok
            if not bool(pending.any()):
                break
            t = torch.where(pending, t * 0.5, t)
        bad = pending & ~torch.isfinite(f_t)  # could not even evaluate the loss
        stalled = pending & ~bad
        s_k, y_k = new_theta - theta, new_g - g
        ys = dot(y_k, s_k)
        curv_ok = ys > torch.finfo(g.dtype).eps * dot(s_k, s_k * diag)
        R.append(torch.where(curv_ok, 1.0 / torch.where(curv_ok, ys, 1.0), 0.0))
        S.append(s_k)
        Y.append(y_k)
        if len(S) > LBFGS_MEMORY:
            S.pop(0), Y.pop(0), R.pop(0)
        yy = dot(y_k, y_k * inv_diag)
        gamma = torch.where(curv_ok, ys / torch.where(curv_ok, yy, 1.0), gamma)
        theta, loss, g = new_theta, new_loss, new_g
        if callback is not None:
            callback(loss)
        done = mon.update(mon.gnorm2(g), bad)
        mon.open &= ~stalled
        if done or not bool(mon.open.any()):
            break
    return Solution(theta, mon.converged, mon.diverged, mon.n_iter)


SOLVERS = {"newton": newton, "gd": gd, "adam": adam, "lbfgs": lbfgs}


def run_solver(
    name: str, obj: Objective, tol: float | None, max_iter: int | None, callback=None
) -> Solution:
    """Dispatch by name with the documented defaults for tol and max_iter. ``callback(loss)``,
    if given, receives the (A, T) loss at the iterate after every iteration (converged windows
    frozen at theirs)."""
    fn = SOLVERS[name]
    dtype = obj.loss_scale.dtype
    tol = default_tol(name, dtype) if tol is None else tol
    max_iter = default_max_iter(name, obj.quadratic) if max_iter is None else max_iter
    return fn(obj, tol, max_iter, callback)
