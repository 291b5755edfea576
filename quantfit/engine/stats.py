"""The window statistics: one place for every formula that turns a fit into results.

Every path (newton's shared-rows fast path, the general moment path, Huber, and the exact
refit of hard windows) ends here with, per window, the parameters θ' in working units (see
``standardize``), the weighted residual sum of squares RSS, the centred total sum of squares
TSS, 1/(n − p) and G⁻¹ (the inverse of the window's Gram matrix ZᵀWZ, plus the prior's Q):

    coef   θ = s_y · M θ'  (+ c_y on alpha)           original units
    sum    Σ_{i∈S} θ_i     (Dimson's summed beta)
    SE     σ_se · √[V]_ii,  V = M G⁻¹ Mᵀ              (√(Σ_{i,j∈S} V_ij) for a sum)
    σ      s_y · √(RSS / (n − p))                      resid_vol
    R²     1 − RSS / TSS, in [0, 1] with an intercept (≤ 1 without), NaN for a constant y

σ_se is σ for least squares and Huber's robust scale factor for Huber (statsmodels' H1).
Standard errors are stored as the factor √[V]_ii (shared by every asset when the rows are) and
multiplied by σ_se on access, so a fit writes p fewer (assets × dates) arrays.

Accuracy guard: RSS = yy − θ·zy (and TSS = yy − sy²/sw) cancel when the fit is nearly perfect
(or y nearly constant). ``refit_flags`` marks the windows where the rounding error of those
formulas, about ε·κ·Σwy² (κ from the Cholesky factor), could exceed ``REFIT_RTOL`` of RSS; the
caller recomputes those (rare) windows from their rows (``blocks.exact_refit``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

#: Relative accuracy of RSS below which a window is refitted from its rows, per precision.
REFIT_RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}
#: Rounding of the moment formulas, in units of ε·κ·Σwy² (window sums of W rows included).
REFIT_C = 16.0


def sqrt_(t: Tensor) -> Tensor:
    """In-place square root. On the CPU in float64 through numpy, whose vectorized sqrt is
    about twice as fast as torch's here (σ of every window is one of a fit's larger passes)."""
    if t.device.type == "cpu" and t.dtype == torch.float64 and t.numel() > 4096:
        a = t.numpy()
        np.sqrt(a, out=a)
        return t
    return t.sqrt_()


def refit_threshold(kappa: Tensor, dtype: torch.dtype) -> Tensor:
    """Per window: refit when RSS < threshold · Σwy² (``kappa`` from ``linalg.condition_estimate``)."""
    return kappa * (REFIT_C * torch.finfo(dtype).eps / REFIT_RTOL.get(dtype, 1e-4))


@dataclass
class Units:
    """How one chunk's working units map back: θ = scale · M θ' (+ centre on alpha)."""

    M: Tensor | None  # (p, p) float64 on the compute device; None = identity
    centre: Tensor | None  # (a, 1) y centres of the chunk's assets (alpha), or None
    scale: Tensor | None  # (a, 1) y scales of the chunk's assets, or None
    intercept: bool
    sums: tuple = ()  # groups of parameter indices reported as one summed term

    def diagonal(self) -> bool:
        """M only rescales the slopes and shifts alpha (so θ can be mapped in place)."""
        if self.M is None:
            return True
        ic = int(self.intercept)
        S = self.M[ic:, ic:]
        return bool((S == torch.diag(S.diagonal())).all())


def covariance_factors(ginv: Tensor, units: Units) -> Tensor:
    """√[V]_ii and √(Σ_{i,j∈S} V_ij) with V = M G⁻¹ Mᵀ, from ``ginv`` (B, T', p, p):
    (p + len(sums), B, T') float64."""
    p = ginv.shape[-1]
    g = ginv.to(torch.float64)
    M = units.M
    rows = [] if M is None else [M[i].to(g.device) for i in range(p)]

    def quad(w: Tensor | None, i: int | None = None) -> Tensor:
        """√(wᵀ G⁻¹ w), with w scaled to a unit maximum first: M's entries may be powers of
        two far from 1 (rescaled columns) whose squares would overflow or underflow."""
        if w is None:  # identity M: a diagonal entry
            return g[..., i, i].clamp_min(0.0).sqrt()
        m = float(w.abs().max())
        if m == 0.0:
            return torch.zeros_like(g[..., 0, 0])
        u = w / m
        nz = [j for j in range(p) if float(u[j]) != 0.0]
        out = torch.zeros_like(g[..., 0, 0])
        for j in nz:
            for k in nz:
                out = out + g[..., j, k] * (u[j] * u[k])
        return out.clamp_min(0.0).sqrt().mul_(m)

    factors = [quad(rows[i] if rows else None, i) for i in range(p)]
    for grp in units.sums:
        w = torch.zeros(p, dtype=torch.float64, device=g.device)
        for i in grp:
            w += rows[i] if rows else torch.nn.functional.one_hot(torch.tensor(i), p).to(w)
        factors.append(quad(w))
    return torch.stack(factors)


def write_coefficients(
    theta: Tensor, units: Units, dst: Tensor, estimate: Tensor | None = None
) -> None:
    """θ' (a, T', p) in working units -> ``dst`` (p + len(sums), a, T') in original units.

    ``theta`` may be a view of ``dst`` (its first p rows): it is then mapped in place, which
    needs a diagonal M (``units.diagonal()``). ``estimate`` (B, T') bool: NaN elsewhere (None:
    the caller's θ is NaN there already). ``dst`` may live on another device (the host): the
    numbers are formed where θ is, in float64, and copied once.
    """
    p = theta.shape[-1]
    inplace = theta.data_ptr() == dst.data_ptr()  # the fast path solves straight into dst
    if inplace:
        _map_in_place(theta, units, dst)
        work = dst
    else:
        same = dst.device == theta.device
        work = dst if same else torch.empty(dst.shape, dtype=torch.float64, device=theta.device)
        _map(theta.to(torch.float64), units, work)
    if units.scale is not None:
        work[:p].mul_(units.scale.to(work))
    if units.centre is not None and units.intercept:
        work[0].add_(units.centre.to(work))
    if estimate is not None:
        work[:p].masked_fill_(~estimate.to(work.device), float("nan"))
    for g, grp in enumerate(units.sums):
        s = work[p + g]
        s.copy_(work[grp[0]])
        for i in grp[1:]:
            s.add_(work[i])
    if work is not dst:
        dst.copy_(work)


def _map(theta: Tensor, units: Units, dst: Tensor) -> None:
    """dst[i] = Σ_j M_ij θ'_j (θ' copied when M is the identity)."""
    p = theta.shape[-1]
    if units.M is None:
        for i in range(p):
            dst[i].copy_(theta[..., i])
        return
    Md = units.M.to(device=theta.device)
    for i in range(p):
        nz = [j for j in range(p) if float(Md[i, j]) != 0.0]
        torch.mul(theta[..., nz[0]], float(Md[i, nz[0]]), out=dst[i])
        for j in nz[1:]:
            dst[i].add_(theta[..., j], alpha=float(Md[i, j]))


def _map_in_place(theta: Tensor, units: Units, dst: Tensor) -> None:
    """θ = M θ' where θ' is ``dst`` itself; M must only shift alpha and scale each slope."""
    if units.M is None:
        return
    if not units.diagonal():
        raise ValueError("write_coefficients in place needs a diagonal M")
    p = theta.shape[-1]
    Md = units.M.to(device=theta.device)
    if units.intercept:  # alpha first: it reads the slopes before they are rescaled
        for j in range(1, p):
            if float(Md[0, j]) != 0.0:
                dst[0].add_(theta[..., j], alpha=float(Md[0, j]))
    for j in range(int(units.intercept), p):
        if float(Md[j, j]) != 1.0:
            dst[j].mul_(float(Md[j, j]))


def write_residual_statistics(
    rss: Tensor,
    tss: Tensor,
    inv_dof: Tensor,
    units: Units,
    r2: Tensor,
    resid_vol: Tensor,
    estimate: Tensor | None = None,
) -> None:
    """R² into ``r2`` and σ = √(RSS/(n − p)) into ``resid_vol`` (a, T') from ``rss`` / ``tss``
    (a, T') in working units² and ``inv_dof`` (B, T') = 1/(n − p) (NaN where there is no σ).
    NaN where ``estimate`` is False (None: the inputs are NaN there already). A negative RSS
    (rounding of a perfect fit) gives NaN σ: such windows are flagged for the exact refit.
    σ is scaled back to y's units in float64 (a power of two far from 1 may not fit float32)."""
    one = torch.ones((), dtype=rss.dtype, device=rss.device)
    direct = r2.dtype == rss.dtype and r2.device == rss.device
    val = torch.addcdiv(one, rss, tss, value=-1.0, out=r2 if direct else None)
    # RSS ≤ TSS with an intercept: R² in [0, 1] (a NaN, constant y, stays NaN).
    val.clamp_(0.0, 1.0) if units.intercept else val.clamp_(max=1.0)
    if estimate is not None:
        val.masked_fill_(~estimate, float("nan"))
    if not direct:
        r2.copy_(val)
    direct = resid_vol.dtype == rss.dtype and resid_vol.device == rss.device
    vol = sqrt_(torch.mul(rss, inv_dof, out=resid_vol if direct else None))
    if estimate is not None:
        vol.masked_fill_(~estimate, float("nan"))
    if not direct:
        resid_vol.copy_(vol)
    if units.scale is not None:
        resid_vol.mul_(units.scale.to(resid_vol))


def refit_flags(
    rss: Tensor, tss: Tensor, yy: Tensor, threshold: Tensor, intercept: bool
) -> Tensor | None:
    """(a, T') bool: windows whose RSS (or, without an intercept, TSS) is too small against
    Σwy² for the moment formulas; None when there is none (the common case).

    With an intercept and finite inputs (every window estimated) one pass and a minimum
    decide that there is none; NaN would hide in a minimum, so otherwise the full test runs."""
    if intercept and bool(torch.isfinite(threshold).all()):
        d = torch.addcmul(rss, yy, threshold, value=-1.0)  # RSS − threshold·Σwy²
        low = d.amin()
        if bool(low >= 0):  # NaN (an overflow) compares False: take the full test then
            return None
        flags = d < 0
        return flags if bool(flags.any()) else None
    lim = yy * threshold
    flags = rss < lim
    if not intercept:
        flags |= tss < lim
    return flags if bool(flags.any()) else None


def r2_constant_threshold(dtype: torch.dtype) -> float:
    """A two-pass TSS at or below this fraction of Σwy² is rounding: y is constant (R² NaN)."""
    return (8.0 * torch.finfo(dtype).eps) ** 2


def write_pair_statistics(
    out,
    a_idx: Tensor,
    t_idx: Tensor,
    theta: Tensor,
    rss: Tensor,
    tss: Tensor,
    n: Tensor,
    ginv: Tensor | None,
    units: Units,
    estimate: Tensor,
    se_sigma2: Tensor | None = None,
) -> None:
    """Statistics of N (asset, window) pairs fitted one by one (Huber, the exact refit):
    θ' (N, p), RSS / TSS / n (N,), G⁻¹ (N, p, p) or None (keep the stored SE factors: the
    window's Gram matrix is unchanged), ``units`` with (N, 1) centre / scale; written into the
    ``RollingOutput`` ``out`` at (``a_idx``, ``t_idx``). ``se_sigma2``: Huber's variance factor
    of the SE (working units²), stored as ``out.se_sigma``."""
    N, p = theta.shape
    P = p + len(units.sums)
    dt = torch.float64
    dev = theta.device
    est = estimate[:, None]
    coef = torch.empty((P, N, 1), dtype=dt, device=dev)
    write_coefficients(theta[:, None, :].to(dt), units, coef, est)
    r2 = torch.empty((N, 1), dtype=dt, device=dev)
    vol = torch.empty((N, 1), dtype=dt, device=dev)
    dof = (n - p).to(dt)
    inv_dof = torch.where(estimate & (dof > 0), 1.0 / dof.clamp_min(1.0), math.nan)[:, None]
    write_residual_statistics(
        rss.to(dt)[:, None], tss.to(dt)[:, None], inv_dof, units, r2, vol, est
    )
    a, t = a_idx.to(out.coef.device), t_idx.to(out.coef.device)
    out.coef[:, a, t] = coef[..., 0].to(out.coef)
    out.r2[a, t] = r2[:, 0].to(out.r2)
    out.resid_vol[a, t] = vol[:, 0].to(out.resid_vol)
    if ginv is not None:
        se = covariance_factors(ginv[:, None], units)  # (P, N, 1)
        out.se_factor[:, a, t] = se[..., 0].to(out.se_factor)
    if se_sigma2 is not None:
        s = torch.where(estimate, se_sigma2.to(dt).clamp_min(0.0).sqrt(), math.nan)
        if units.scale is not None:
            s = s * units.scale[:, 0].to(s)
        out.se_sigma[a, t] = s.to(out.se_sigma)
