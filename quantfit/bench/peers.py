"""The benchmarked methods: quantfit's solvers and the peers a quant would otherwise use.

Each method is a function ``(work, opts) -> Job`` that does the untimed set-up (imports,
subset choice, reshaping) and returns a ``Job`` whose ``run()`` is the timed work. Methods:

=================================  ==========================================================
``quantfit newton|gd|adam``        ``qf.fit_rolling(y, x, W, solver=...)``: β, α, SE, R², σ
``quantfit huber``                 ``qf.fit_rolling(y, x, W, loss="huber")``
``pandas``                         ``Y.rolling(W).cov(x) / x.rolling(W).var()``: β only
``statsmodels RollingOLS``         ``RollingOLS(y_i, [1, x], W).fit()`` looped over assets
``polars-ols``                     ``rolling_ols`` per asset column, all in one ``select``
``statsmodels RLM``                ``RLM(y_w, [1, x_w], M=HuberT(1.345)).fit()`` per window
``torch loop``                     one regression at a time: w, b ← 0, ``torch.optim.SGD``
                                   until the loss stops moving (the classic GD example)
=================================  ==========================================================

Slow peers run on a random subset (of assets, or of (asset, window) pairs) and the runner
extrapolates by ``1 / fraction``. Peers are optional (``pip install 'quantfit[bench]'``): a
missing one raises ``PeerUnavailable`` (a ``QuantfitError`` naming the extra); a quantfit
solver or loss that the engine does not have yet raises it too, so the row says so.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quantfit.bench.workload import Workload
from quantfit.errors import QuantfitError


class PeerUnavailable(QuantfitError):
    """A method cannot run here: a peer package is missing, or quantfit lacks the feature."""


@dataclass
class Options:
    """Per-run settings the methods need. Subset sizes apply to the slow, looping peers."""

    device: str = "cpu"
    seed: int = 0
    rolling_ols_assets: int = 10  # assets for the RollingOLS loop
    polars_assets: int | None = None  # None: every asset
    rlm_windows: int = 200  # (asset, window) pairs for RLM
    loop_windows: int = 30  # (asset, window) pairs for the one-at-a-time torch loop


@dataclass
class Job:
    """The timed part of one method.

    ``run()`` does the work and returns its raw output; ``betas(out)`` turns it into β, either
    a (T, A) array (NaN where there is no estimate) when ``cells`` is None, or a 1-D array
    aligned with ``cells = (date_idx, asset_idx)``. ``fraction`` is the share of the
    workload's regressions that ``run()`` performs (1.0 = all of them).
    """

    run: Callable[[], Any]
    betas: Callable[[Any], np.ndarray]
    cells: tuple[np.ndarray, np.ndarray] | None = None
    fraction: float = 1.0
    note: str = ""
    #: Untimed call that loads lazy state (kernels, JIT) before a best-of timing (the scaling
    #: sweep); the benchmark rows time the first call on its own instead.
    warmup: Callable[[], Any] | None = None
    torch_device: str | None = None  # set for torch methods: the runner synchronizes it
    #: What max |Δβ| is taken against: "ols" (quantfit newton, float64, CPU), "rlm" (the
    #: RLM row's windows, for Huber fits), or "huber" (the RLM row itself: filled in from the
    #: huber row, the same number seen from the other side).
    reference: str = "ols"
    note_from: Callable[[Any], str] | None = None  # a note that depends on the output
    extra: dict = field(default_factory=dict)


def require(module: str, what: str) -> Any:
    """Import ``module`` or raise ``PeerUnavailable`` naming the ``bench`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PeerUnavailable(f"{what} needs {module.split('.')[0]} "
                              f"(pip install 'quantfit[bench]'): {exc}") from None


# ---------------------------------------------------------------------------- quantfit
def _engine_has(solver: str | None = None, loss: str | None = None) -> None:
    from quantfit.spec import LOSSES, SOLVERS
    if solver is not None and solver not in SOLVERS:
        raise PeerUnavailable(f"solver={solver!r} not implemented")
    if loss is not None and loss not in LOSSES:
        raise PeerUnavailable(f"loss={loss!r} not implemented")


def quantfit_fit(work: Workload, opts: Options, solver: str | None = None,
                 loss: str = "mse") -> Job:
    """``qf.fit_rolling`` on the whole workload (every asset and window in one call), with
    the engine's defaults for everything but the solver (None: fit_rolling's default) and loss."""
    from quantfit.fit import fit_rolling  # imported here, untimed: the first call is a call
    _engine_has(solver=solver, loss=loss)
    kw: dict[str, Any] = dict(window=work.window, device=opts.device)
    if solver is not None:
        kw["solver"] = solver
    if loss != "mse":
        kw["loss"] = loss

    def run():
        return fit_rolling(work.y, work.x, **kw)

    def warmup():
        # Up to 64 assets: big enough that torch starts its intra-op thread pool (tensors past
        # the parallel grain size) and loads every kernel, small next to the timed call.
        return fit_rolling(work.y.iloc[:, :64], work.x, **kw)

    def betas(fit) -> np.ndarray:
        return fit.beta.to_numpy()

    def note_from(fit) -> str:
        conv = float(fit.converged.to_numpy()[work.window - 1:].mean())
        text = f"{fit.meta.spec.solver.name}, {fit.meta.dtype}"
        if loss != "mse":
            text = f"{loss}, {text}"
        return text if conv == 1.0 else f"{text}, {conv:.1%} of windows converged"

    return Job(run, betas, warmup=warmup, torch_device=opts.device, note_from=note_from,
               reference="rlm" if loss == "huber" else "ols")


# ---------------------------------------------------------------------------- peers
def pandas_cov_var(work: Workload, opts: Options) -> Job:
    """pandas' vectorized rolling moments: β = cov(y, x) / var(x) per window (no SE, no α)."""
    W = work.window

    def run():
        return work.y.rolling(W).cov(work.x).div(work.x.rolling(W).var(), axis=0)

    return Job(run, lambda out: out.to_numpy(), note="β only")


def _asset_subset(work: Workload, n: int | None, seed: int) -> np.ndarray:
    A = work.spec.n_assets
    if n is None or n >= A:
        return np.arange(A)
    return np.sort(np.random.default_rng(seed).choice(A, size=n, replace=False))


def _asset_cells(work: Workload, assets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(date_idx, asset_idx) of every full window of the given assets, asset-major."""
    t = np.arange(work.window - 1, work.spec.n_dates)
    return np.tile(t, len(assets)), np.repeat(assets, len(t))


def _window_subset(work: Workload, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random sample of n distinct (date_idx, asset_idx) pairs among the full windows."""
    s = work.spec
    per_asset = s.n_dates - s.window + 1
    n = min(n, s.n_windows)
    flat = np.sort(np.random.default_rng(seed + 1).choice(s.n_windows, size=n, replace=False))
    return flat % per_asset + s.window - 1, flat // per_asset


def _subset_note(done: int, total: int, unit: str) -> str:
    return f"{done:,} of {total:,} {unit}, ×{total / done:,.0f}"


def statsmodels_rolling_ols(work: Workload, opts: Options) -> Job:
    """statsmodels ``RollingOLS`` (params, bse, R², ...) looped over a random subset of assets."""
    sm = require("statsmodels.api", "statsmodels RollingOLS")
    rolling = require("statsmodels.regression.rolling", "statsmodels RollingOLS")
    assets = _asset_subset(work, opts.rolling_ols_assets, opts.seed)
    X = sm.add_constant(work.x.to_numpy())
    Y = work.y.to_numpy()
    cols = [np.ascontiguousarray(Y[:, a]) for a in assets]

    def run():
        return [rolling.RollingOLS(c, X, window=work.window).fit() for c in cols]

    def betas(fits) -> np.ndarray:
        return np.concatenate([f.params[work.window - 1:, 1] for f in fits])

    A = work.spec.n_assets
    return Job(run, betas, cells=_asset_cells(work, assets), fraction=len(assets) / A,
               note=_subset_note(len(assets), A, "assets") if len(assets) < A else "")


def polars_ols_rolling(work: Workload, opts: Options) -> Job:
    """polars-ols ``rolling_ols`` on each asset column, all columns in one ``select``."""
    pl = require("polars", "polars-ols")
    require("polars_ols", "polars-ols")  # registers the .least_squares namespace
    assets = _asset_subset(work, opts.polars_assets, opts.seed)
    names = [f"y{a}" for a in assets]
    Y = work.y.to_numpy()
    frame = pl.DataFrame({"x": work.x.to_numpy(), **{n: Y[:, a] for n, a in zip(names, assets)}})
    exprs = [pl.col(n).least_squares.rolling_ols(pl.col("x"), window_size=work.window,
                                                 mode="coefficients", add_intercept=True)
             .struct.field("x").alias(n) for n in names]

    def run():
        return frame.select(exprs)

    def betas(out) -> np.ndarray:
        return out.to_numpy()[work.window - 1:].T.ravel()  # asset-major, as the cells

    def warmup():
        return frame.head(work.window + 5).select(exprs[:2])

    A = work.spec.n_assets
    return Job(run, betas, cells=_asset_cells(work, assets), fraction=len(assets) / A,
               warmup=warmup,
               note=_subset_note(len(assets), A, "assets") if len(assets) < A else "")


def statsmodels_rlm(work: Workload, opts: Options) -> Job:
    """statsmodels ``RLM`` with Huber's T (c = 1.345), one window at a time, on a random sample
    of (asset, window) pairs; compared with ``quantfit huber`` on the same windows."""
    _engine_has(loss="huber")  # the row exists to compare with quantfit's Huber fit
    sm = require("statsmodels.api", "statsmodels RLM")
    t_idx, a_idx = _window_subset(work, opts.rlm_windows, opts.seed)
    X = sm.add_constant(work.x.to_numpy())
    Y = work.y.to_numpy()
    W = work.window
    norm = sm.robust.norms.HuberT(t=1.345)

    def run():
        return np.array([sm.RLM(Y[t - W + 1:t + 1, a], X[t - W + 1:t + 1], M=norm).fit().params[1]
                         for t, a in zip(t_idx, a_idx)])

    n = work.spec.n_windows
    return Job(run, lambda b: b, cells=(t_idx, a_idx), fraction=len(t_idx) / n,
               note=_subset_note(len(t_idx), n, "windows"), reference="huber")



def torch_loop(work: Workload, opts: Options, lr: float = 0.1, rtol: float | None = None,
               max_epochs: int = 20_000) -> Job:
    """The classic gradient-descent example, one regression at a time, on a random sample of
    (asset, window) pairs: ``w, b = zeros(requires_grad)``, ``torch.optim.SGD(lr)`` on the mean
    squared error of globally scaled data, until the loss changes by less than ``rtol``
    (relative; default 1e-13 in float64 on the CPU, 1e-7 in float32 on a GPU) or
    ``max_epochs``. Scaling x and y by their full-sample standard deviation is
    the examples' "normalize your inputs" step; without it SGD barely moves on daily returns."""
    import torch
    t_idx, a_idx = _window_subset(work, opts.loop_windows, opts.seed)
    W = work.window
    x = work.x.to_numpy()
    Y = work.y.to_numpy()
    sx, sy = float(x.std()), float(Y.std())
    dev = torch.device(opts.device)
    dtype = torch.float64 if dev.type == "cpu" else torch.float32
    if rtol is None:
        rtol = 1e-13 if dtype == torch.float64 else 1e-7
    epochs: list[int] = []

    def fit_one(xw: np.ndarray, yw: np.ndarray) -> float:
        xt = torch.tensor(xw / sx, dtype=dtype, device=dev)
        yt = torch.tensor(yw / sy, dtype=dtype, device=dev)
        w = torch.zeros(1, dtype=dtype, device=dev, requires_grad=True)
        b = torch.zeros(1, dtype=dtype, device=dev, requires_grad=True)
        opt = torch.optim.SGD([w, b], lr=lr)
        prev = math.inf
        for epoch in range(1, max_epochs + 1):  # noqa: B007 - the count is kept after the loop
            opt.zero_grad()
            loss = ((xt * w + b - yt) ** 2).mean()
            loss.backward()
            opt.step()
            cur = loss.item()  # the examples' per-epoch host sync
            if abs(prev - cur) <= rtol * cur:
                break
            prev = cur
        epochs.append(epoch)
        return w.item() * sy / sx

    def run():
        epochs.clear()
        return np.array([fit_one(x[t - W + 1:t + 1], Y[t - W + 1:t + 1, a])
                         for t, a in zip(t_idx, a_idx)])

    def warmup():
        return fit_one(x[:W], Y[:W, 0])

    n = work.spec.n_windows
    job = Job(run, lambda b: b, cells=(t_idx, a_idx), fraction=len(t_idx) / n, warmup=warmup,
              torch_device=opts.device, note=_subset_note(len(t_idx), n, "windows"))
    job.extra["epochs"] = epochs
    return job


#: Row name -> method, in table order. ``quantfit newton`` first: it is also the reference.
METHODS: dict[str, Callable[[Workload, Options], Job]] = {
    "quantfit newton": lambda w, o: quantfit_fit(w, o, "newton"),
    # gd: the cheapest iterative solver, a row of its own beside adam.
    "quantfit gd": lambda w, o: quantfit_fit(w, o, "gd"),
    "quantfit adam": lambda w, o: quantfit_fit(w, o, "adam"),
    "pandas rolling cov/var": pandas_cov_var,
    "statsmodels RollingOLS (loop over assets)": statsmodels_rolling_ols,
    "polars-ols rolling_ols": polars_ols_rolling,
    "statsmodels RLM Huber (loop over windows)": statsmodels_rlm,
    "quantfit huber": lambda w, o: quantfit_fit(w, o, loss="huber"),
    "torch loop (one regression at a time)": torch_loop,
}

#: Short names for the command line (``quantfit bench --rows newton,pandas``).
ROW_KEYS = dict(zip(("newton", "gd", "adam", "pandas", "rollingols", "polars", "rlm", "huber",
                     "torchloop"), METHODS))

PANDAS = "pandas rolling cov/var"
RLM = "statsmodels RLM Huber (loop over windows)"
HUBER = "quantfit huber"
