"""``fit_rolling``: rolling regressions of many assets on shared factors, pandas in and out.

This module turns user objects into validated specs (``quantfit.spec``) and contiguous float64
tensors in date order, runs ``quantfit.engine.rolling_regression`` and wraps the output in a
``RollingFit``. All numerical work lives in the engine; no pandas goes past this file.

Inputs are taken as a demanding user passes them: any column order or memory layout (column
selections, reversed views), dates in any order (fitted in date order, returned in the
caller's order), integer / boolean / nullable columns, polars DataFrames with a date column.
Anything that is not a number (timedelta, datetime, complex, text) is refused with a FitError.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from quantfit.engine import RollingSpec, rolling_regression
from quantfit.errors import FitError
from quantfit.results import FitMeta, RollingFit
from quantfit.sampling import period_end_rows, to_frequency, window_starts
from quantfit.spec import (
    DEFAULT_WINDOW,
    ComputeSpec,
    EstimatorSpec,
    FitSpec,
    PerAssetPrior,
    SamplingSpec,
    TransformSpec,
)
from quantfit.transforms import dimson_lags, lag_name, market_column, welch_winsorize

#: Terms fit_rolling names itself: factors may not be called this.
RESERVED = ("alpha", "beta_dimson")


class _Default:
    """A keyword's default value, told apart from the same value given explicitly: only given
    keywords override a preset's (and conflict with ``spec=``). Shows as the value itself."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


# fit_rolling's defaults (one object each: ``isinstance(v, _Default)`` tells them apart)
_NONE = _Default(None)
_TRUE = _Default(True)
_FALSE = _Default(False)
_MSE = _Default("mse")
_AUTO = _Default("auto")
_HUBER_T = _Default(1.345)
_ZERO = _Default(0.0)
_NO_LAGS = _Default(0)
_SIMPLE = _Default("simple")


