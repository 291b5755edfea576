"""Rolling (or expanding, or exponentially weighted) regressions of many assets on shared factors:
the one orchestration every path runs through.

``rolling_regression(y, x, spec, device, dtype)`` is the engine's entry point: ``y`` (A, T) and
``x`` (T, k) are CPU float64 tensors (NaN = missing), the result is a ``RollingOutput`` of host
float64 tensors, parameter-major ``(P, A, T)`` for coefficients and ``(A, T)`` for the
per-window statistics. Parameter order: ``alpha`` first when there is an intercept, then the
factors in column order, then the summed terms (``spec.sums``).

The pipeline (peak memory is bounded by the chunk, never by A):

1. working coordinates (``standardize``): robust per-column centres and power-of-two scales;
2. a path: ``shared_ols.SharedOLS`` (newton on rows every asset shares), ``general.MomentPath``
   (moments → objective → any solver), or ``huber.HuberPath`` (rows of every window);
3. chunks of assets (or blocks of (asset, window) pairs for Huber) through that path, on the
   compute device, written straight into the result buffers (``output``);
4. the exact refit (``blocks.exact_refit``) of the rare windows whose moment formulas could
   cancel, and NaN for windows whose sums overflowed;
5. every statistic through ``stats`` — one formula, one place, whatever the path.

Statistics follow statsmodels' (W)LS conventions: σ² = RSS_w / (n − p) with n the number of
rows, Cov(θ) = σ² (ZᵀWZ)⁻¹, R² = 1 − RSS_w / TSS_w with TSS centred on the weighted mean.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from torch import Tensor

from quantfit.engine.blocks import block_pairs, exact_refit, gather_rows
from quantfit.engine.device import auto_chunk
from quantfit.engine.general import MomentPath
from quantfit.engine.huber import HuberPath
from quantfit.engine.output import POOL, RollingOutput
from quantfit.engine.penalty import prior_terms
from quantfit.engine.shared_ols import CHUNK_ELEMENTS, SharedOLS
from quantfit.engine.standardize import (
    FactorTransform,
    TargetTransform,
    factor_transform,
    target_transform,
)
from quantfit.engine.stats import Units, write_pair_statistics
from quantfit.engine.windows import WindowBounds, count_rows, decay_from_halflife

#: The losses the engine fits (names as ``RollingSpec.loss``).
LOSSES = ("mse", "huber")
#: On the CPU, run chunks on parallel threads (one intra-op thread each) instead of splitting
#: every op across torch's threads. Off by default: slower on an idle machine (GIL, memory
#: bandwidth), but far steadier when other processes compete for the cores.
PARALLEL_CHUNKS = False


@dataclass
class RollingSpec:
    """What to fit, already validated (``quantfit.spec`` does that for users).

    window : rows per window, None = expanding; starts : the first row of each window for
    windows of varying length (overrides ``window``): (T,) one per row, or (n,) with ``ends``.
    ends : (n,) increasing rows: only the windows ending there are estimated (e.g. the last
    trading day of each month); None = a window ends at every row. min_obs : rows needed for
    an estimate.
    prior : (A or 1, k) float64 target slopes b0 of ``prior_strength · ‖β − b0‖²``.
    sums : groups of parameter indices reported as one summed term (Dimson's beta).
    """

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
    prior: Tensor | None = None
    prior_strength: float = 0.0
    sums: tuple = ()
    history: bool = False
    starts: Tensor | None = None
    ends: Tensor | None = None

    def bounds(self, T: int) -> WindowBounds:
        if self.starts is not None:
            return WindowBounds.variable(self.starts, self.ends, None if self.ends is None else T)
        if self.window is None:
            return WindowBounds.expanding(T, self.ends)
        return WindowBounds.fixed(T, self.window, self.ends)


@dataclass
class FitContext:
    """Everything a path needs about one fit (built once by ``rolling_regression``)."""

    spec: RollingSpec
    y: Tensor  # (A, T) raw float64, host
    x_valid: Tensor  # (T,) bool, host
    xtf: FactorTransform
    ytf: TargetTransform
    bounds: WindowBounds
    device: torch.device
    dtype: torch.dtype
    shared_rows: bool
    x_dev: Tensor = field(init=False)  # (T, k) working factors on the device, compute dtype
    xv_dev: Tensor = field(init=False)  # (T,) bool on the device
    #: (A, 2) first / last valid row per asset when rows are contiguous runs (shared_ols)
    ranges: Tensor | None = None
    hist_parts: list = field(default_factory=list)  # (Σ loss per iteration, windows) per chunk
    drops: list = field(default_factory=list)  # (asset, date) pairs to drop at the end

    def __post_init__(self):
        s = self.spec
        self.p = self.xtf.x.shape[1] + int(s.intercept)
        self.decay = decay_from_halflife(s.halflife)
        self.intercept, self.min_obs, self.history = s.intercept, s.min_obs, s.history
        self.solver, self.tol, self.max_iter = s.solver, s.tol, s.max_iter
        self.chunk_size, self.huber_t = s.chunk_size, s.huber_t
        self.prior = s.prior if s.prior_strength > 0 else None
        self.x_dev = self.xtf.x.to(device=self.device, dtype=self.dtype)
        self.xv_dev = self.x_valid.to(self.device)
        self._M = None if self.xtf.M is None else self.xtf.M.to(self.device)

    def units(self, a0: int, a1: int) -> Units:
        """How the working units of assets a0:a1 map back (scale / centre (a, 1))."""
        return self._units(slice(a0, a1))

    def pair_units(self, a_idx: Tensor) -> Units:
        """Units of N (asset, window) pairs (scale / centre (N, 1))."""
        return self._units(a_idx.to(self.device))

    def _units(self, assets: slice | Tensor) -> Units:
        def col(v: Tensor | None) -> Tensor | None:
            return None if v is None else v.to(self.device)[assets][:, None]

        return Units(
            self._M,
            col(self.ytf.centre),
            col(self.ytf.scale),
            self.intercept,
            tuple(self.spec.sums),
        )

    def prior_terms(self, a0: int, a1: int) -> tuple[Tensor, Tensor, Tensor]:
        """(Q (p, p), q (a or 1, 1, p), c0 (a or 1, 1)) of the prior in working units."""
        assert self.prior is not None
        b0 = self.prior if self.prior.shape[0] == 1 else self.prior[a0:a1]
        scale = None if self.ytf.scale is None else self.ytf.scale[a0:a1]
        if scale is not None and b0.shape[0] == 1:
            b0 = b0.expand(a1 - a0, -1)
        return prior_terms(
            b0.to(torch.float64),
            self.spec.prior_strength,
            self.p,
            self.intercept,
            self.xtf.M,
            scale,
        )

    def history_callback(self, a0: int, a1: int, usable: Tensor):
        """A solver callback summing the loss over the usable windows (original units)."""
        act = usable.expand(a1 - a0, -1)
        units = (
            None if self.ytf.scale is None else self.ytf.scale[a0:a1, None].to(self.device).square()
        )
        sums: list[float] = []
        self.hist_parts.append((sums, int(act.sum())))

        def callback(loss: Tensor) -> None:
            v = loss if units is None else loss * units.to(loss.dtype)
            sums.append(float(torch.where(act, v, 0.0).sum()))

        return callback

    def drop_later(self, a_idx: Tensor, t_idx: Tensor) -> None:
        if a_idx.numel():
            self.drops.append((a_idx, t_idx))

    def load(self, a0: int, a1: int) -> Tensor:
        """Assets a0:a1 of y in working units on the compute device and dtype."""
        yc = self.y[a0:a1].to(device=self.device, dtype=torch.float64)
        return self.ytf.apply(yc, a0, a1).to(self.dtype)


#: The paths ``rolling_regression`` can take (see the module docstring).
PATHS = ("shared", "general", "huber")


def _shared_rows(y: Tensor, x_valid: Tensor) -> bool:
    """No asset misses a row that the factors have. One read of y decides: a date's sum over
    the assets is finite exactly when every term is (an overflow only costs speed)."""
    return bool(torch.isfinite(y.sum(0))[x_valid].all())


def contiguous_ranges(y: Tensor, x_valid: Tensor, spec: RollingSpec) -> Tensor | None:
    """(A, 2) int64 first and last valid row of each asset when every asset's valid rows are
    one contiguous run of the factors' rows (listed mid-sample, delisted: leading and trailing
    NaN only) and every window with an estimate must be full (a fixed window with
    ``min_obs == window``): such windows hold exactly the factors' rows, so the shared Gram
    matrices serve them. None otherwise."""
    if spec.window is None or spec.starts is not None or spec.min_obs < spec.window:
        return None  # (``ends`` is fine: a window is then its first and last row)
    A, T = y.shape
    valid = torch.isfinite(y) & x_valid
    cnt = valid.sum(1)
    first = valid.to(torch.uint8).argmax(1)
    last = T - 1 - valid.flip(1).to(torch.uint8).argmax(1)
    xc = torch.nn.functional.pad(x_valid.to(torch.int64).cumsum(0), (1, 0))
    runs = (cnt == xc[last + 1] - xc[first]) | (cnt == 0)
    if not bool(runs.all()):
        return None
    empty = cnt == 0
    first = torch.where(empty, T, first)
    last = torch.where(empty, -1, last)
    return torch.stack([first, last], 1)


def select_path(
    y: Tensor,
    x: Tensor,
    spec: RollingSpec,
    device: torch.device,
    dtype: torch.dtype,
    out_device: torch.device | str = "cpu",
) -> str:
    """The path ``rolling_regression`` takes for these inputs: "huber" for the Huber loss;
    "shared" (newton's fast path) for newton on the squared loss in float64, without a prior
    or history, when every asset uses the factors' rows; "general" otherwise."""
    y = y.to(torch.float64)
    x_valid = torch.isfinite(x.to(torch.float64)).all(1)
    return _auto_path(y, x_valid, spec, device, dtype, out_device)[0]


def _auto_path(
    y: Tensor, x_valid: Tensor, spec: RollingSpec, device, dtype, out_device
) -> tuple[str, bool, Tensor | None]:
    """(the automatic path, whether every asset uses the factors' rows, the fast path's
    contiguous row ranges (A, 2) when they do not): the one decision behind ``select_path``
    and ``rolling_regression``."""
    shared_rows = _shared_rows(y, x_valid)
    ranges = None
    if not shared_rows and spec.loss != "huber":
        ranges = contiguous_ranges(y, x_valid, spec)
    return (
        _choose(spec, shared_rows or ranges is not None, device, dtype, out_device),
        shared_rows,
        ranges,
    )


def _choose(spec: RollingSpec, shared_rows: bool, device, dtype, out_device) -> str:
    if spec.loss == "huber":
        return "huber"
    ok = (
        dtype == torch.float64
        and spec.solver == "newton"
        and spec.prior_strength == 0
        and not spec.history
        and torch.device(out_device) == device
    )
    return "shared" if ok and shared_rows else "general"


def rolling_regression(
    y: Tensor,
    x: Tensor,
    spec: RollingSpec,
    device: torch.device,
    dtype: torch.dtype,
    out_device: torch.device | str = "cpu",
    path: str = "auto",
) -> RollingOutput:
    """Fit every asset of ``y`` (A, T) on the factors ``x`` (T, k) in trailing windows; the
    results have one column per window (T, or len(spec.ends)).

    Chunks of ``y`` move to ``device`` (a no-op when y already lives there); results are
    written to float64 tensors on ``out_device`` (the host by default; the compute device
    keeps everything resident, e.g. to time the GPU without transfers). ``path`` forces
    "general" instead of the automatic choice (``select_path``), e.g. to compare the paths.
    """
    A, T = y.shape
    y = y.to(torch.float64)
    x = x.to(torch.float64)
    x_valid = torch.isfinite(x).all(1)
    auto, shared_rows, ranges = _auto_path(y, x_valid, spec, device, dtype, out_device)
    if path not in ("auto", auto) and not (path == "general" and auto == "shared"):
        raise ValueError(f"path={path!r} cannot fit these inputs (the automatic path is {auto!r})")
    chosen = auto if path == "auto" else path
    huber = chosen == "huber"
    fast = chosen == "shared"
    exact = dtype == torch.float64 and spec.solver == "newton" and not huber
    mode = "exact" if exact else "standard"
    xtf = factor_transform(x, x_valid, spec.intercept, mode)
    ytf = target_transform(y, x_valid[None, :], spec.intercept, mode)
    bounds = spec.bounds(T)
    ctx = FitContext(spec, y, x_valid, xtf, ytf, bounds, device, dtype, shared_rows)
    if fast:
        ctx.ranges = ranges
    p = ctx.p
    P = p + len(spec.sums)
    n = bounds.n  # windows: T, or the rows in spec.ends
    out_dev = torch.device(out_device)

    def empty(shape, dt=torch.float64):
        if out_dev.type == "cpu":
            return POOL.empty(shape, dt)
        return torch.empty(shape, dtype=dt, device=out_dev)

    runner: HuberPath | SharedOLS | MomentPath
    if huber:
        runner = HuberPath(ctx)
        n_se, n_flags = A, A
    elif fast:
        runner = SharedOLS(ctx)
        n_se, n_flags = 1, (1 if ranges is None else A)
    else:
        runner = MomentPath(ctx)
        n_se = 1 if shared_rows else A
        n_flags = 1 if shared_rows and spec.solver == "newton" else A
    n_nobs = 1 if shared_rows and not huber else A  # per asset for contiguous ranges too
    out = RollingOutput(
        coef=empty((P, A, n)),
        se_factor=empty((P, n_se, n)),
        r2=empty((A, n)),
        resid_vol=empty((A, n)),
        nobs=empty((n_nobs, n), torch.int32),
        converged=empty((n_flags, n), torch.bool),
        n_iter=empty((n_flags, n), torch.int32),
        se_sigma=empty((A, n)) if huber else None,
    )
    refits: list = []
    if huber:
        out.nobs.copy_(count_rows(torch.isfinite(y) & x_valid, bounds))
        assert isinstance(runner, HuberPath)
        runner.run(out)
    else:
        assert not isinstance(runner, HuberPath)
        kernel = runner
        kernel.setup(out)
        chunk = spec.chunk_size or auto_chunk(A, T, p, dtype, device, spec.solver != "newton")
        if fast and not spec.chunk_size and device.type == "cpu":
            chunk = min(chunk, max(1, CHUNK_ELEMENTS // T))

        def run(a0: int) -> None:
            a1 = min(A, a0 + chunk)
            r = kernel.fit_chunk(ctx.load(a0, a1), a0, a1, out)
            if r is not None:
                refits.append(r)

        _run_chunks(run, list(range(0, A, chunk)), device)
        _refit(ctx, out, refits)
    for a_idx, t_idx in ctx.drops:
        out.drop(a_idx.to(out_dev), t_idx.to(out_dev))
    out.finish_flags(A)
    if spec.history:  # chunks that stopped early keep their last value (frozen windows)
        parts = ctx.hist_parts
        L = max((len(h) for h, _ in parts), default=0)
        tot = [sum(h[min(i, len(h) - 1)] for h, _ in parts if h) for i in range(L)]
        n_act = sum(c for _, c in parts)
        out.history = torch.tensor(tot, dtype=torch.float64) / max(n_act, 1)
    return out


def _run_chunks(run, starts: list[int], device: torch.device) -> None:
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


def _refit(ctx: FitContext, out: RollingOutput, refits: list) -> None:
    """Recompute the flagged windows from their rows (``blocks.exact_refit``), in float64."""
    if not refits:
        return
    a_all = torch.cat([r[0] for r in refits]).cpu()
    t_all = torch.cat([r[1] for r in refits]).cpu()
    kept = [r[2] for r in refits if len(r) > 2 and r[2] is not None]
    theta_all = torch.cat(kept) if kept else None
    dev = ctx.device
    dt = torch.float32 if dev.type == "mps" else torch.float64  # MPS has no float64
    nb = block_pairs(ctx.bounds.max_length(), 8, dev)
    Q = q_all = None
    if ctx.prior is not None:
        Q, q_all, _ = ctx.prior_terms(0, ctx.y.shape[0])
        Q = Q.to(device=dev, dtype=dt)
    per_asset_se = out.se_factor.shape[1] != 1
    for i0 in range(0, a_all.numel(), nb):
        ai, ti = a_all[i0 : i0 + nb], t_all[i0 : i0 + nb]
        rows = gather_rows(
            ctx.y, ctx.ytf, ctx.xtf.x, ctx.x_valid, ctx.bounds, ctx.decay, ai, ti, dev, dt
        )
        q = None
        if q_all is not None:
            pick = ai if q_all.shape[0] > 1 else torch.zeros_like(ai)
            q = q_all[pick.to(q_all.device), 0].to(device=dev, dtype=dt)
        theta = None if theta_all is None else theta_all[i0 : i0 + nb].to(device=dev, dtype=dt)
        fit = exact_refit(rows, ctx.intercept, Q, q, theta)
        write_pair_statistics(
            out,
            ai,
            ti,
            fit.theta,
            fit.rss,
            fit.tss,
            rows.n,
            fit.ginv if per_asset_se else None,
            ctx.pair_units(ai),
            fit.ok,
        )
        ctx.drop_later(ai[~fit.ok.cpu()], ti[~fit.ok.cpu()])
