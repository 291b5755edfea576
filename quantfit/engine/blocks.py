"""Windows as rows: the (asset, window) pairs that need each window's data, gathered in blocks.

Huber's M-estimator and the exact refit of hard windows cannot work from window sums: they
need the rows themselves. ``gather_rows`` collects the rows of N (asset, window) pairs into flat
``(N, L)`` tensors (L = the longest window; rows outside a pair's window, and missing rows, are
flagged invalid and zeroed), in working units, on the compute device. Callers process the pairs
in blocks sized by a memory budget (``block_pairs``), so memory does not grow with the data.

``exact_refit`` fits least squares on such rows with centred (two-pass) sums and one step of
iterative refinement, and computes RSS from explicit residuals: exact where the moment formulas
cancel (a nearly perfect fit, a nearly constant y).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from quantfit.engine.standardize import TargetTransform
from quantfit.engine.windows import WindowBounds

CPU_BLOCK_ELEMENTS = 2**18  # (pairs × rows) per block on the CPU (cache-sized)
GPU_BLOCK_FRACTION = 0.25  # of the free device memory, across ~16 live (N, L) arrays


def block_pairs(L: int, itemsize: int, device: torch.device) -> int:
    """Pairs per block for windows of L rows."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(1, int(free * GPU_BLOCK_FRACTION) // (16 * L * itemsize))
    return max(16, CPU_BLOCK_ELEMENTS // max(L, 1))


@dataclass
class PairRows:
    """Rows of N (asset, window) pairs, newest row last.

    y : (N, L) working units, 0 at invalid rows;  x : k tensors (N, L), 0 at invalid rows;
    valid : (N, L) bool;  w : (N, L) row weight (decay) × valid;  n : (N,) valid rows.
    """

    y: Tensor
    x: list[Tensor]
    valid: Tensor
    w: Tensor
    n: Tensor


def gather_rows(
    y: Tensor,
    ytf: TargetTransform,
    x: Tensor,
    x_valid: Tensor,
    bounds: WindowBounds,
    decay: float,
    a_idx: Tensor,
    t_idx: Tensor,
    device: torch.device,
    dtype: torch.dtype,
) -> PairRows:
    """Rows of the pairs (``a_idx``, ``t_idx``) (N,) each, ``t_idx`` a window's position in
    ``bounds``: ``y`` (A, T) raw float64 (gathered where it lives, then moved), transformed per
    asset by ``ytf``; ``x`` (T, k) working factors with ``x_valid`` (T,). The rows come back on
    ``device`` in ``dtype``."""
    L = max(bounds.max_length(), 1)
    src = y.device
    a_idx, t_idx = a_idx.to(src), t_idx.to(src)
    last = bounds.last_rows().to(src)[t_idx]  # (N,) the row each window ends at
    pos = last[:, None] + torch.arange(-L + 1, 1, device=src)  # (N, L) row numbers, newest last
    lo = bounds.first_rows().to(src)[t_idx]
    inside = (pos >= lo[:, None]) & (pos >= 0)
    posc = pos.clamp_min(0)
    yv = y[a_idx[:, None], posc].to(device=device, dtype=torch.float64)
    posd, inside = posc.to(device), inside.to(device)
    xv = x.to(device=device, dtype=torch.float64)[posd]  # (N, L, k)
    valid = inside & torch.isfinite(yv) & x_valid.to(device)[posd] & torch.isfinite(xv).all(-1)
    a_dev = a_idx.to(device)
    if ytf.centre is not None:
        yv = yv - ytf.centre.to(device)[a_dev, None]
    if ytf.scale is not None:
        yv = yv / ytf.scale.to(device)[a_dev, None]
    zero = torch.zeros((), dtype=torch.float64, device=device)
    yv = torch.where(valid, yv, zero).to(dtype)
    xs = [torch.where(valid, xv[..., j], zero).to(dtype) for j in range(xv.shape[-1])]
    age = (last.to(device)[:, None] - posd).to(torch.float64)
    w = (torch.ones_like(age) if decay == 1.0 else decay**age) * valid
    return PairRows(yv, xs, valid, w.to(dtype), valid.sum(-1))


@dataclass
class RowFit:
    """Least squares of N pairs from their rows, working units: θ' (N, p), RSS, TSS (N,),
    G⁻¹ (N, p, p) (of ZᵀWZ + Q), ok (N,) bool (solvable)."""

    theta: Tensor
    rss: Tensor
    tss: Tensor
    ginv: Tensor
    ok: Tensor


def weighted_tss(y: Tensor, w: Tensor | None, valid: Tensor | None) -> Tensor:
    """Σ w·(y − ȳ)² by two passes (ȳ the weighted mean) over rows (N, L) with weights ``w``
    (N or 1, L) (None = 1) and ``valid`` (N, L) (None = all), (N,); NaN where y is constant
    (the TSS is at the rounding level of Σwy²)."""
    wy = y if w is None else w * y
    sw = (torch.ones_like(y) if w is None else w.expand_as(y)).sum(-1)
    ybar = wy.sum(-1) / sw
    yc = y - ybar[:, None]
    if valid is not None:
        yc = yc * valid
    tss = (yc * yc if w is None else w * yc * yc).sum(-1)
    yy = (wy * y).sum(-1)
    const = tss <= (8.0 * torch.finfo(y.dtype).eps) ** 2 * yy
    return torch.where(const, math.nan, tss)


def exact_refit(
    rows: PairRows,
    intercept: bool,
    Q: Tensor | None = None,
    q: Tensor | None = None,
    theta: Tensor | None = None,
) -> RowFit:
    """Least squares on the rows of each pair, accurately (see the module docstring).

    Q (p, p) / q (N, p): a prior's ½θᵀQθ − θ·q (Q with a zero intercept row and column).
    ``theta`` (N, p): keep these parameters (an iterative solver's) and only recompute
    RSS and TSS at them from the rows.
    """
    w, y, x = rows.w, rows.y, rows.x
    N = y.shape[0]
    k = len(x)
    p = k + int(intercept)
    dt, dev = y.dtype, y.device
    sw = w.sum(-1)
    X = torch.stack(x, -1)  # (N, L, k)
    xbar = (w[..., None] * X).sum(1) / sw[:, None]  # (N, k) weighted means
    ybar = (w * y).sum(-1) / sw
    if intercept:
        Xc = (X - xbar[:, None, :]) * rows.valid[..., None]
        yc = (y - ybar[:, None]) * rows.valid
    else:
        Xc, yc = X, y
    Qs = torch.zeros((k, k), dtype=dt, device=dev) if Q is None else Q[p - k :, p - k :].to(dt)
    qs = torch.zeros((N, k), dtype=dt, device=dev) if q is None else q[:, p - k :].to(dt)
    WX = w[..., None] * Xc
    G = WX.mT @ Xc + Qs  # (N, k, k)
    L, info = torch.linalg.cholesky_ex(G)
    ok = (info == 0) & torch.isfinite(G).flatten(1).all(-1) & (sw > 0)
    eye = torch.eye(k, dtype=dt, device=dev).expand(N, k, k)
    L = torch.where(ok[:, None, None], L, eye)
    if theta is None:
        b = torch.cholesky_solve(((WX * yc[..., None]).sum(1) + qs)[..., None], L)[..., 0]
        for _ in range(2):  # iterative refinement on the residuals of the normal equations
            r = yc - (Xc @ b[..., None])[..., 0]
            res = (WX * r[..., None]).sum(1) - b @ Qs + qs
            b = b + torch.cholesky_solve(res[..., None], L)[..., 0]
        theta = torch.cat([(ybar - (xbar * b).sum(-1))[:, None], b], -1) if intercept else b
    else:
        theta = theta.to(dt)
        b = theta[:, p - k :]
        if intercept:  # centred residuals need the intercept relative to the means
            r0 = theta[:, 0] - (ybar - (xbar * b).sum(-1))
            yc = yc - r0[:, None] * rows.valid
    r = yc - (Xc @ b[..., None])[..., 0]
    rss = (w * r * r).sum(-1)
    gi = torch.cholesky_inverse(L)  # (Xcᵀ W Xc + Q_ss)⁻¹
    if intercept:
        u = (gi @ xbar[..., None])[..., 0]  # G_c⁻¹ x̄
        ginv = torch.empty((N, p, p), dtype=dt, device=dev)
        ginv[:, 0, 0] = 1.0 / sw + (xbar * u).sum(-1)
        ginv[:, 0, 1:] = -u
        ginv[:, 1:, 0] = -u
        ginv[:, 1:, 1:] = gi
    else:
        ginv = gi
    return RowFit(theta, rss, weighted_tss(rows.y, rows.w, rows.valid), ginv, ok)
