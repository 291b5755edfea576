"""Input transforms for beta estimation, usable on their own or through ``qf.fit_rolling``.

Conventions: returns are per-period decimals in DataFrames indexed by date (rows) with one
column per asset or factor; the market is a Series aligned by date. NaN stays NaN.

- ``welch_winsorize(y, market)``: Welch (2022, "Simply Better Market Betas") clips each asset's
  return on each date to between (1 − δ)·r_m and (1 + δ)·r_m with δ = 3, i.e. between −2·r_m
  and 4·r_m (whichever order the sign of r_m gives). ``fit_rolling(..., winsorize="welch")``.
- ``dimson_lags(x, lags, market)``: Dimson (1979) adds the market's returns lagged 1..L rows as
  regressors (``"<market>_lag1"``, ...); the Dimson beta is the sum of the market coefficients.
  ``fit_rolling(..., lags=L)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from quantfit.errors import FitError

#: Welch's slope-winsorizing bounds (1 − δ, 1 + δ) with δ = 3.
WELCH_BOUNDS = (-2.0, 4.0)


def welch_winsorize(y: pd.DataFrame | pd.Series, market: pd.Series,
                    bounds: tuple[float, float] = WELCH_BOUNDS) -> pd.DataFrame | pd.Series:
    """Clip every return of ``y`` to between ``bounds[0]·r_m`` and ``bounds[1]·r_m`` (in the
    order the sign of r_m gives), r_m the ``market`` return of the same date (aligned by date;
    a date without a market return is left as it is). Returns the same type and shape as y."""
    if not isinstance(y, (pd.DataFrame, pd.Series)) or not isinstance(market, pd.Series):
        raise FitError("welch_winsorize needs y as a DataFrame or Series and market as a Series")
    lo_k, hi_k = (float(b) for b in bounds)
    if not lo_k < hi_k:
        raise FitError(f"welch_winsorize: bounds must be increasing, got {bounds}")
    frame = y.to_frame() if isinstance(y, pd.Series) else y
    m = market.reindex(frame.index).to_numpy(np.float64)[:, None]
    vals = frame.to_numpy(np.float64, na_value=np.nan)
    lo, hi = np.minimum(lo_k * m, hi_k * m), np.maximum(lo_k * m, hi_k * m)
    with np.errstate(invalid="ignore"):
        clipped = np.where(np.isfinite(m), np.clip(vals, lo, hi), vals)
    out = pd.DataFrame(clipped, index=frame.index, columns=frame.columns)
    return out.iloc[:, 0].rename(y.name) if isinstance(y, pd.Series) else out


def lag_name(market: str, lag: int) -> str:
    """Name of the market lagged ``lag`` rows: ``"<market>_lag<lag>"``."""
    return f"{market}_lag{lag}"


def dimson_lags(x: pd.DataFrame | pd.Series, lags: int, market: str | None = None) -> pd.DataFrame:
    """``x`` with the ``market`` column lagged 1..``lags`` rows appended (``"<market>_lag1"``,
    ...; the first rows of each lag are NaN). ``market`` defaults to the only column."""
    frame = x.to_frame() if isinstance(x, pd.Series) else x
    if not isinstance(frame, pd.DataFrame):
        raise FitError("dimson_lags needs x as a DataFrame or Series")
    if isinstance(lags, bool) or not isinstance(lags, (int, np.integer)) or lags < 0:
        raise FitError(f"lags must be a non-negative integer, got {lags!r}")
    names = [str(c) for c in frame.columns]
    mkt = market_column(names, market, "lags=")
    out = frame.set_axis(names, axis=1)
    for lag in range(1, int(lags) + 1):
        name = lag_name(mkt, lag)
        if name in names:
            raise FitError(f"lags={lags}: x already has a column {name!r}")
        out = out.assign(**{name: out[mkt].shift(lag)})
    return out


def market_column(factors: list[str], market: str | None, what: str) -> str:
    """The market factor's name: ``market`` if given (it must be one of ``factors``), else the
    only factor."""
    if market is None:
        if len(factors) != 1:
            raise FitError(f"{what} needs market= naming one of {factors}")
        return factors[0]
    if str(market) not in factors:
        raise FitError(f"market={market!r} is not a column of x ({factors})")
    return str(market)
