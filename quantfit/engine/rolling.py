"""Rolling (or expanding, or exponentially weighted) regressions of many assets on shared factors.

``rolling_regression(y, x, spec)`` is the engine's entry point: ``y`` (A, T) and ``x`` (T, k)
are CPU tensors (NaN = missing), the result is a ``RollingOutput`` of CPU float64 tensors,
parameter-major ``(p, A, T)`` for coefficients and standard errors and ``(A, T)`` for the
per-window statistics. Parameter order: ``alpha`` first when there is an intercept, then the
factors in column order.

Pipeline per chunk of assets (peak memory is bounded by the chunk, not by A):
  transfer → standardize → window moments → objective → solver → statistics → undo the
  standardization → copy into the host output.

Standardization (why): the factors are centred and whitened once, globally (not per window),
so each window's Gram matrix is close to the identity. First-order solvers then converge in
tens of iterations, and float32 keeps ~1e-6 relative accuracy. In float32 the assets' returns
are also centred and scaled. Newton in float64 skips all of it (exact as it stands).
Statistics follow statsmodels' (W)LS conventions: σ² = RSS_w / (n − p) with n the number of
rows, Cov(θ) = σ² (ZᵀWZ)⁻¹, R² = 1 − RSS_w / TSS_w with TSS centred on the weighted mean.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from quantfit.engine.device import auto_chunk
from quantfit.engine.huber import HuberFixedScale, rolling_huber
from quantfit.engine.linalg import cholesky, inverse
from quantfit.engine.moments import (WindowMoments, centred_tss, decay_from_halflife,
                                     window_moments)
from quantfit.engine.objectives import SquaredLoss
from quantfit.engine.penalty import Penalized, prior_terms
from quantfit.engine.shared_ols import CHUNK_ELEMENTS, fit_shared_chunk, shared_windows
from quantfit.engine.solvers import run_solver

LOSSES = {"mse": SquaredLoss, "huber": HuberFixedScale}  # huber: fitted by engine/huber.py
#: On the CPU, run chunks on parallel threads (one intra-op thread each) instead of splitting
#: every op across torch's threads. Off by default: slower on an idle machine (GIL, memory
#: bandwidth), but far steadier when other processes compete for the cores.
PARALLEL_CHUNKS = False


@dataclass
class RollingSpec:
    """What to fit. ``window=None`` means expanding; ``min_obs`` rows make an estimate."""

    window: int | None
    min_obs: int
    halflife: float | None = None
    intercept: bool = True
    loss: str = "mse"
    solver: str = "newton"
    tol: float | None = None
    max_iter: int | None = None
    chunk_size: int | None = None
    huber_t: float = 1.345
    prior: Tensor | None = None  # (A or 1, k) target slopes b0, float64
    prior_strength: float = 0.0  # λ of λ‖β − b0‖² added to the (weighted) RSS
    sums: tuple = ()  # groups of parameter indices whose sum (and its SE) to report
    history: bool = False  # mean loss over the windows after every iteration


@dataclass
class RollingOutput:
    """Host (CPU, float64) results. coef/stderr: (p, A, T); the rest (A, T)."""

    coef: Tensor
    stderr: Tensor
    r2: Tensor
    resid_vol: Tensor
    nobs: Tensor  # int32
    converged: Tensor  # bool
    n_iter: Tensor  # int32
    sum_coef: Tensor | None = None  # (len(spec.sums), A, T)
    sum_stderr: Tensor | None = None
    history: Tensor | None = None  # (n_iterations,) float64

    def fill_startup(self, t0: int, assets: slice = slice(None)) -> None:
        """NaN in every float result of ``assets`` before row t0 (no window has min_obs rows)."""
        for buf in (self.coef, self.stderr, self.sum_coef, self.sum_stderr):
            buf[:, assets, :t0].fill_(float("nan"))
        for buf in (self.r2, self.resid_vol):
            buf[assets, :t0].fill_(float("nan"))


@dataclass
class _XTransform:
    """x' = (x − mean) @ A, so θ_original = M θ' (+ the y-centring on alpha)."""

    x: Tensor  # (T, k) transformed factors, float64
    M: Tensor | None  # (p, p) float64, None = identity (no transform)


def _factor_transform(x: Tensor, x_valid: Tensor, intercept: bool, whiten: bool) -> _XTransform:
    k = x.shape[1]
    if not whiten or not bool(x_valid.any()):
        return _XTransform(x, None)
    xv = x[x_valid]
    mean = xv.mean(0) if intercept else torch.zeros(k, dtype=x.dtype)
    xc = xv - mean
    second = xc.T @ xc / max(xv.shape[0], 1)
    L, info = torch.linalg.cholesky_ex(second)
    if int(info) == 0 and bool(torch.isfinite(L).all()):
        A = torch.linalg.inv(L).T  # whitening: cov(x') = I
    else:  # collinear or constant factors: plain scaling, guarded
        sd = second.diagonal().sqrt()
        A = torch.diag(torch.where(sd > 0, 1.0 / sd, torch.ones_like(sd)))
    xt = (x - mean) @ A
    p = k + int(intercept)
    M = torch.zeros((p, p), dtype=x.dtype)
    if intercept:
        M[0, 0] = 1.0
        M[0, 1:] = -(mean @ A)
        M[1:, 1:] = A
    else:
        M[:, :] = A
    return _XTransform(xt, M)


def _y_standardize(y: Tensor, ok: Tensor, intercept: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Per-asset centring (with an intercept) and scaling over valid rows: y' = (y − my)/sy."""
    cnt = ok.sum(1).clamp_min(1)
    y0 = torch.where(ok, y, 0.0)
    my = y0.sum(1) / cnt if intercept else torch.zeros_like(cnt, dtype=y.dtype)
    dev = torch.where(ok, y - my[:, None], 0.0)
    sy = (dev.square().sum(1) / cnt).sqrt()
    sy = torch.where(sy > 0, sy, torch.ones_like(sy))
    return (y - my[:, None]) / sy[:, None], my, sy


