"""Working coordinates: per-column centres and power-of-two scales that no bad row can move.

The engine fits ``y' = zᵀθ'`` on transformed data and maps the results back:

    x' = (x − c_x) @ A      (T, k)   c_x the factors' centres, A = D⁻¹·Wh
    y' = (y − c_y) / s_y    (A, T)   per asset
    θ  = s_y · M θ' (+ c_y on alpha),   M = [[1, −c_x·A], [0, A]]   (p, p)

Every statistic is taken per column from its valid rows with **robust** estimators: the centre is
a median and the scale the median absolute deviation from it (over the non-zero deviations),
rounded to a power of two. A bad tick of 1e155 or a −99.99 missing-value code moves neither, so
windows that do not contain it see exactly the data they would see without it; and a power of
two rescales exactly, so results do not depend on the units of y or x (1e-300 or 1e200 alike,
whenever the values are representable after centring and scaling).

Two modes:

* ``"exact"`` (newton in float64): a column is only touched when it needs it — scaled when its
  robust scale is outside [2⁻¹⁰⁰, 2¹⁰⁰] (factors) or [2⁻²⁰⁰, 2²⁰⁰] (assets), where squares and
  window sums would underflow or overflow; a factor is centred when its median exceeds 8× its
  scale (a level, not a return). Ordinary returns pass through untouched (M = identity).
* ``"standard"`` (float32 and the iterative solvers): always centred and scaled, and with
  several factors also whitened by their robust covariance (rows beyond 64 robust scales left
  out), so each window's Gram matrix is close to the identity: first-order solvers converge in
  tens of iterations and float32 keeps its relative precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: Rows sampled per asset for its centre and scale (evenly spaced over the history).
SAMPLE_ROWS = 128
#: Fewer valid sampled rows than this: the asset's statistics use all of its rows.
MIN_SAMPLED = 16
X_SAFE, Y_SAFE = 2.0**100, 2.0**200  # scales outside [1/SAFE, SAFE] are rescaled ("exact")
CENTRE_ABOVE = 8.0  # centre a factor whose |median| exceeds this many scales ("exact")
WHITEN_INLIER = 64.0  # rows within this many robust scales enter the whitening covariance


def pow2(v: Tensor) -> Tensor:
    """The power of two nearest to each positive finite ``v`` (1 elsewhere), exactly."""
    ok = torch.isfinite(v) & (v > 0)
    m, e = torch.frexp(torch.where(ok, v, 1.0))  # v = m·2^e, 0.5 <= m < 1
    e = e - (m < 0.7071067811865476).to(e.dtype)  # round log2 to nearest
    return torch.where(ok, torch.ldexp(torch.ones_like(v), e), 1.0)


def robust_centre_scale(
    v: Tensor, valid: Tensor | None, centre: bool, sample: int | None = SAMPLE_ROWS
) -> tuple[Tensor, Tensor]:
    """Per row of ``v`` (n, T) float64: the median of its valid values (0 without ``centre``)
    and the median absolute deviation from it over the non-zero deviations, both (n,);
    NaN scale where there is none. ``sample`` evenly spaced columns are used (all for None);
    rows with fewer than ``MIN_SAMPLED`` valid sampled values use all of theirs."""
    n, T = v.shape

    def ok(rows, cols) -> tuple[Tensor, Tensor]:
        vv = v[rows][:, cols]
        fin = torch.isfinite(vv)
        return vv, (fin if valid is None else fin & valid[rows][:, cols])

    every = slice(None)
    if sample is not None and T > sample:
        idx = torch.linspace(0, T - 1, sample, device=v.device).round().long().unique()
        c, s, cnt = _centre_scale(*ok(every, idx), centre)
        few = torch.nonzero(cnt < MIN_SAMPLED).flatten()
        if few.numel():
            c2, s2, _ = _centre_scale(*ok(few, every), centre)
            c, s = c.index_put((few,), c2), s.index_put((few,), s2)
        return c, s
    c, s, _ = _centre_scale(*ok(every, every), centre)
    return c, s


def _centre_scale(v: Tensor, ok: Tensor, centre: bool) -> tuple[Tensor, Tensor, Tensor]:
    nan = torch.tensor(float("nan"), dtype=v.dtype, device=v.device)
    vv = torch.where(ok, v, nan)
    c = (
        vv.nanmedian(-1).values
        if centre
        else torch.zeros(v.shape[0], dtype=v.dtype, device=v.device)
    )
    c = torch.nan_to_num(c, nan=0.0)
    dev = (vv - c[:, None]).abs_()
    dev = torch.where(
        dev > 0, dev, nan
    )  # zero deviations (stale prices, the centre itself) say nothing
    return c, dev.nanmedian(-1).values, ok.sum(-1)


@dataclass
class FactorTransform:
    """x' = (x − centre) @ A, θ = M θ'. ``M is None`` means the identity (x' is x)."""

    x: Tensor  # (T, k) float64 working factors
    M: Tensor | None  # (p, p) float64


@dataclass
class TargetTransform:
    """y' = (y − centre) / scale per asset; None = that part is not applied."""

    centre: Tensor | None  # (A,) float64
    scale: Tensor | None  # (A,) float64, powers of two

    @property
    def identity(self) -> bool:
        return self.centre is None and self.scale is None

    def apply(self, y: Tensor, a0: int, a1: int) -> Tensor:
        """``y`` (a, T) (rows a0:a1 of the assets) in working units; a new tensor unless identity."""
        if self.centre is not None:
            y = y - self.centre[a0:a1, None].to(device=y.device, dtype=y.dtype)
        if self.scale is not None:
            inv = self.scale[a0:a1, None].reciprocal().to(device=y.device, dtype=y.dtype)
            y = y * inv
        return y


def _all_within(y: Tensor, lo: float, hi: float) -> bool:
    """Every non-zero finite |y| of an evenly spaced sample of dates lies in [lo, hi]: then
    every asset's robust scale does too (the cheap test that spares the medians)."""
    T = y.shape[1]
    idx = torch.linspace(0, T - 1, min(T, SAMPLE_ROWS), device=y.device).round().long()
    a = y[:, idx].abs()
    ok = (a >= lo) & (a <= hi)
    return bool((ok | (a == 0) | a.isnan() | a.isinf()).all())


def factor_transform(x: Tensor, x_valid: Tensor, intercept: bool, mode: str) -> FactorTransform:
    """Working factors for ``x`` (T, k) float64 (see the module docstring for ``mode``)."""
    T, k = x.shape
    if not bool(x_valid.any()):
        return FactorTransform(x, None)
    c, s = robust_centre_scale(x.T, x_valid[None, :].expand(k, T), intercept, sample=None)
    s = torch.where(torch.isfinite(s), s, 1.0)
    if mode == "exact":
        c = torch.where(c.abs() > CENTRE_ABOVE * s, c, 0.0)
        s = torch.where((s > X_SAFE) | (s < 1.0 / X_SAFE), pow2(s), 1.0)
    else:
        s = pow2(s)
    A = torch.diag(s.reciprocal())
    if mode != "exact" and k > 1:
        A = A @ _robust_whitening((x[x_valid] - c) / s)
    if mode == "exact" and bool((c == 0).all()) and bool((s == 1).all()):
        return FactorTransform(x, None)
    xt = (x - c) @ A
    p = k + int(intercept)
    M = torch.zeros((p, p), dtype=x.dtype)
    if intercept:
        M[0, 0] = 1.0
        M[0, 1:] = -(c @ A)
        M[1:, 1:] = A
    else:
        M[:, :] = A
    return FactorTransform(xt, M)


def _robust_whitening(xs: Tensor) -> Tensor:
    """Wh (k, k) with cov(xs @ Wh) ≈ I over the rows within ``WHITEN_INLIER`` robust scales."""
    k = xs.shape[1]
    inl = xs[(xs.abs() <= WHITEN_INLIER).all(1)]
    if inl.shape[0] <= k:
        return torch.eye(k, dtype=xs.dtype)
    second = inl.T @ inl / inl.shape[0]
    L, info = torch.linalg.cholesky_ex(second)
    if int(info) != 0 or not bool(torch.isfinite(L).all()):
        return torch.eye(k, dtype=xs.dtype)
    return torch.linalg.inv(L).T


def target_transform(y: Tensor, rows: Tensor | None, intercept: bool, mode: str) -> TargetTransform:
    """Per-asset centre and scale of ``y`` (A, T) float64 over its valid ``rows`` (A or 1, T)."""
    A, T = y.shape
    valid = None if rows is None else rows.expand(A, T)
    if mode == "exact" and _all_within(y, 1.0 / Y_SAFE, Y_SAFE):
        return TargetTransform(None, None)
    c, s = robust_centre_scale(y, valid, centre=intercept and mode != "exact")
    s = torch.where(torch.isfinite(s), s, 1.0)
    if mode == "exact":
        need = (s > Y_SAFE) | (s < 1.0 / Y_SAFE)
        if not bool(need.any()):
            return TargetTransform(None, None)
        return TargetTransform(None, torch.where(need, pow2(s), 1.0))
    return TargetTransform(c if intercept else None, pow2(s))
