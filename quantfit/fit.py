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
    loss : ``"mse"`` (least squares).
    tol, max_iter : convergence settings of the iterative solvers; ``None`` = the solver's
        default (see ``quantfit.engine.solvers.DEFAULTS``).
    device : ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    dtype : ``torch.float64`` / ``torch.float32`` (or their names); default float64 on the
        CPU and float32 on a GPU. Results are always returned as float64.
    chunk_size : assets per batch; default from a memory budget (~0.75 GB on the CPU, a
        quarter of the free memory on a GPU).
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
    factors = [str(c) for c in X.columns]
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
    if tol is not None and not (isinstance(tol, (int, float)) and tol > 0):
        raise FitError(f"tol must be a positive number, got {tol!r}")
    if max_iter is not None and not (isinstance(max_iter, (int, np.integer)) and max_iter >= 1):
        raise FitError(f"max_iter must be a positive integer, got {max_iter!r}")
    if chunk_size is not None and not (isinstance(chunk_size, (int, np.integer)) and chunk_size >= 1):
        raise FitError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    dev, dt = _check_device(device, dtype)

    yv = _numeric(Y, "y")  # (T, A); pandas usually stores it so that .T is C-contiguous
    xv = _numeric(X, "x")  # (T, k)
    spec = RollingSpec(window=window, min_obs=min_obs, halflife=halflife, intercept=bool(intercept),
                       loss=loss, solver=solver, tol=tol, max_iter=max_iter, chunk_size=chunk_size)
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
    return RollingFit(
        index=Y.index, assets=Y.columns, terms=terms, coef=out.coef.numpy(),
        stderr=out.stderr.numpy(), r2=out.r2.numpy(), resid_vol=out.resid_vol.numpy(),
        nobs=out.nobs.numpy(), converged=out.converged.numpy(), n_iter=out.n_iter.numpy(),
        settings=settings,
    )


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