def fit_rolling(
    y: Any,
    x: Any,
    window: Any = DEFAULT_WINDOW,
    *,
    min_obs: int | None = _NONE,
    expanding: bool = False,
    halflife: float | None = _NONE,
    intercept: bool = _TRUE,
    solver: Any = "newton",
    loss: str = _MSE,
    tol: float | None = _NONE,
    max_iter: int | None = _NONE,
    device: str | torch.device = _AUTO,
    dtype: torch.dtype | str | None = _NONE,
    chunk_size: int | None = _NONE,
    huber_t: float = _HUBER_T,
    prior: Any = _NONE,
    prior_strength: float = _ZERO,
    winsorize: str | None = _NONE,
    market: str | None = _NONE,
    lags: int = _NO_LAGS,
    history: bool = _FALSE,
    freq: str | None = _NONE,
    kind: str = _SIMPLE,
    every: str | None = _NONE,
    adjust: str | None = _NONE,
    preset: str | None = None,
    estimator: EstimatorSpec | None = None,
    compute: ComputeSpec | None = None,
    transforms: TransformSpec | None = None,
    sampling: SamplingSpec | None = None,
    spec: FitSpec | None = None,
) -> RollingFit:
    """Regress every column of ``y`` on the factors ``x`` over trailing windows of rows.

    For every asset i and date t: ``y_i = α + Σ_k β_k x_k + ε`` over the rows ``(t − W, t]``
    (the value at t uses row t, as pandas/statsmodels). Rows where y_i or any factor is
    missing (NaN/inf) are dropped inside that window only; an estimate exists at t when the
    window holds at least ``min_obs`` valid rows. Rows before the start of the data count as
    missing, so with ``min_obs < window`` estimates start as soon as ``min_obs`` rows exist.

    Parameters
    ----------
    y : DataFrame (dates × assets) or Series (one asset, named by the Series' name); or a
        polars DataFrame with a date column (named ``date``, or its only date column).
    x : DataFrame (dates × factors) or Series (one factor, named by the Series' name), or a
        polars DataFrame as y; aligned to ``y``'s dates (dates missing in x are missing rows).
    window : rows per window W; or a calendar lookback ``"60M"``, ``"2Y"``, ``"104W"``,
        ``"365D"`` (the rows dated in (t − lookback, t]; months and years by calendar, see
        ``quantfit.sampling``; needs a DatetimeIndex); ``None`` with ``expanding=True``; or a
        ``qf.spec.WindowSpec``.
    min_obs : valid rows needed for an estimate; default W (pandas' ``min_periods``), or p (the
        number of parameters) when expanding. Must satisfy p ≤ min_obs ≤ W. A calendar window
        needs it, unless ``freq`` makes its rows a known number of periods ("60M" at
        ``freq="M"``: 60).
    expanding : use all rows up to t (requires ``window=None``).
    halflife : weight each row by ``0.5 ** (age / halflife)``, age 0 for row t (WLS), in rows
        (periods with ``freq``); at least 0.01 rows.
    intercept : fit α (term ``"alpha"``).
    solver : ``"newton"`` (exact normal equations, default), or the first-order ``"gd"``,
        ``"adam"``, ``"lbfgs"`` (cold start, per-window convergence; see ``converged``); or a
        ``qf.spec.SolverSpec``.
    loss : ``"mse"`` (least squares) or ``"huber"`` (robust: statsmodels ``RLM`` with
        ``HuberT(huber_t)`` and its MAD scale, per window; fixed windows of at least 2p + 1 rows).
    tol, max_iter : convergence settings of the iterative solvers; ``None`` = the solver's
        default (see ``quantfit.engine.solvers.DEFAULTS``).
    device : ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    dtype : ``torch.float64`` / ``torch.float32`` (or their names); default float64 on the
        CPU and float32 on a GPU. Results are always returned as float64.
    chunk_size : assets per batch (default from a memory budget); for ``loss="huber"``:
        (asset, window) pairs per block.
    huber_t : Huber's tuning constant t (> 0), in units of the robust scale.
    prior, prior_strength : shrinkage prior: ``prior_strength · ‖β − prior‖²`` (λ ≥ 0) is added
        to each window's (weighted) sum of squared residuals (for huber, to twice its loss);
        the intercept is not penalized. ``prior`` is a scalar, a Series indexed by asset (the
        same target for every factor of that asset), a dict / Series indexed by factor, or a
        DataFrame assets × factors. stderr then is √(σ² [(ZᵀWZ + λP)⁻¹]_jj) (P selects the
        slopes), the posterior standard deviation under β ~ N(b0, σ²/λ).
    winsorize : ``"welch"``: clip each asset's return to between −2 and +4 times the market's
        return that date first (``qf.transforms.welch_winsorize``).
    market : the market factor for ``winsorize``, ``lags`` and ``adjust`` (default: the only
        factor).
    lags : Dimson (1979) beta: add the market lagged 1..L rows as regressors
        (``qf.transforms.dimson_lags``); ``fit.beta`` is then the summed market coefficient
        (term ``"beta_dimson"``, SE from the full covariance), each lag via ``fit.coef``.
    history : record ``fit.history``: the mean loss (½·RSS, + the penalty; Huber's loss for
        huber) over the estimated windows after each iteration (1-D float64 array).
    freq : ``"W"`` (weeks ending Friday), ``"M"`` (months), ``"Q"`` (quarters): compound y and x
        to returns of that frequency first, on the same calendar periods (``qf.compound``;
        a period with a missing day is NaN for that column, partial first and last periods
        are dropped); inputs already at that frequency, dated on the periods' calendar ends
        (``qf.compound``'s output, monthly Ken French factors), are used as they are. Pass raw
        returns: compounded daily excess returns are not monthly excess returns.
    kind : ``"simple"`` (∏(1 + r) − 1, default) or ``"log"`` (Σ r) returns, for ``freq``.
    every : ``"W"``, ``"M"``, ``"Q"``: estimate only the windows ending on the last date of the
        input in each period (the last trading day, not the calendar end); the result has
        those dates only. Equal to the fit at every date sampled there, computed only there.
    adjust : ``"blume"``: also report the Blume-adjusted beta 0.67·β + 0.33
        (``fit.beta_adjusted``, formed on access).
    preset : a named beta definition (``quantfit.presets``: ``"bloomberg"``, ``"monthly60"``,
        ``"ewma"``, ``"welch"``); any option given here overrides the preset's.
    estimator, compute, transforms, sampling : ``qf.spec`` objects instead of their flat
        keywords.
    spec : a whole ``qf.spec.FitSpec`` instead of every option above.

    With ``freq`` or ``every`` the result's dates are in increasing order; otherwise they are
    the caller's.
    """
    flat = dict(min_obs=min_obs, halflife=halflife, intercept=intercept, loss=loss, tol=tol,
                max_iter=max_iter, device=device, dtype=dtype, chunk_size=chunk_size,
                huber_t=huber_t, prior=prior, prior_strength=prior_strength,
                winsorize=winsorize, market=market, lags=lags, history=history, freq=freq,
                kind=kind, every=every, adjust=adjust)
    given = {k: v for k, v in flat.items() if not isinstance(v, _Default)}
    if spec is not None:
        if not isinstance(spec, FitSpec):
            raise FitError(f"spec must be a qf.spec.FitSpec, got {type(spec).__name__}")
        if given or expanding or solver != "newton" or window is not DEFAULT_WINDOW \
                or estimator or compute or transforms or sampling or preset is not None:
            raise FitError("spec= replaces every other option of fit_rolling; give one or the other")
    else:
        spec = FitSpec.from_kwargs(window, expanding=expanding, solver=solver, estimator=estimator,
                                   compute=compute, transforms=transforms, sampling=sampling,
                                   preset=preset, **given)
    if isinstance(spec.estimator.prior, PerAssetPrior):
        raise FitError("prior: a stored description of a per-asset prior cannot be fitted; "
                       "pass the Series or DataFrame")
    dev, dt = spec.compute.resolve()

    Y, X, order = _inputs(y, x, spec.sampling)
    tr = spec.transforms
    factors = list(X.columns)
    mkt = None
    if tr.winsorize or tr.lags or (spec.estimator.adjust and tr.market is not None):
        what = "winsorize='welch'" if tr.winsorize else ("lags=" if tr.lags else "adjust=")
        mkt = market_column(factors, tr.market, what)
        spec = replace(spec, transforms=TransformSpec(tr.winsorize, mkt, tr.lags))
    elif spec.estimator.adjust and len(factors) != 1:
        raise FitError(f"adjust={spec.estimator.adjust!r} adjusts the market beta: name it with "
                       f"market= (one of {factors})")
    if tr.winsorize == "welch":
        Y = welch_winsorize(Y, X[mkt])
    if tr.lags:
        X = dimson_lags(X, tr.lags, mkt)
        factors = list(X.columns)
    spec = spec.resolve(len(factors))
    est = spec.estimator

    yv = _numeric(Y, "y").T  # (A, T)
    xv = _numeric(X, "x")  # (T, k)
    k0 = int(est.intercept)
    sums = ((k0 + factors.index(mkt),) + tuple(k0 + factors.index(lag_name(mkt, i))
                                              for i in range(1, tr.lags + 1)),) if tr.lags else ()
    b0 = None
    if est.prior is not None and est.prior_strength > 0:
        b0 = _prior(est.prior, Y.columns, factors)
    elif est.prior is not None:
        _prior(est.prior, Y.columns, factors)  # checked even when it has no effect
    w = spec.window
    starts = ends = None
    if w.lookback is not None:  # calendar window: its first row per date
        starts = window_starts(Y.index, w.lookback)
    if spec.sampling.every is not None:  # period ends only: windows are first and last rows
        ends = period_end_rows(Y.index, spec.sampling.every)
        starts = None if starts is None else starts[ends]
    engine_spec = RollingSpec(
        window=w.rows, min_obs=w.min_obs, halflife=w.halflife, intercept=est.intercept,
        loss=est.loss, solver=spec.solver.name, tol=spec.solver.tol,
        max_iter=spec.solver.max_iter, chunk_size=spec.compute.chunk_size, huber_t=est.huber_t,
        prior=b0, prior_strength=est.prior_strength, sums=sums, history=spec.solver.history,
        starts=None if starts is None else torch.from_numpy(starts),
        ends=None if ends is None else torch.from_numpy(ends))
    with warnings.catch_warnings():
        # pandas hands out read-only views (copy-on-write); the engine never writes to y or x.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        y_t, x_t = torch.from_numpy(yv), torch.from_numpy(xv)
    out = rolling_regression(y_t, x_t, engine_spec, dev, dt)

    terms = (["alpha"] if est.intercept else []) + factors + (["beta_dimson"] if tr.lags else [])
    meta = FitMeta(spec=spec, device=str(dev), dtype=str(dt).replace("torch.", ""),
                   derived=("beta_dimson",) if tr.lags else (),
                   beta_term="beta_dimson" if tr.lags else None, preset=preset)
    fit = RollingFit(
        index=Y.index if ends is None else Y.index[ends], assets=Y.columns, terms=terms, coef=out.coef.numpy(),
        se_factor=out.se_factor.numpy(),
        se_sigma=None if out.se_sigma is None else out.se_sigma.numpy(),
        r2=out.r2.numpy(), resid_vol=out.resid_vol.numpy(), nobs=_host(out.nobs),
        converged=_host(out.converged), n_iter=_host(out.n_iter), meta=meta,
        history=None if out.history is None else out.history.numpy())
    if order is not None and ends is None:  # back to the caller's row order
        fit = fit.isel(dates=np.argsort(order, kind="stable"))
    return fit


