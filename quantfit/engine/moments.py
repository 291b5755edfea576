"""The per-window sufficient statistics of a linear regression, from exact window sums.

Conventions
-----------
* ``y`` is ``(A, T)`` (assets × dates) in working units (see ``standardize``), the factors
  ``x`` are ``(T, k)`` and shared by all assets; windows are ``WindowBounds`` (``windows``).
* Design vector ``z = (1, x_1, ..., x_k)`` with an intercept, ``z = x`` without; ``p = len(z)``.
* Row ``s`` of the window at ``t`` has weight ``decay ** (t − s)``.
* Vectors over parameters are returned as logical ``(B, T, p)`` views of ``(B, p, T)``
  storage and matrices as ``(B, T, p, p)`` views of ``(B, p, p, T)`` storage ("parameter-major"),
  so that one parameter's slice ``v[..., i]`` is a contiguous run of dates. ``B`` is ``A``, or
  ``1`` when every asset uses the same rows (the Gram matrix is then shared).

Every window sum goes through ``windows.window_sums_`` (only rows of the window are added) and
row counts are integer counts, so no window's statistics depend on values outside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from quantfit.engine.windows import WindowBounds, count_rows, padded_length, window_sums_


@dataclass
class WindowMoments:
    """Weighted sufficient statistics of every window (n windows: T, or fewer when the
    bounds keep only some window ends).

    gram : (B, n, p, p)  Σ w·z·zᵀ over the rows used (B = A, or 1 when shared by all assets)
    zy   : (A, n, p)     Σ w·z·y
    yy   : (A, n)        Σ w·y²
    sy   : (A, n)        Σ w·y
    sw   : (B, n)        Σ w (the weighted row count)
    nobs : (B, n)        number of rows used (int32)
    """

    gram: Tensor
    zy: Tensor
    yy: Tensor
    sy: Tensor
    sw: Tensor
    nobs: Tensor

    def tail(self, t0: int) -> WindowMoments:
        """The windows from ``t0`` on (views)."""
        return WindowMoments(
            self.gram[:, t0:],
            self.zy[:, t0:],
            self.yy[:, t0:],
            self.sy[:, t0:],
            self.sw[:, t0:],
            self.nobs[:, t0:],
        )


def design_columns(x: Tensor, x_valid: Tensor, intercept: bool, dtype: torch.dtype) -> list:
    """The design vector's columns z_i, each (T,) with invalid rows zeroed; ``None`` stands for
    the intercept's column of ones (p = k + intercept entries)."""
    x0 = torch.where(x_valid[:, None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    x0 = x0.to(dtype).T  # (k, T)
    return [None] * int(intercept) + list(x0)


def window_moments(
    y: Tensor,
    x: Tensor,
    x_valid: Tensor,
    bounds: WindowBounds,
    decay: float,
    intercept: bool,
    shared: bool,
) -> WindowMoments:
    """Sufficient statistics of ``y_a = zᵀθ`` for every asset ``a`` and window.

    y : (A, T), NaN/±inf = missing; x : (T, k) with its missing rows flagged False in
    x_valid : (T,). A row is used for asset ``a`` when ``y[a, t]`` is finite and ``x_valid[t]``.
    ``shared=True`` says the caller found every asset's used rows equal to x_valid (the Gram
    matrix and counts are then computed once, B = 1).
    """
    z = design_columns(x, x_valid, intercept, y.dtype)
    zy, yy, sy, rows = asset_window_sums(y, x_valid, z, bounds, decay, intercept, shared)
    gram, sw, nobs = gram_window_sums(rows, z, bounds, decay)
    return WindowMoments(gram=gram, zy=zy, yy=yy, sy=sy, sw=sw, nobs=nobs)


def asset_window_sums(
    y: Tensor,
    x_valid: Tensor,
    z: list,
    bounds: WindowBounds,
    decay: float,
    intercept: bool,
    shared: bool,
    zero_missing: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Window sums of the per-asset series: ``zy`` (A, n, p) of z·y, ``yy`` (A, n) of y² and
    ``sy`` (A, n) of y (n windows), over the rows each asset uses; and those rows (B, T) bool
    (B = 1 when ``shared``: they are x_valid for every asset). ``zero_missing`` with ``shared``: y may also
    be missing outside the windows the caller keeps (leading / trailing NaN); those rows count
    as zeros here and the caller drops the windows that reach them."""
    A, T = y.shape
    p = len(z)
    Tp = padded_length(bounds)
    dt, dev = y.dtype, y.device
    # Per-asset series: z_i·y (p), y·y, and y alone when there is no intercept column.
    n_ay = p + 1 + int(not intercept)
    ay = torch.empty((A, n_ay, Tp), dtype=dt, device=dev)
    ay[..., T:] = 0.0
    y0 = ay[:, 0 if intercept else p + 1, :T]  # y, missing rows zeroed (= z_0·y with intercept)
    zero = torch.zeros((), dtype=dt, device=dev)
    if shared:
        rows = x_valid[None, :]
        if zero_missing:
            torch.where(torch.isfinite(y) & x_valid, y, zero, out=y0)
        elif bool(x_valid.all()):
            y0.copy_(y)
        else:
            torch.where(x_valid, y, zero, out=y0)
    else:
        rows = torch.isfinite(y) & x_valid
        torch.where(rows, y, zero, out=y0)
    for i in range(p):
        if z[i] is not None:
            torch.mul(y0, z[i], out=ay[:, i, :T])
    torch.mul(y0, y0, out=ay[:, p, :T])
    window_sums_(ay, bounds, decay)
    n = bounds.n  # one sum per window from here on
    zy = ay[:, :p, :n].permute(0, 2, 1)
    sy = ay[:, 0, :n] if intercept else ay[:, p + 1, :n]
    return zy, ay[:, p, :n], sy, rows


def gram_window_sums(
    rows: Tensor, z: list, bounds: WindowBounds, decay: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Window sums over the used ``rows`` (B, T) bool: the Gram matrix ``gram`` (B, n, p, p)
    of w·z·zᵀ, the weighted count ``sw`` (B, n) and the row count ``nobs`` (B, n) int32."""
    B, T = rows.shape
    p = len(z)
    Tp = padded_length(bounds)
    col = next((c for c in z if c is not None), None)
    dt, dev = (col.dtype, col.device) if col is not None else (torch.float64, rows.device)
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
    window_sums_(bz, bounds, decay)
    nobs = count_rows(rows, bounds)
    n = bounds.n
    # Parameter-major Gram: one gather of the triangle into (B, p, p, n).
    idx = torch.tensor(
        [tri.index((min(i, j), max(i, j))) for i in range(p) for j in range(p)], device=dev
    )
    gram = bz[:, idx, :n].view(B, p, p, n).permute(0, 3, 1, 2)
    return gram, bz[:, len(tri), :n], nobs
