"""Exact least squares when every asset's windows hold the same rows: newton's fast path.

When no asset misses a row that the factors have (a clean universe of daily returns), all
assets share each window's rows, so its Gram matrix G, G⁻¹, row count and degrees of freedom:
``shared_windows`` computes them once per fit, (1, T) each. What is left per asset is a few
multiply-adds per date, written straight into the result tensors, chunk by chunk:

    θ    = G⁻¹ zy                       p² passes over the chunk
    RSS  = yy − θ·zy                    p passes (θ is the exact optimum)
    σ    = √(RSS / (n − p))             resid_vol
    SE_i = σ · √[G⁻¹]_ii                one pass each: the square root is shared
    R²   = 1 − RSS / (yy − sy²/sw)      centred; NaN where y is constant in the window

Windows without an estimate (too few rows, singular G) have NaN in the shared G⁻¹, so θ, RSS
and everything derived from them come out NaN there without a masking pass over the assets;
``n − p ≤ 0`` gives NaN σ and SE (θ and R² stay) through a shared 1/(n − p). The formulas are
the general path's (``rolling._fit_chunk``), which handles everything else (per-asset rows,
first-order solvers, priors, float32).

Why a separate path: the general path rebuilds the shared Gram matrix, its factor and inverse
for every chunk and masks every result with ``where``; here a chunk costs only its ~25
elementwise passes over (assets × dates), the window sums included (newton on W1, 500 × 2,520:
47.6 ms before, 25–30 ms with it, on the 2-core benchmark box).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from quantfit.engine.linalg import cholesky, inverse, matvec
from quantfit.engine.moments import (asset_window_sums, centred_tss, design_columns,
                                     gram_window_sums)

#: Target size of one chunk of assets (assets × dates) on the CPU: its dozen working arrays
#: stay within a few MB (cache), and per-op overhead stays small. On W1 anything from 16 to
#: 128 assets (40k–320k cells) timed the same; 8 assets was 1.7× slower.
CHUNK_ELEMENTS = 100_000


@dataclass
class SharedWindows:
    """Per-window quantities that every asset shares; (1, T') tensors cover rows t0 onward."""

    window: int | None  # rows per window, None = expanding
    decay: float  # row weight per row of age (1.0 = equal weights)
    intercept: bool
    z: list  # design columns (see moments.design_columns)
    x_valid: Tensor  # (T,) bool
    all_valid: bool  # no factor row is missing
    t0: int  # first window that can hold min_obs rows
    ginv: Tensor  # (1, T', p, p) G⁻¹, NaN where there is no estimate
    se_scale: Tensor  # (1, T', p) √[G⁻¹]_ii
    inv_sw: Tensor  # (1, T') 1/Σw
    inv_dof: Tensor  # (1, T') 1/(n − p), NaN where n ≤ p or there is no estimate
    nobs: Tensor  # (1, T) valid rows per window
    estimate: Tensor  # (1, T) bool, the windows with an estimate


def shared_windows(
    x: Tensor, x_valid: Tensor, window: int | None, decay: float, intercept: bool, min_obs: int
) -> SharedWindows:
    """The shared Gram matrix and its by-products for factors x (T, k) on the compute device."""
    T = x.shape[0]
    z = design_columns(x, x_valid, intercept, x.dtype)
    p = len(z)
    gram, sw, nobs = gram_window_sums(x_valid[None, :], z, window, decay)
    t0 = min(min_obs - 1, T)
    gram, sw_t, n_t = gram[:, t0:], sw[:, t0:], nobs[:, t0:]
    ch = cholesky(gram)
    est = (n_t >= min_obs) & (sw_t > 0) & ch.ok  # (1, T')
    nan = torch.tensor(float("nan"), dtype=x.dtype, device=x.device)
    ginv = torch.where(est[..., None, None], inverse(ch), nan)
    se_scale = torch.stack([ginv[..., i, i] for i in range(p)], -1).sqrt_()
    dof = n_t - p
    estimate = torch.zeros((1, T), dtype=torch.bool, device=x.device)
    estimate[:, t0:] = est
    return SharedWindows(
        window=window, decay=decay, intercept=intercept, z=z, x_valid=x_valid, all_valid=bool(x_valid.all()), t0=t0, ginv=ginv, se_scale=se_scale,
        inv_sw=torch.where(sw_t > 0, sw_t, 1.0).reciprocal_(),
        inv_dof=torch.where(est & (dof > 0), 1.0 / dof.clamp_min(1.0), nan),
        nobs=nobs, estimate=estimate)


def fit_shared_chunk(
    y: Tensor, sh: SharedWindows, sums: tuple, coef: Tensor, stderr: Tensor, r2: Tensor,
    resid_vol: Tensor, sum_coef: Tensor, sum_stderr: Tensor,
) -> None:
    """Fit the assets of ``y`` (a, T) and write their results from row t0 on, in place:
    ``coef`` / ``stderr`` (p, a, T), ``r2`` / ``resid_vol`` (a, T), ``sum_coef`` /
    ``sum_stderr`` (len(sums), a, T) for the parameter groups in ``sums`` (Σ_S θ and its SE).
    Rows before t0 have no estimate: the caller fills them with NaN once for all chunks."""
    t0, p = sh.t0, len(sh.z)
    if t0 >= y.shape[1]:
        return
    if sh.decay == 1.0:
        zy, yy, sy = _prefix_window_sums(y, sh)
    else:
        zy, yy, sy, _ = asset_window_sums(y, sh.x_valid, sh.z, sh.window, sh.decay,
                                          sh.intercept, True)
        zy, yy, sy = zy[:, t0:], yy[:, t0:], sy[:, t0:]
    coef, stderr, r2, resid_vol = coef[..., t0:], stderr[..., t0:], r2[:, t0:], resid_vol[:, t0:]
    theta = matvec(sh.ginv, zy, out=coef.permute(1, 2, 0))  # (a, T', p) view of coef

    rss = torch.addcmul(yy, theta[..., 0], zy[..., 0], value=-1.0)
    for i in range(1, p):
        rss.addcmul_(theta[..., i], zy[..., i], value=-1.0)
    rss.clamp_min_(0.0)  # rounding of a perfect fit; NaN stays NaN

    tss = centred_tss(yy, sy, sh.inv_sw)
    one = torch.ones((), dtype=yy.dtype, device=yy.device)
    torch.addcdiv(one, rss, tss, value=-1.0, out=r2)
    del tss

    vol = torch.mul(rss, sh.inv_dof, out=resid_vol).sqrt_()
    del rss
    for i in range(p):
        torch.mul(vol, sh.se_scale[..., i], out=stderr[i])
    for g, grp in enumerate(sums):  # Σ_S θ and σ·√(Σ_{i,j∈S} [G⁻¹]_ij)
        csum = sum_coef[g, :, t0:]
        csum.copy_(theta[..., grp[0]])
        for i in grp[1:]:
            csum.add_(theta[..., i])
        vsum = sum(sh.ginv[..., i, j] for i in grp for j in grp)
        torch.mul(vol, vsum.clamp_min(0.0).sqrt(), out=sum_stderr[g, :, t0:])


def _prefix_window_sums(y: Tensor, sh: SharedWindows) -> tuple[Tensor, Tensor, Tensor]:
    """Unweighted window sums of z·y (a, T', p), y² and y (a, T') from row t0 on, as
    differences of prefix sums: two passes per series where moments.window_sum_'s block sums
    take three. In float64 the difference of two prefix sums over decades of daily returns
    loses a few of 16 digits, far below the 1e-8 this path is tested to; the block sums exist
    for float32, which this path never runs in."""
    a, T = y.shape
    p, t0, window, intercept = len(sh.z), sh.t0, sh.window, sh.intercept
    n = p + 1 + int(not intercept)  # z·y (p), y², and y alone without an intercept
    iy = 0 if intercept else p + 1
    csum = torch.empty((a, n, T), dtype=y.dtype, device=y.device)
    y0 = y if sh.all_valid else torch.where(sh.x_valid, y, 0.0)  # rows x lacks count as 0
    for i, zi in enumerate(sh.z):
        if zi is not None:
            torch.mul(y0, zi, out=csum[:, i])
    torch.mul(y0, y0, out=csum[:, p])
    csum[:, 1 if intercept else 0:p + 1].cumsum_(-1)  # every series but y itself ...
    torch.cumsum(y0, -1, out=csum[:, iy])  # ... which goes straight from y
    if window is None or window >= T:  # expanding: the prefix sums are the window sums
        sums = csum[..., t0:]
    else:
        sums = torch.empty((a, n, T - t0), dtype=y.dtype, device=y.device)
        s = max(t0, window)  # windows ending before row `window` start at row 0
        if s > t0:
            sums[..., :s - t0] = csum[..., t0:s]
        torch.sub(csum[..., s:], csum[..., s - window:T - window], out=sums[..., s - t0:])
    return sums[:, :p].permute(0, 2, 1), sums[:, p], sums[:, iy]