def _host(t: torch.Tensor) -> np.ndarray:
    """A host tensor as numpy; a flag the engine shares by all assets (one row broadcast,
    stride 0) stays one row, read-only so that no write can reach every asset at once."""
    if t.dim() == 2 and t.stride(0) == 0:
        return np.broadcast_to(t[:1].numpy(), tuple(t.shape))
    return t.numpy()


# ------------------------------------------------------------------------------- inputs
def _inputs(y: Any, x: Any, sampling: SamplingSpec
            ) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray | None]:
    """(Y, X aligned to Y, order): frames in date order (compounded to ``sampling.freq``
    first); ``order`` is the permutation that sorted y's rows (None when they were sorted
    already or were compounded)."""
    Y = _as_frame(y, "y")
    X = _as_frame(x, "x")
    if Y.shape[0] == 0 or Y.shape[1] == 0:
        raise FitError("y is empty")
    if X.shape[1] == 0:
        raise FitError("x has no factor columns")
    _check_index(Y.index, "y")
    order = None
    if sampling.freq is not None:  # y and x on the same calendar periods, each on its own
        _check_index(X.index, "x")
        _check_numeric(Y, "y")
        _check_numeric(X, "x")
        Y = to_frequency(Y, sampling.freq, sampling.kind, "y")
        X = to_frequency(X, sampling.freq, sampling.kind, "x")
        if len(Y) == 0:
            raise FitError(f"y has no complete {sampling.freq} period (freq={sampling.freq!r})")
    elif not Y.index.is_monotonic_increasing:
        try:
            order = np.asarray(Y.index.argsort(kind="stable"))
        except TypeError as exc:
            raise FitError(f"y's dates cannot be put in order: {exc}") from None
        Y = Y.iloc[order]
    if not X.index.equals(Y.index):
        if not X.index.is_unique:
            raise FitError("x's index has duplicate dates; cannot align it to y")
        try:
            shared = Y.index.isin(X.index).any()
        except TypeError:
            shared = False
        if not shared:
            raise FitError("x shares no dates with y (x is aligned to y's index)")
        X = X.reindex(Y.index)
    X = X.set_axis([str(c) for c in X.columns], axis=1)  # a new frame: the caller's is untouched
    factors = list(X.columns)
    for name in RESERVED:
        if name in factors:
            raise FitError(f"a factor may not be named {name!r} (reserved for "
                           f"{'the intercept' if name == 'alpha' else 'lags='})")
    if len(set(factors)) != len(factors):
        raise FitError(f"factor names must be unique, got {factors}")
    _check_numeric(Y, "y")
    _check_numeric(X, "x")
    return Y, X, order


