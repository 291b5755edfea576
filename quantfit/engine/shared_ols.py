"""Exact least squares when every asset's windows hold the same rows: newton's fast path.

When no asset misses a row that the factors have (a clean universe of daily returns), all
assets share each window's rows, so its Gram matrix G, G⁻¹, row count, degrees of freedom and
standard-error factors: ``SharedOLS.setup`` computes them once per fit, (1, T) each. What is
left per asset is a few multiply-adds per date, written straight into the results, chunk by
chunk of assets small enough to stay in cache:

    θ'   = G⁻¹ zy                       p² passes (into the result rows), then θ = M θ'
    RSS  = yy − θ'·zy                   p passes (θ' is the exact optimum)
    TSS  = yy − sy²/Σw                  then R², σ (stats.write_residual_statistics)

Windows without an estimate (too few rows, singular G) have NaN in the shared G⁻¹, so θ, RSS
and everything derived from them come out NaN there without a masking pass over the assets;
``n − p ≤ 0`` gives NaN σ through a shared 1/(n − p). The formulas are the ones in ``stats``,
shared with every other path; windows whose RSS formula could cancel are refitted exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from quantfit.engine.linalg import cholesky, condition_estimate, inverse, matvec
from quantfit.engine.moments import asset_window_sums, design_columns, gram_window_sums
from quantfit.engine.stats import (
    covariance_factors,
    refit_flags,
    refit_threshold,
    write_coefficients,
    write_residual_statistics,
)

#: Target size of one chunk of assets (assets × dates) on the CPU: its dozen working arrays
#: stay within a few MB (cache), and per-op overhead stays small.
CHUNK_ELEMENTS = 100_000


class SharedOLS:
    """newton on the squared loss, float64, every asset using the factors' valid rows."""

    def __init__(self, ctx):
        self.ctx = ctx  # rolling.FitContext

    def setup(self, out) -> None:
        """Shared per-window quantities; writes nobs, flags and the SE factors of every asset."""
        c = self.ctx
        x, xv = c.x_dev, c.xv_dev
        self.z = design_columns(x, xv, c.intercept, x.dtype)
        gram, sw, nobs = gram_window_sums(xv[None, :], self.z, c.bounds, c.decay)
        self.t0 = t0 = c.bounds.startup(c.min_obs)
        gram, sw_t, n_t = gram[:, t0:], sw[:, t0:], nobs[:, t0:]
        ch = cholesky(gram)
        self.est = est = (n_t >= c.min_obs) & (sw_t > 0) & ch.ok  # (1, T')
        nan = torch.tensor(float("nan"), dtype=x.dtype, device=x.device)
        self.ginv = torch.where(est[..., None, None], inverse(ch), nan)
        dof = (n_t - c.p).to(x.dtype)
        self.inv_dof = torch.where(est & (dof > 0), 1.0 / dof.clamp_min(1.0), nan)
        self.inv_sw = torch.where(sw_t > 0, sw_t, 1.0).reciprocal_()
        self.threshold = refit_threshold(condition_estimate(gram, ch), x.dtype)
        self.all_valid = bool(xv.all())
        out.fill_startup(t0)
        out.se_factor[:, :, t0:] = covariance_factors(self.ginv, c.units(0, 0))
        out.se_factor[:, :, :t0] = float("nan")
        out.converged.zero_()
        if c.ranges is None:
            out.nobs.copy_(nobs)
            out.converged[:, t0:] = est
            out.n_iter.copy_(out.converged)
        else:  # per asset: the factors' rows inside the asset's run [first, last]
            out.nobs.copy_(_run_counts(xv, c.ranges.to(xv.device), c.bounds))
            out.n_iter.zero_()

    def fit_chunk(self, y: Tensor, a0: int, a1: int, out) -> tuple[Tensor, Tensor] | None:
        """Fit assets a0:a1 (``y`` (a, T) working units on the compute device) into ``out``;
        returns the (asset, date) pairs to refit from their rows, or None."""
        c, t0, p = self.ctx, self.t0, self.ctx.p
        if t0 >= c.bounds.n:
            return None
        runs = c.ranges is not None
        zy, yy, sy, _ = asset_window_sums(
            y, c.xv_dev, self.z, c.bounds, c.decay, c.intercept, shared=True, zero_missing=runs
        )
        zy, yy, sy = zy[:, t0:], yy[:, t0:], sy[:, t0:]
        units = c.units(a0, a1)
        coef = out.coef[:, a0:a1, t0:]
        theta = matvec(self.ginv, zy, out=coef[:p].permute(1, 2, 0))  # θ' straight into coef

        rss = torch.addcmul(yy, theta[..., 0], zy[..., 0], value=-1.0)
        for i in range(1, p):
            rss.addcmul_(theta[..., i], zy[..., i], value=-1.0)
        tss = torch.mul(sy, sy)
        torch.addcmul(yy, tss, self.inv_sw, value=-1.0, out=tss)
        flags = refit_flags(rss, tss, yy, self.threshold, c.intercept)
        if not bool(torch.isfinite(yy.sum())):  # Σwy'² overflowed (a value beyond ~1e154)
            ai, ti = torch.nonzero(torch.isinf(yy) & self.est, as_tuple=True)
            c.drop_later(ai + a0, ti + t0)
        write_coefficients(theta, units, coef)
        write_residual_statistics(
            rss, tss, self.inv_dof, units, out.r2[a0:a1, t0:], out.resid_vol[a0:a1, t0:]
        )
        if runs:  # windows that reach past an asset's run have too few rows: no estimate
            inside = _inside_runs(c.ranges[a0:a1].to(y.device), c.bounds, t0)
            outside = ~inside
            coef.masked_fill_(outside, float("nan"))
            out.r2[a0:a1, t0:].masked_fill_(outside, float("nan"))
            out.resid_vol[a0:a1, t0:].masked_fill_(outside, float("nan"))
            conv = out.converged[a0:a1, t0:]
            conv.copy_(inside & self.est)
            out.n_iter[a0:a1, t0:].copy_(conv)
            if flags is not None:
                flags &= inside
                if not bool(flags.any()):
                    flags = None
        if flags is None:
            return None
        ai, ti = torch.nonzero(flags, as_tuple=True)
        return ai + a0, ti + t0


def _inside_runs(ranges: Tensor, bounds, t0: int) -> Tensor:
    """(a, n − t0) bool: the windows from t0 on that lie inside each asset's run of valid rows
    [first, last] (``ranges`` (a, 2)): first <= first row and last row <= last."""
    lo = bounds.first_rows()[t0:].to(ranges.device)
    hi = bounds.last_rows()[t0:].to(ranges.device)
    return (lo >= ranges[:, :1]) & (hi <= ranges[:, 1:])


def _run_counts(x_valid: Tensor, ranges: Tensor, bounds) -> Tensor:
    """(A, n) int32: the factors' valid rows in each window that fall inside each asset's run
    [first, last] — the asset's own valid rows (exact integer counts)."""
    T = x_valid.shape[0]
    xc = torch.nn.functional.pad(x_valid.to(torch.int64).cumsum(0), (1, 0))
    lo = torch.maximum(bounds.first_rows().to(x_valid.device)[None, :], ranges[:, :1])
    hi = torch.minimum(bounds.last_rows().to(x_valid.device)[None, :], ranges[:, 1:])
    n = xc[(hi + 1).clamp(0, T)] - xc[lo.clamp(0, T)]
    return torch.where(hi >= lo, n, 0).to(torch.int32)
