"""The general path: window moments → objective (+ prior) → any solver → window statistics.

Per chunk of assets: the window sums of ``moments`` (per asset, or one shared Gram matrix when
every asset uses the factors' rows), the squared loss as an ``objectives.Objective`` (wrapped by
``penalty.Penalized`` for a prior), one of the solvers, then ``stats``. Handles what newton's
fast path does not: assets with their own missing rows, the first-order solvers, priors, float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

from quantfit.engine.linalg import cholesky, condition_estimate, inverse
from quantfit.engine.moments import window_moments
from quantfit.engine.objectives import Objective, SquaredLoss
from quantfit.engine.penalty import Penalized
from quantfit.engine.solvers import run_solver
from quantfit.engine.stats import (
    covariance_factors,
    refit_flags,
    refit_threshold,
    write_coefficients,
    write_residual_statistics,
)


class MomentPath:
    """Least squares (with an optional prior) from window moments, any solver."""

    def __init__(self, ctx):
        self.ctx = ctx  # rolling.FitContext

    def setup(self, out) -> None:
        if out.se_factor.shape[1] == 1:  # shared rows: one row of SE factors, filled per chunk
            out.se_factor.fill_(float("nan"))

    def fit_chunk(
        self, y: Tensor, a0: int, a1: int, out
    ) -> tuple[Tensor, Tensor, Tensor | None] | None:
        """Fit assets a0:a1 (``y`` (a, T) working units, compute device and dtype) into
        ``out``. Returns the (asset, date) pairs to refit from their rows and, for iterative
        solvers, their θ' (kept; only RSS and TSS are recomputed), or None."""
        c = self.ctx
        p = c.p
        mom = window_moments(y, c.x_dev, c.xv_dev, c.bounds, c.decay, c.intercept, c.shared_rows)

        def rows(flag: Tensor) -> Tensor:  # this chunk's rows of a flag, or its one shared row
            return flag[0:1] if flag.shape[0] == 1 else flag[a0:a1]

        conv_rows, iter_rows = rows(out.converged), rows(out.n_iter)
        rows(out.nobs).copy_(mom.nobs)
        # No window ending before row min_obs − 1 can hold min_obs rows: solve from there on.
        T = mom.nobs.shape[-1]
        t0 = c.bounds.startup(c.min_obs)
        out.fill_startup(t0, slice(a0, a1))
        conv_rows[:, :t0] = False
        iter_rows[:, :t0] = 0
        if t0 >= T:
            return None
        mom = mom.tail(t0)
        usable = (mom.nobs >= c.min_obs) & (mom.sw > 0)  # (B, T')
        base = SquaredLoss(mom, usable)
        obj: Objective = base
        if c.prior is not None:  # λ‖β − b0‖² in the working coordinates
            Q, q, c0 = c.prior_terms(a0, a1)
            obj = Penalized(base, Q, q, c0)
        callback = c.history_callback(a0, a1, usable) if c.history else None
        sol = run_solver(c.solver, obj, c.tol, c.max_iter, callback)
        theta = sol.theta
        H = obj.hessian(None)
        ch = sol.chol if sol.chol is not None else cholesky(H)
        ginv = sol.hinv if sol.hinv is not None else inverse(ch)  # (B, T', p, p) of ZᵀWZ (+ Q)

        if sol.chol is not None and obj is base:  # newton's exact optimum: RSS = yy − θ·zy
            rss = torch.addcmul(mom.yy, theta[..., 0], mom.zy[..., 0], value=-1.0)
            for i in range(1, p):
                rss.addcmul_(theta[..., i], mom.zy[..., i], value=-1.0)
        else:
            rss = base.value(theta).mul_(2.0)
        estimate = usable & ch.ok  # (B, T'), or (a, T') once the solver's flags are included
        if bool(sol.diverged.any()):
            estimate = estimate & ~sol.diverged
        if not bool(torch.isfinite(mom.yy.sum())):  # Σwy'² overflowed: no estimate there
            ai, ti = torch.nonzero(torch.isinf(mom.yy) & estimate, as_tuple=True)
            c.drop_later(ai + a0, ti + t0)
        dof = (mom.nobs - p).to(rss.dtype)
        inv_dof = torch.where(estimate & (dof > 0), 1.0 / dof.clamp_min(1.0), torch.nan)
        inv_sw = torch.where(mom.sw > 0, mom.sw, 1.0).reciprocal_()
        tss = torch.mul(mom.sy, mom.sy)
        torch.addcmul(mom.yy, tss, inv_sw, value=-1.0, out=tss)
        thr = torch.where(
            estimate, refit_threshold(condition_estimate(H, ch), rss.dtype), torch.nan
        )
        flags = refit_flags(rss, tss, mom.yy, thr, c.intercept)
        refit = None
        if flags is not None:
            ai, ti = torch.nonzero(flags, as_tuple=True)
            kept = None if sol.chol is not None else theta[ai, ti]
            refit = (ai + a0, ti + t0, kept)

        units = c.units(a0, a1)
        write_coefficients(theta, units, out.coef[:, a0:a1, t0:], estimate)
        se = covariance_factors(ginv, units)  # (P, B, T')
        dst = out.se_factor[:, 0:1] if out.se_factor.shape[1] == 1 else out.se_factor[:, a0:a1]
        dst[..., t0:].copy_(se.expand_as(dst[..., t0:]))
        write_residual_statistics(
            rss, tss, inv_dof, units, out.r2[a0:a1, t0:], out.resid_vol[a0:a1, t0:], estimate
        )
        conv_rows[:, t0:].copy_(torch.logical_and(sol.converged, estimate))
        zero = torch.zeros((), dtype=torch.int32, device=theta.device)
        iter_rows[:, t0:].copy_(torch.where(estimate, sol.n_iter, zero))
        return refit