def rolling_regression(
    y: Tensor, x: Tensor, spec: RollingSpec, device: torch.device, dtype: torch.dtype,
    out_device: torch.device | str = "cpu",
) -> RollingOutput:
    """Fit every asset of ``y`` (A, T) on the factors ``x`` (T, k) in trailing windows.

    Chunks of ``y`` move to ``device`` (a no-op when y already lives there); results are
    written to float64 tensors on ``out_device`` (the host by default; the compute device
    keeps everything resident, e.g. to time the GPU without transfers).
    """
    if spec.loss == "huber":  # needs the raw rows of every window, not moments
        return RollingOutput(**rolling_huber(y, x, spec, device, dtype, out_device))
    A, T = y.shape
    k = x.shape[1]
    p = k + int(spec.intercept)
    iterative = spec.solver != "newton"
    exact = dtype == torch.float64 and not iterative
    x = x.to(torch.float64)
    x_valid = torch.isfinite(x).all(1)
    xt = _factor_transform(x, x_valid, spec.intercept, whiten=not exact)
    x_dev = xt.x.to(device=device, dtype=dtype)
    xv_dev = x_valid.to(device)
    decay = decay_from_halflife(spec.halflife)
    chunk = spec.chunk_size or auto_chunk(A, T, p, dtype, device, iterative)
    # When no asset misses a row that the factors have, every window's rows (so its Gram
    # matrix and row count) are shared by all assets. One read of y decides: a date's sum
    # over the assets is finite exactly when every term is (an overflow only costs speed).
    shared_rows = bool(torch.isfinite(y.sum(0))[x_valid].all())
    # Per-window flags that are then the same for every asset are kept as one (1, T) row
    # and handed out broadcast: nobs always, converged / n_iter for newton (one exact step).
    n_nobs = 1 if shared_rows else A
    n_flags = 1 if shared_rows and spec.solver == "newton" else A

    f64 = dict(dtype=torch.float64, device=out_device)
    flags = dict(device=out_device)
    out = RollingOutput(
        coef=torch.empty((p, A, T), **f64), stderr=torch.empty((p, A, T), **f64),
        r2=torch.empty((A, T), **f64), resid_vol=torch.empty((A, T), **f64),
        nobs=torch.empty((n_nobs, T), dtype=torch.int32, **flags),
        converged=torch.empty((n_flags, T), dtype=torch.bool, **flags),
        n_iter=torch.empty((n_flags, T), dtype=torch.int32, **flags),
        sum_coef=torch.empty((len(spec.sums), A, T), **f64),
        sum_stderr=torch.empty((len(spec.sums), A, T), **f64),
    )
    hists: dict[int, tuple[list[float], int]] = {}  # per chunk: Σ loss per iteration, windows
    # Exact least squares on shared rows: everything per window once, then small chunks of
    # assets that stay in cache (see shared_ols).
    fast = (exact and shared_rows and spec.prior_strength == 0 and not spec.history
            and torch.device(out_device) == device)
    if fast:
        sh = shared_windows(x_dev, xv_dev, spec.window, decay, spec.intercept, spec.min_obs)
        out.nobs.copy_(sh.nobs)
        out.converged.copy_(sh.estimate)
        out.n_iter.copy_(sh.estimate)
        out.fill_startup(sh.t0)
        if not spec.chunk_size and device.type == "cpu":
            chunk = min(chunk, max(1, CHUNK_ELEMENTS // T))
    starts = range(0, A, chunk)

    def run(a0: int) -> None:
        a1 = min(A, a0 + chunk)
        yc = y[a0:a1].to(device=device, dtype=dtype)
        if fast:
            fit_shared_chunk(yc, sh, spec.sums, out.coef[:, a0:a1], out.stderr[:, a0:a1],
                             out.r2[a0:a1], out.resid_vol[a0:a1], out.sum_coef[:, a0:a1],
                             out.sum_stderr[:, a0:a1])
            return
        _fit_chunk(yc, x_dev, xv_dev, xt.M, spec, decay, exact, out, a0, a1, hists,
                   shared_rows or None)

    workers = torch.get_num_threads() if device.type == "cpu" and PARALLEL_CHUNKS else 1
    if workers > 1 and len(starts) > 1:
        # On the CPU, chunks run in parallel, one thread each, instead of every small op
        # splitting across threads: no per-op barrier, which also keeps a shared or busy
        # machine from stalling every op on a descheduled thread. Chunks write disjoint
        # slices of the output.
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(run, starts))
        finally:
            torch.set_num_threads(workers)
    else:
        for a0 in starts:
            run(a0)
    out.nobs, out.converged, out.n_iter = (
        f.expand(A, T) for f in (out.nobs, out.converged, out.n_iter))
    if spec.history:  # chunks that stopped early keep their last value (frozen windows)
        L = max((len(h) for h, _ in hists.values()), default=0)
        tot = [sum(h[min(i, len(h) - 1)] for h, _ in hists.values() if h) for i in range(L)]
        n_act = sum(c for _, c in hists.values())
        out.history = torch.tensor(tot, dtype=torch.float64) / max(n_act, 1)
    return out


def _fit_chunk(y, x, x_valid, M, spec, decay, exact, out, a0, a1, hists=None,
               shared=None) -> None:
    """Fit assets a0:a1 (``y`` (a, T) on the compute device) into ``out``; ``shared=True``:
    the caller found every asset's rows shared (see ``window_moments``)."""
    p = x.shape[1] + int(spec.intercept)
    my = sy = None
    if not exact and y.dtype != torch.float64:
        y, my, sy = _y_standardize(y, torch.isfinite(y) & x_valid, spec.intercept)
    mom = window_moments(y, x, x_valid, spec.window, decay, spec.intercept, shared)

    def rows(flag: Tensor) -> Tensor:  # this chunk's rows of a flag, or its one shared row
        return flag[0:1] if flag.shape[0] == 1 else flag[a0:a1]

    conv_rows, iter_rows = rows(out.converged), rows(out.n_iter)
    rows(out.nobs).copy_(mom.nobs)
    # No window before row min_obs − 1 can hold min_obs rows: solve only from there on.
    t0 = min(spec.min_obs - 1, mom.nobs.shape[-1])
    if t0 > 0:
        out.fill_startup(t0, slice(a0, a1))
        conv_rows[:, :t0] = False
        iter_rows[:, :t0] = 0
        if t0 >= mom.nobs.shape[-1]:
            return
        mom = WindowMoments(*(getattr(mom, f.name)[:, t0:] for f in fields(WindowMoments)))
    usable = (mom.nobs >= spec.min_obs) & (mom.sw > 0)  # (B, T')
    sl = (slice(a0, a1), slice(t0, None))
    obj = base = LOSSES[spec.loss](mom, usable)
    if spec.prior_strength > 0:  # λ‖β − b0‖², in the working coordinates
        b0 = spec.prior if spec.prior.shape[0] == 1 else spec.prior[a0:a1]
        Q, q, c0 = prior_terms(b0.to(torch.float64), spec.prior_strength, p, spec.intercept, M, sy)
        obj = Penalized(base, Q, q, c0)
    callback = None
    if spec.history and hists is not None:  # Σ loss over the usable windows, original units
        act = usable.expand(a1 - a0, -1)
        units = None if sy is None else sy.to(mom.yy.dtype)[:, None].square()
        sums: list[float] = []
        hists[a0] = (sums, int(act.sum()))

        def callback(loss: Tensor) -> None:
            v = loss if units is None else loss * units
            sums.append(float(torch.where(act, v, 0.0).sum()))
    sol = run_solver(spec.solver, obj, spec.tol, spec.max_iter, callback)
    theta = sol.theta
    ch = sol.chol if sol.chol is not None else cholesky(obj.hessian(None))
    ginv = sol.hinv if sol.hinv is not None else inverse(ch)  # (B, T', p, p) of ZᵀWZ

    if sol.chol is not None and obj.quadratic and obj is base:  # exact optimum: RSS = yy − θ·zy
        rss = torch.addcmul(mom.yy, theta[..., 0], mom.zy[..., 0], value=-1.0)
        for i in range(1, p):
            rss.addcmul_(theta[..., i], mom.zy[..., i], value=-1.0)
    else:
        rss = base.value(theta).mul_(2.0)
    rss.clamp_min_(0.0)
    estimate = usable & ch.ok  # (B, T'), or (A, T') once the solver's flags are included
    if bool(sol.diverged.any()):
        estimate = estimate & ~sol.diverged
    # 1/(n − p), NaN outside the estimated windows: σ² and everything derived from it (SE,
    # residual vol) comes out NaN-masked without a pass of its own when estimate is (1, T').
    dof = mom.nobs - p
    inv_dof = torch.where(estimate & (dof > 0), 1.0 / dof.clamp_min(1.0), torch.nan)
    sw = mom.sw
    tss = centred_tss(mom.yy, mom.sy, torch.where(sw > 0, sw, 1.0).reciprocal_())
    f64 = torch.float64
    direct = theta.device == out.coef.device  # compute results straight into the output

    def into(dst: Tensor, like: Tensor) -> Tensor | None:
        return dst if direct and like.dtype == f64 else None

    def store(dst: Tensor, value: Tensor) -> None:
        if value is not dst:
            dst.copy_(value)

    # R² = 1 − RSS/TSS is scale-free: take it in the working coordinates.
    one = torch.ones((), dtype=rss.dtype, device=rss.device)
    dst = out.r2[sl]
    r2 = torch.addcdiv(one, rss, tss, value=-1.0, out=into(dst, rss))
    store(dst, r2.masked_fill_(~estimate, torch.nan))
    del r2

    s2 = rss.mul_(inv_dof)
    if M is not None:  # back to the original units, in float64
        theta, s2, ginv = theta.to(f64), s2.to(f64), ginv.to(f64)
        Md = M.to(theta.device)
        coefs = [sum(Md[i, j] * theta[..., j] for j in range(p) if Md[i, j] != 0) for i in range(p)]
        vdiag = [
            sum(Md[i, j] * Md[i, l] * ginv[..., j, l]
                for j in range(p) for l in range(p) if Md[i, j] != 0 and Md[i, l] != 0)
            for i in range(p)
        ]
    else:
        coefs = [theta[..., i] for i in range(p)]
        vdiag = [ginv[..., i, i] for i in range(p)]
    if sy is not None:
        syd = sy.to(f64)[:, None]
        coefs = [c * syd for c in coefs]
        if spec.intercept:
            coefs[0] = coefs[0] + my.to(f64)[:, None]
        s2 = s2 * syd.square()
    nan = torch.tensor(float("nan"), dtype=f64, device=theta.device)
    for g, grp in enumerate(spec.sums):  # Σ_S θ and √(σ² Σ_{i,j∈S} [M G⁻¹ Mᵀ]_ij)
        Md = M.to(theta.device) if M is not None else None
        rows = [Md[i] for i in grp] if Md is not None else None
        csum = sum(coefs[i] for i in grp)
        if Md is None:
            vsum = sum(ginv[..., i, j].to(f64) for i in grp for j in grp)
        else:
            w = sum(rows)  # (p,): the sum's row of M
            vsum = sum(w[j] * w[l] * ginv[..., j, l].to(f64) for j in range(p) for l in range(p)
                       if w[j] != 0 and w[l] != 0)
        out.sum_coef[g][sl].copy_(torch.where(estimate, csum, nan))
        out.sum_stderr[g][sl].copy_((s2 * vsum).clamp_min(0.0).sqrt())
    for i in range(p):
        dst = out.coef[i][sl]
        store(dst, torch.where(estimate, coefs[i], nan, out=into(dst, coefs[i])))
        dst = out.stderr[i][sl]
        var = torch.mul(s2, vdiag[i], out=into(dst, s2))
        if M is not None:  # a transformed quadratic form may round below zero
            var.clamp_min_(0.0)
        store(dst, var.sqrt_())
    dst = out.resid_vol[sl]
    store(dst, torch.sqrt(s2, out=into(dst, s2)))
    conv_rows[:, t0:].copy_(torch.logical_and(sol.converged, estimate))
    zero = torch.zeros((), dtype=torch.int32, device=theta.device)
    iter_rows[:, t0:].copy_(torch.where(estimate, sol.n_iter, zero))
