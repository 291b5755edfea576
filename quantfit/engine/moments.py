"""Trailing-window sums and the per-window sufficient statistics of a linear regression.

Conventions
-----------
* Dates run along the **last** dimension. ``y`` is ``(A, T)`` (assets × dates), the factors
  ``x`` are ``(T, k)`` and shared by all assets.
* The window at date ``t`` is the rows ``(t - W, t]`` (the value at ``t`` uses row ``t``, as in
  pandas/statsmodels); before row ``W - 1`` the window is cut short by the start of the data,
  which simply means fewer rows. ``window=None`` means expanding (all rows ``<= t``).
* Row ``s`` of the window at ``t`` has weight ``decay ** (t - s)`` (``decay = 0.5 ** (1/h)``
  for a half-life ``h``; ``decay = 1`` means equal weights).
* Design vector ``z = (1, x_1, ..., x_k)`` with an intercept, ``z = x`` without; ``p = len(z)``.
* Vectors over parameters are returned as logical ``(B, T, p)`` views of ``(B, p, T)``
  storage and matrices as ``(B, T, p, p)`` views of ``(B, p, p, T)`` storage ("parameter-major"),
  so that one parameter's slice ``v[..., i]`` is a contiguous run of dates. ``B`` is ``A``, or
  ``1`` when every asset sees the same valid rows (the Gram matrix is then shared).

Precision: the rolling sums never subtract two long prefix sums. Dates are cut into blocks of
``W`` rows; a window is the head of its own block (forward cumulative sum) plus the tail of the
previous block (block total minus forward sum), so every intermediate is of the size of one or
two windows and float32 keeps ~1e-7 relative precision however long the series is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

#: Rescaling factors inside a decayed cumulative sum stay below 2**_RESCALE_BITS.
_RESCALE_BITS = 30
#: A centred sum of squares below this fraction of Σw·y² is rounding of the window sums, not
#: a variance: y is constant in the window (for returns it would mean |mean| > 10⁵·σ).
TSS_RTOL = 1e-10


def decay_from_halflife(halflife: float | None) -> float:
    """``0.5 ** (1 / halflife)``, or 1.0 (no decay) for ``None``."""
    return 1.0 if halflife is None else 0.5 ** (1.0 / halflife)


def decayed_cumsum_(z: Tensor, decay: float) -> Tensor:
    """In place: ``z[..., t] <- sum_{s <= t} decay**(t - s) * z[..., s]`` along the last dim.

    ``decay == 1`` is a plain cumulative sum. Otherwise the dates are cut into runs of ``c``
    rows with ``decay**-c <= 2**30``: inside a run the sum is a rescaled cumulative sum (no
    overflow, and rounding stays relative to the decayed sum itself), and the runs are chained
    by ``S_end(k) = decay**c * S_end(k-1) + local_end(k)`` in a short loop vectorized over
    everything else.
    """
    if decay == 1.0:
        return z.cumsum_(-1)
    T = z.shape[-1]
    c = max(1, min(T, int(_RESCALE_BITS * math.log(2.0) / -math.log(decay))))
    n_runs = -(-T // c)
    zp = torch.nn.functional.pad(z, (0, n_runs * c - T)) if n_runs * c != T else z
    zr = zp.reshape(*z.shape[:-1], n_runs, c)
    r = torch.arange(c, device=z.device, dtype=z.dtype)
    up = torch.pow(decay, -r)
    loc = (zr * up).cumsum_(-1).mul_(1.0 / up)  # run-local decayed sums
    if n_runs > 1:
        ends = loc[..., -1]  # (..., n_runs)
        carry = torch.zeros_like(ends[..., 0])
        carries = []
        for k in range(n_runs):
            carries.append(carry)
            carry = carry * decay**c + ends[..., k]
        loc += torch.stack(carries, -1)[..., None] * torch.pow(decay, r + 1.0)
    z.copy_(loc.reshape(*z.shape[:-1], n_runs * c)[..., :T])
    return z


def centred_tss(yy: Tensor, sy: Tensor, inv_sw: Tensor) -> Tensor:
    """Σw·(y − ȳ)² = yy − sy²/sw from the window sums ``yy``, ``sy`` (A, T) and ``inv_sw``
    (B, T) = 1/sw; NaN where y is constant in the window (below ``TSS_RTOL``·yy), so that R²,
    1 − RSS/TSS, has no value there instead of a ratio of two rounding errors."""
    tss = torch.mul(sy, sy)
    torch.addcmul(yy, tss, inv_sw, value=-1.0, out=tss)
    # Three passes, no mask: shift by the tolerance, NaN at or below zero, shift back.
    tss.add_(yy, alpha=-TSS_RTOL)
    torch.nn.functional.threshold_(tss, 0.0, float("nan"))
    return tss.add_(yy, alpha=TSS_RTOL)


def window_sum_(z: Tensor, window: int | None, decay: float = 1.0) -> Tensor:
    """Decayed trailing-window sums along the last dim, computed in place when possible.

    ``out[..., t] = sum_{t - W < s <= t, s >= 0} decay**(t - s) * z[..., s]``; ``window=None``
    is expanding. ``z``'s last dim must be a multiple of ``window`` (pad with zeros) unless the
    window covers all dates. Returns the (possibly reshaped) result with ``z``'s shape.
    """
    T = z.shape[-1]
    if window is None or window >= T:
        return decayed_cumsum_(z, decay)
    if T % window:
        raise ValueError("window_sum_: pad the dates to a multiple of the window")
    nb = T // window
    zb = z.view(*z.shape[:-1], nb, window)
    decayed_cumsum_(zb, decay)  # forward sums inside each block of W rows
    if nb > 1:
        head, prev = zb[..., 1:, :], zb[..., :-1, :]
        if decay == 1.0:
            tail = prev[..., -1:] - prev  # sum of rows after offset r in the previous block
        else:
            r = torch.arange(window, device=z.device, dtype=z.dtype)
            tail = prev[..., -1:] * torch.pow(decay, r + 1.0) - prev * decay**window
        head += tail
    return z


@dataclass
class WindowMoments:
    """Weighted sufficient statistics of every trailing window.

    gram : (B, T, p, p)  sum of w·z·zᵀ over valid rows (B = A, or 1 when shared by all assets)
    zy   : (A, T, p)     sum of w·z·y
    yy   : (A, T)        sum of w·y²
    sy   : (A, T)        sum of w·y
    sw   : (B, T)        sum of w (the weighted row count)
    nobs : (B, T)        number of valid rows (unweighted)
    """

    gram: Tensor
    zy: Tensor
    yy: Tensor
    sy: Tensor
    sw: Tensor
    nobs: Tensor

    @property
    def shared(self) -> bool:
        return self.gram.shape[0] == 1 and self.zy.shape[0] != 1


def _pad_len(T: int, window: int | None) -> int:
    if window is None or window >= T:
        return T
    return -(-T // window) * window


def window_moments(
    y: Tensor, x: Tensor, x_valid: Tensor, window: int | None, decay: float, intercept: bool,
    shared: bool | None = None,
) -> WindowMoments:
    """Sufficient statistics of ``y_a = zᵀθ`` for every asset ``a`` and window ending at ``t``.

    y : (A, T) with NaN for missing values; x : (T, k) with NaN rows flagged in
    x_valid : (T,) bool. A row is used for asset ``a`` when ``y[a, t]`` is finite and
    ``x_valid[t]``. When no asset misses a row that the factors have, the Gram matrix and the
    counts are computed once and shared (B = 1); ``shared=True`` says so (the caller checked),
    ``None`` checks here.
    """
    z = design_columns(x, x_valid, intercept, y.dtype)
    zy, yy, sy, rows = asset_window_sums(y, x_valid, z, window, decay, intercept, shared)
    gram, sw, nobs = gram_window_sums(rows, z, window, decay)
    return WindowMoments(gram=gram, zy=zy, yy=yy, sy=sy, sw=sw, nobs=nobs)


def design_columns(x: Tensor, x_valid: Tensor, intercept: bool, dtype: torch.dtype) -> list:
    """The design vector's columns z_i, each (T,) with invalid rows zeroed; ``None`` stands for
    the intercept's column of ones (p = k + intercept entries)."""
    x0 = torch.where(x_valid[:, None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    x0 = x0.to(dtype).T  # (k, T)
    return [None] * int(intercept) + list(x0)


def asset_window_sums(
    y: Tensor, x_valid: Tensor, z: list, window: int | None, decay: float, intercept: bool,
    shared: bool | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Window sums of the per-asset series: ``zy`` (A, T, p) of z·y, ``yy`` (A, T) of y² and
    ``sy`` (A, T) of y, over the rows each asset uses; and those rows (B, T) bool (B = 1 when
    they are x_valid for every asset, see ``window_moments`` for ``shared``)."""
    A, T = y.shape
    p = len(z)
    Tp = _pad_len(T, window)
    dt, dev = y.dtype, y.device
    # Per-asset series: z_i·y (p), y·y, and y alone when there is no intercept column.
    n_ay = p + 1 + int(not intercept)
    ay = torch.empty((A, n_ay, Tp), dtype=dt, device=dev)
    ay[..., T:] = 0.0
    y0 = ay[:, 0 if intercept else p + 1, :T]  # y, missing rows zeroed (= z_0·y with intercept)
    zero = torch.zeros((), dtype=dt, device=dev)
    # The rows are shared when y has no missing value where x has none; one reduction decides
    # (a sum is finite exactly when every term is).
    if bool(x_valid.all()):
        y0.copy_(y)
    else:
        torch.where(x_valid, y, zero, out=y0)
    if shared is None:
        shared = bool(torch.isfinite(y0.sum()))
    rows = x_valid[None, :] if shared else (y - y == 0) & x_valid  # finite; NaN/±inf missing
    if not shared:
        torch.where(rows, y, zero, out=y0)
    for i in range(p):
        if z[i] is not None:
            torch.mul(y0, z[i], out=ay[:, i, :T])
    torch.mul(y0, y0, out=ay[:, p, :T])
    window_sum_(ay, window, decay)
    zy = ay[:, :p, :T].permute(0, 2, 1)
    sy = ay[:, 0, :T] if intercept else ay[:, p + 1, :T]
    return zy, ay[:, p, :T], sy, rows


def gram_window_sums(
    rows: Tensor, z: list, window: int | None, decay: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Window sums over the used ``rows`` (B, T) bool: the Gram matrix ``gram`` (B, T, p, p)
    of w·z·zᵀ, the weighted count ``sw`` (B, T) and the row count ``nobs`` (B, T)."""
    B, T = rows.shape
    p = len(z)
    Tp = _pad_len(T, window)
    col = next((c for c in z if c is not None), None)
    dt, dev = (col.dtype, col.device) if col is not None else (torch.float64, rows.device)
    # Gram triangle + weighted count, then the unweighted count.
    tri = [(i, j) for i in range(p) for j in range(i, p)]
    mf = rows.to(dt)
    bz = torch.zeros((B, len(tri) + 1, Tp), dtype=dt, device=dev)
    for s, (i, j) in enumerate(tri):
        if z[i] is None and z[j] is None:
            bz[:, s, :T] = mf
        elif z[i] is None or z[j] is None:
            zz = z[j] if z[i] is None else z[i]
            torch.mul(mf, zz, out=bz[:, s, :T])
        else:
            torch.mul(mf, z[i] * z[j], out=bz[:, s, :T])
    bz[:, len(tri), :T] = mf
    window_sum_(bz, window, decay)
    if decay == 1.0:
        nobs = bz[:, len(tri), :T]
    else:
        cnt = torch.zeros((B, Tp), dtype=dt, device=dev)
        cnt[:, :T] = mf
        nobs = window_sum_(cnt, window, 1.0)[:, :T]
    # Parameter-major Gram: one gather of the triangle into (B, p, p, T).
    idx = torch.tensor(
        [tri.index((min(i, j), max(i, j))) for i in range(p) for j in range(p)], device=dev
    )
    gram = bz[:, idx, :T].view(B, p, p, T).permute(0, 3, 1, 2)
    return gram, bz[:, len(tri), :T], nobs