def _check_index(idx: pd.Index, what: str) -> None:
    if not idx.is_unique:
        raise FitError(f"{what}'s index has duplicate dates")
    if isinstance(idx, (pd.DatetimeIndex, pd.PeriodIndex)) and idx.hasnans:
        raise FitError(f"{what}'s index has missing dates (NaT)")


def _as_frame(obj: Any, what: str) -> pd.DataFrame:
    mod = type(obj).__module__.split(".")[0]
    if mod == "polars":
        obj = _from_polars(obj, what)
    if isinstance(obj, pd.Series):
        return obj.to_frame(name=obj.name if obj.name is not None else what)
    if isinstance(obj, pd.DataFrame):
        return obj
    raise FitError(f"{what} must be a pandas DataFrame or Series (dates as the index), or a "
                   f"polars DataFrame with a date column; got {type(obj).__name__}")


def _from_polars(obj: Any, what: str) -> pd.DataFrame:
    """A polars DataFrame as pandas, indexed by its ``date`` column (or its only date column)."""
    if type(obj).__name__ != "DataFrame":
        raise FitError(f"{what}: a polars {type(obj).__name__} has no dates to align on; pass a "
                       f"polars DataFrame with a date column, or a pandas Series indexed by date")
    temporal = [c for c, dt in obj.schema.items() if dt.is_temporal()]
    if "date" in obj.columns:
        col = "date"
    elif len(temporal) == 1:
        col = temporal[0]
    else:
        raise FitError(f"{what}: a polars DataFrame needs a 'date' column (or exactly one date "
                       f"column) to index its rows; found {temporal or 'none'}")
    return obj.to_pandas().set_index(col)


