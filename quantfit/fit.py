"""``fit_rolling``: rolling regressions of many assets on shared factors, pandas in and out.

This module validates parameters (``FitError`` with a clear message), turns the frames into
tensors, runs ``quantfit.engine.rolling_regression`` and wraps the output in a ``RollingFit``.
All numerical work lives in the engine; no pandas goes past this file.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch

from quantfit.engine import LOSSES, SOLVERS, RollingSpec, default_dtype, pick_device, rolling_regression
from quantfit.errors import FitError
from quantfit.results import RollingFit

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def fit_rolling(
    y: pd.DataFrame | pd.Series,
    x: pd.DataFrame | pd.Series,
    window: int | None = 252,
    *,
    min_obs: int | None = None,
    expanding: bool = False,
    halflife: float | None = None,
    intercept: bool = True,
    solver: str = "newton",
    loss: str = "mse",
    tol: float | None = None,
    max_iter: int | None = None,
    device: str | torch.device = "auto",
    dtype: torch.dtype | str | None = None,
    chunk_size: int | None = None,
    huber_t: float = 1.345,
    prior: Any = None,
    prior_strength: float = 0.0,
    winsorize: str | None = None,
    market: str | None = None,
    lags: int = 0,
    history: bool = False,
) -> RollingFit:
    """Regress every column of ``y`` on the factors ``x`` over trailing windows of rows.

    For every asset i and date t: ``y_i = α + Σ_k β_k x_k + ε`` over the rows ``(t − W, t]``
    (the value at t uses row t, as pandas/statsmodels). Rows where y_i or any factor is
    missing (NaN/inf) are dropped inside that window only; an estimate exists at t when the
    window holds at least ``min_obs`` valid rows. Rows before the start of the data count as
    missing, so with ``min_obs < window`` estimates start as soon as ``min_obs`` rows exist.

    Parameters
    ----------
    y : DataFrame (dates × assets) or Series (one asset, named by the Series' name).
    x : DataFrame (dates × factors) or Series (one factor, named by the Series' name);
        reindexed to ``y``'s dates (dates missing in x are missing rows).
    window : rows per window W (``None`` with ``expanding=True``).
    min_obs : valid rows needed for an estimate; default W (pandas' ``min_periods``), or p (the
        number of parameters) when expanding. Must satisfy p ≤ min_obs ≤ W.
    expanding : use all rows up to t (requires ``window=None``).
    halflife : weight each row by ``0.5 ** (age / halflife)``, age 0 for row t (WLS).
    intercept : fit α (term ``"alpha"``).
    solver : ``"newton"`` (exact normal equations, default), or the first-order ``"gd"``,
        ``"adam"``, ``"lbfgs"`` (cold start, per-window convergence; see ``converged``).
    loss : ``"mse"`` (least squares) or ``"huber"`` (robust: statsmodels ``RLM`` with
        ``HuberT(huber_t)`` and its MAD scale, per window; fixed windows only; see
        ``quantfit.engine.huber`` for the solvers and the meaning of stderr/r2/resid_vol).
    tol, max_iter : convergence settings of the iterative solvers; ``None`` = the solver's
        default (see ``quantfit.engine.solvers.DEFAULTS``).
    device : ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    dtype : ``torch.float64`` / ``torch.float32`` (or their names); default float64 on the
        CPU and float32 on a GPU. Results are always returned as float64.
    chunk_size : assets per batch; default from a memory budget (~0.75 GB on the CPU, a
        quarter of the free memory on a GPU). For ``loss="huber"``: (asset, window) pairs per
        block.
    huber_t : Huber's tuning constant t (> 0), in units of the robust scale.
    prior, prior_strength : shrinkage prior: ``prior_strength · ‖β − prior‖²`` (λ ≥ 0) is added
        to each window's (weighted) sum of squared residuals (for huber, to twice its loss);
        the intercept is not penalized. ``prior`` is a scalar, a Series indexed by asset (the
        same target for every factor of that asset), a dict / Series indexed by factor, or a
        DataFrame assets × factors. stderr then is √(σ² [(ZᵀWZ + λP)⁻¹]_jj) (P selects the
        slopes), the posterior standard deviation under β ~ N(b0, σ²/λ).
    winsorize : ``"welch"``: before fitting, clip each asset's return on each date to between
        −2 and +4 times the market's return that date (Welch 2022, "Simply Better Market
        Betas"; pair with ``halflife≈84`` rows, about four months of trading days).
    market : the market factor for ``winsorize`` and ``lags`` (default: the only factor).
    lags : Dimson (1979) beta: add the market's returns lagged 1..L rows as regressors
        (``"<market>_lag1"``, ...); ``fit.beta`` is then the summed market coefficient
        (term ``"beta_dimson"``, SE from the full covariance), each lag via ``fit.coef``.
    history : record ``fit.history``: the mean loss (½·RSS, + the penalty; Huber's loss for
        huber) over the estimated windows after each iteration (1-D float64 array).
    """
    Y = _as_frame(y, "y", "y")
    X = _as_frame(x, "x", "x")
    if Y.shape[0] == 0 or Y.shape[1] == 0:
        raise FitError("y is empty")
    if X.shape[1] == 0:
        raise FitError("x has no factor columns")
    if not Y.index.is_unique:
        raise FitError("y's index has duplicate dates")
    if not X.index.equals(Y.index):
        if not X.index.is_unique:
            raise FitError("x's index has duplicate dates; cannot align it to y")
        if not Y.index.isin(X.index).any():
            raise FitError("x shares no dates with y (x is aligned to y's index)")
        X = X.reindex(Y.index)
    X = X.set_axis([str(c) for c in X.columns], axis=1)  # a new frame: the caller's is untouched
    factors = list(X.columns)
    if winsorize not in (None, "welch"):
        raise FitError(f"winsorize must be None or 'welch', got {winsorize!r}")
    if not (isinstance(lags, (int, np.integer)) and not isinstance(lags, bool) and lags >= 0):
        raise FitError(f"lags must be a non-negative integer, got {lags!r}")
    lags = int(lags)
    mkt = None
    if winsorize or lags:
        mkt = _market(factors, market)
    elif market is not None:
        raise FitError("market= is used by winsorize='welch' and lags=; neither is set")
    if winsorize == "welch":
        m = X[mkt].to_numpy(np.float64)[:, None]
        lo, hi = np.minimum(-2.0 * m, 4.0 * m), np.maximum(-2.0 * m, 4.0 * m)
        yv0 = _numeric(Y, "y")
        with np.errstate(invalid="ignore"):
            clipped = np.where(np.isfinite(m), np.clip(yv0, lo, hi), yv0)
        Y = pd.DataFrame(clipped, index=Y.index, columns=Y.columns)
    if lags:
        for lag in range(1, lags + 1):
            name = f"{mkt}_lag{lag}"
            if name in factors or name == "beta_dimson":
                raise FitError(f"lags={lags}: x already has a column {name!r}")
            X[name] = X[mkt].shift(lag)
        factors = list(X.columns)
    if "beta_dimson" in factors:
        raise FitError("a factor may not be named 'beta_dimson' (reserved for lags=)")
    if "alpha" in factors:
        raise FitError("a factor may not be named 'alpha' (reserved for the intercept)")
    if len(set(factors)) != len(factors):
        raise FitError(f"factor names must be unique, got {factors}")
    p = len(factors) + int(bool(intercept))

    window, min_obs = _check_window(window, min_obs, expanding, p, Y.shape[0])
    if halflife is not None and not (isinstance(halflife, (int, float)) and math.isfinite(halflife)
                                     and halflife > 0):
        raise FitError(f"halflife must be a positive number of rows, got {halflife!r}")
    if solver not in SOLVERS:
        raise FitError(f"unknown solver {solver!r}; choose one of {sorted(SOLVERS)}")
    if loss not in LOSSES:
        raise FitError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)}")
    if not (isinstance(huber_t, (int, float)) and math.isfinite(huber_t) and huber_t > 0):
        raise FitError(f"huber_t must be a positive number, got {huber_t!r}")
    if loss == "huber" and expanding:
        raise FitError("loss='huber' needs a fixed window (it keeps every row of every window); "
                       "expanding=True is for loss='mse'")
    if not (isinstance(prior_strength, (int, float)) and math.isfinite(prior_strength)
            and prior_strength >= 0):
        raise FitError(f"prior_strength must be a number >= 0, got {prior_strength!r}")
    if prior_strength > 0 and prior is None:
        raise FitError("prior_strength > 0 needs prior= (the target beta b0)")
    if prior is not None and lags:
        raise FitError("prior= with lags= is not supported (which coefficients would it shrink?)")
    if not isinstance(history, bool):
        raise FitError(f"history must be True or False, got {history!r}")
    if tol is not None and not (isinstance(tol, (int, float)) and tol > 0):
        raise FitError(f"tol must be a positive number, got {tol!r}")
    if max_iter is not None and not (isinstance(max_iter, (int, np.integer)) and max_iter >= 1):
        raise FitError(f"max_iter must be a positive integer, got {max_iter!r}")
    if chunk_size is not None and not (isinstance(chunk_size, (int, np.integer)) and chunk_size >= 1):
        raise FitError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    dev, dt = _check_device(device, dtype)

    yv = _numeric(Y, "y")  # (T, A); pandas usually stores it so that .T is C-contiguous
    xv = _numeric(X, "x")  # (T, k)
    k0 = int(bool(intercept))
    sums = ((k0 + factors.index(mkt),) + tuple(k0 + factors.index(f"{mkt}_lag{i}")
                                              for i in range(1, lags + 1)),) if lags else ()
    b0 = None if prior is None or prior_strength == 0 else _prior(prior, Y.columns, factors)
    spec = RollingSpec(window=window, min_obs=min_obs, halflife=halflife, intercept=bool(intercept),
                       loss=loss, solver=solver, tol=tol, max_iter=max_iter, chunk_size=chunk_size,
                       huber_t=float(huber_t), prior=b0, prior_strength=float(prior_strength),
                       sums=sums, history=history)
    with warnings.catch_warnings():
        # pandas hands out read-only views (copy-on-write); the engine never writes to y or x.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        y_t, x_t = torch.from_numpy(yv.T), torch.from_numpy(xv)
    out = rolling_regression(y_t, x_t, spec, dev, dt)
    terms = (["alpha"] if intercept else []) + factors
    settings: dict[str, Any] = dict(
        window=window, min_obs=min_obs, expanding=bool(expanding), halflife=halflife,
        intercept=bool(intercept), solver=solver, loss=loss, tol=tol, max_iter=max_iter,
        device=str(dev), dtype=str(dt).replace("torch.", ""),
    )
    coef, stderr = out.coef.numpy(), out.stderr.numpy()
    if loss == "huber":
        settings["huber_t"] = float(huber_t)
    if b0 is not None:
        settings["prior_strength"] = float(prior_strength)
        if np.isscalar(prior):
            settings["prior"] = float(prior)
    if winsorize:
        settings["winsorize"] = winsorize
    if lags:
        settings.update(lags=lags, market=mkt, derived=["beta_dimson"], beta_term="beta_dimson")
        terms = terms + ["beta_dimson"]
        coef = np.concatenate([coef, out.sum_coef.numpy()])
        stderr = np.concatenate([stderr, out.sum_stderr.numpy()])
    fit = RollingFit(
        index=Y.index, assets=Y.columns, terms=terms, coef=coef,
        stderr=stderr, r2=out.r2.numpy(), resid_vol=out.resid_vol.numpy(),
        nobs=_host(out.nobs), converged=_host(out.converged), n_iter=_host(out.n_iter),
        settings=settings,
    )
    fit.history = None if out.history is None else out.history.numpy()
    return fit


def _host(t: torch.Tensor) -> np.ndarray:
    """A host tensor as numpy; a flag the engine shares by all assets (one row broadcast,
    stride 0) stays one row, read-only so that no write can reach every asset at once."""
    if t.dim() == 2 and t.stride(0) == 0:
        return np.broadcast_to(t[:1].numpy(), tuple(t.shape))
    return t.numpy()


def _market(factors: list[str], market: str | None) -> str:
    if market is None:
        if len(factors) != 1:
            raise FitError(f"winsorize='welch' / lags= need market= naming one of {factors}")
        return factors[0]
    if str(market) not in factors:
        raise FitError(f"market={market!r} is not a column of x ({factors})")
    return str(market)


def _prior(prior: Any, assets: pd.Index, factors: list[str]) -> torch.Tensor:
    """The target slopes b0 as a float64 tensor (A or 1, k)."""
    k = len(factors)
    if isinstance(prior, (int, float, np.number)) and not isinstance(prior, bool):
        b0 = np.full((1, k), float(prior))
    elif isinstance(prior, dict) or (isinstance(prior, pd.Series) and set(map(str, prior.index)) <= set(factors)
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


def _as_frame(obj: Any, what: str, default_name: str) -> pd.DataFrame:
    if isinstance(obj, pd.Series):
        return obj.to_frame(name=obj.name if obj.name is not None else default_name)
    if isinstance(obj, pd.DataFrame):
        return obj
    raise FitError(f"{what} must be a pandas DataFrame or Series, got {type(obj).__name__}")


def _numeric(frame: pd.DataFrame, what: str) -> np.ndarray:
    try:
        return frame.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise FitError(f"{what} must hold numbers only: {exc}") from None


def _check_window(window, min_obs, expanding, p, n_dates):
    if expanding:
        if window is not None:
            raise FitError("expanding=True uses every row up to t: pass window=None")
        if min_obs is None:
            min_obs = p
    else:
        if window is None:
            raise FitError("window=None needs expanding=True")
        if not isinstance(window, (int, np.integer)) or isinstance(window, bool):
            raise FitError(f"window must be an integer number of rows, got {window!r}")
        window = int(window)
        if window < p:
            raise FitError(f"window={window} is shorter than the {p} parameters to fit")
        if min_obs is None:
            min_obs = window
    if not isinstance(min_obs, (int, np.integer)) or isinstance(min_obs, bool):
        raise FitError(f"min_obs must be an integer, got {min_obs!r}")
    min_obs = int(min_obs)
    upper = window if window is not None else n_dates
    if not p <= min_obs <= max(upper, p):
        raise FitError(f"min_obs={min_obs} must lie in [p={p}, {'window' if window else 'rows'}={upper}]")
    return window, min_obs


def _check_device(device, dtype) -> tuple[torch.device, torch.dtype]:
    try:
        dev = pick_device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise FitError(f"bad device {device!r}: {exc}") from None
    if dtype is None:
        dt = default_dtype(dev)
    elif isinstance(dtype, str) and dtype in _DTYPES:
        dt = _DTYPES[dtype]
    elif dtype in (torch.float32, torch.float64):
        dt = dtype
    else:
        raise FitError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    if dev.type == "mps" and dt == torch.float64:
        raise FitError("MPS has no float64: use dtype=torch.float32")
    return dev, dt