def _check_numeric(frame: pd.DataFrame, what: str) -> None:
    """Numbers only: float, integer, boolean (0/1), their nullable forms, object columns of
    numbers. Timedelta, datetime, complex, categorical and text are refused."""
    dtypes = frame.dtypes
    if dtypes.map(lambda d: d == np.float64).all():  # the common case, in one pass
        return
    for col, dt in dtypes.items():
        if pd.api.types.is_complex_dtype(dt):
            ok = False
        elif pd.api.types.is_bool_dtype(dt) or (pd.api.types.is_numeric_dtype(dt)
                                                and not pd.api.types.is_timedelta64_dtype(dt)):
            ok = True
        elif pd.api.types.is_object_dtype(dt):
            kind = pd.api.types.infer_dtype(frame[col], skipna=True)
            ok = kind in ("integer", "floating", "mixed-integer-float", "boolean", "empty")
        else:
            ok = False
        if not ok:
            raise FitError(f"{what} must hold numbers only: column {col!r} has dtype {dt}")


def _numeric(frame: pd.DataFrame, what: str) -> np.ndarray:
    """(T, n) float64, C-contiguous as (n, T) after ``.T`` (the engine's layout)."""
    try:
        arr = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise FitError(f"{what} must hold numbers only: {exc}") from None
    # Column selections, reversed views and .filter()/.reindex() results can come with any
    # strides, negative ones included (which torch refuses): the engine gets y as one C- or
    # F-contiguous block (its chunks are copied into working buffers either way; an F-ordered
    # frame is not transposed here, which would touch y's size of fresh memory), x as C.
    if what == "y" and (arr.flags.c_contiguous or arr.flags.f_contiguous):
        return arr
    return np.ascontiguousarray(arr.T).T if what == "y" else np.ascontiguousarray(arr)


def _prior(prior: Any, assets: pd.Index, factors: list[str]) -> torch.Tensor:
    """The target slopes b0 as a float64 tensor (A or 1, k)."""
    k = len(factors)
    if isinstance(prior, (int, float, np.number)) and not isinstance(prior, (bool, np.bool_)):
        b0 = np.full((1, k), float(prior))
    elif isinstance(prior, dict) or (isinstance(prior, pd.Series)
                                     and set(map(str, prior.index)) <= set(factors)
                                     and not set(prior.index) <= set(assets)):
        ser = pd.Series(prior)
        ser.index = ser.index.map(str)
        missing = [f for f in factors if f not in ser.index]
        extra = [f for f in ser.index if f not in factors]
        if missing or extra:
            raise FitError(f"per-factor prior must name exactly the factors {factors}; "
                           f"missing {missing}, unknown {extra}")
        b0 = ser.reindex(factors).to_numpy(np.float64)[None, :]
    elif isinstance(prior, pd.Series):
        missing = [a for a in assets if a not in prior.index]
        if missing:
            raise FitError(f"per-asset prior lacks assets {missing[:5]}")
        b0 = np.repeat(prior.reindex(assets).to_numpy(np.float64)[:, None], k, axis=1)
    elif isinstance(prior, pd.DataFrame):
        cols = [str(c) for c in prior.columns]
        if set(cols) != set(factors) or not set(assets) <= set(prior.index):
            raise FitError(f"a DataFrame prior must be assets × factors {factors}")
        b0 = prior.set_axis(cols, axis=1).reindex(index=assets, columns=factors).to_numpy(np.float64)
    else:
        raise FitError(f"prior must be a number, a dict/Series by factor, a Series by asset or a "
                       f"DataFrame assets × factors, got {type(prior).__name__}")
    if not np.isfinite(b0).all():
        raise FitError("prior has missing or non-finite values")
    return torch.from_numpy(np.ascontiguousarray(b0))
