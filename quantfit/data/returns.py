"""``qf.returns``: prices -> per-period returns, optionally in excess of a risk-free rate;
``qf.excess_returns``: the same excess rule for returns you already have (e.g. compounded).

Conventions:

* input is a wide price frame (DatetimeIndex x tickers) or one price Series; prices > 0;
* returns are per period of the input (daily prices give daily returns), in decimals;
* **the first row is dropped** (it has no previous price), so the output has one row fewer;
* **no filling across gaps**: a missing price makes both the return into it and the return
  out of it NaN, never a zero (pandas ``pct_change(fill_method=None)``);
* ``rf`` is a per-period rate in decimals (e.g. ``qf.sources.french(...)["RF"]``) aligned by
  date, or a scalar; every return date must have an ``rf`` value, otherwise ``DataError``
  (trim or align it yourself: a silently missing rate would bias the excess return). Rates
  must be finite (a scalar or any value of the Series). For ``kind="log"`` the rate is turned
  into a log rate first: excess = log return - log(1 + rf), so ``rf`` must be above -1.
* ``excess_returns(returns, rf, kind)`` applies that rule to returns at any frequency, e.g.
  monthly returns from ``qf.compound`` against the monthly Ken French ``RF``
  (``qf.sources.factor_model("ff3", freq="M")["RF"]``); ``returns(prices, rf=...)`` is
  ``excess_returns(returns(prices), rf)``.
"""

from __future__ import annotations

from numbers import Real
from typing import Literal, TypeVar

import numpy as np
import pandas as pd

from quantfit.errors import DataError

Frame = TypeVar("Frame", pd.DataFrame, pd.Series)


def _check_prices(prices) -> None:
    if not isinstance(prices, (pd.DataFrame, pd.Series)):
        raise DataError(f"prices must be a DataFrame or Series, got {type(prices).__name__}")
    if not isinstance(prices.index, pd.DatetimeIndex):
        raise DataError("prices must have a DatetimeIndex (dates as the index)")
    if prices.index.has_duplicates:
        raise DataError(f"prices index has duplicate date {prices.index[prices.index.duplicated()][0].date()}")
    if not prices.index.is_monotonic_increasing:
        raise DataError("prices index must be sorted by date (call .sort_index() first)")
    values = prices.to_numpy(dtype="float64", na_value=np.nan)
    bad = ~np.isnan(values) & ~(np.isfinite(values) & (values > 0))
    if bad.any():
        r, *c = np.argwhere(bad.reshape(len(prices), -1))[0]
        name = prices.columns[c[0]] if isinstance(prices, pd.DataFrame) else prices.name
        raise DataError(f"price must be positive and finite: {name} on {prices.index[r].date()} "
                        f"is {float(values.reshape(len(prices), -1)[r, c[0]])!r}")


def _rf_series(rf, index: pd.DatetimeIndex, kind: str) -> pd.Series:
    """The risk-free rate per return date (decimals), or DataError when a date has none or a
    rate is unusable (infinite; at or below -1 for log returns, where log(1 + rf) is undefined)."""
    if isinstance(rf, pd.DataFrame):
        if rf.shape[1] != 1:
            raise DataError(f"rf must be one column, got {rf.shape[1]}")
        rf = rf.iloc[:, 0]
    if isinstance(rf, Real) and not isinstance(rf, (bool, np.bool_)):
        _check_rates(np.array([float(rf)]), kind, lambda i: f"rf is {float(rf)!r}")
        return pd.Series(float(rf), index=index)
    if not isinstance(rf, pd.Series):
        raise DataError(f"rf must be a Series of per-period rates or a number, got {type(rf).__name__}")
    if not isinstance(rf.index, pd.DatetimeIndex):
        raise DataError("rf must be indexed by date (DatetimeIndex)")
    if rf.index.has_duplicates:
        raise DataError(f"rf has duplicate date {rf.index[rf.index.duplicated()][0].date()}")
    if pd.api.types.is_bool_dtype(rf.dtype):
        raise DataError("rf must be numbers, not booleans")
    numeric = pd.to_numeric(rf, errors="coerce").astype("float64")
    bad = numeric.isna() & rf.notna()
    if bad.any():
        raise DataError(f"rf has a non-numeric value {rf[bad].iloc[0]!r} on {rf.index[bad.to_numpy()][0].date()}")
    aligned = numeric.reindex(index)
    missing = aligned.isna()
    if missing.any():
        first = index[missing.to_numpy()][0]
        raise DataError(f"rf has no value for {int(missing.sum())} of {len(index)} return dates "
                        f"(first {first.date()}); align or trim rf and the prices to a common range")
    values = aligned.to_numpy()
    _check_rates(values, kind, lambda i: f"rf on {index[i].date()} is {float(values[i])!r}")
    return aligned


def _check_rates(values: np.ndarray, kind: str, shown) -> None:
    """Rates must be finite, and above -1 for log returns (log1p(-1) = -inf, below: NaN)."""
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"rf must be finite: {shown(i)}")
    if kind == "log":
        bad = values <= -1
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"rf must be above -1 (a -100% rate) for log returns, where the "
                            f"excess is log(1 + rf): {shown(i)}")


def returns(prices: Frame, kind: Literal["simple", "log"] = "simple", rf=None) -> Frame:
    """Per-period returns of a wide price frame (or one price Series).

    Parameters
    ----------
    prices : DataFrame (DatetimeIndex x tickers) or Series of positive prices; NaN = no price.
    kind : ``"simple"`` (p_t / p_{t-1} - 1) or ``"log"`` (ln p_t - ln p_{t-1}).
    rf : optional risk-free rate per period in decimals: a Series indexed by date (aligned on
        the return dates, each of which must be present) or a scalar. When given, returns are
        excess returns (for ``"log"``: minus ``log1p(rf)``).

    Returns
    -------
    Same type as ``prices``, float64, indexed by ``prices.index[1:]`` (the first row is
    dropped); NaN wherever the price or the previous price is missing.
    """
    if kind not in ("simple", "log"):
        raise DataError(f"kind must be 'simple' or 'log', got {kind!r}")
    _check_prices(prices)
    if len(prices) < 2:
        raise DataError(f"need at least 2 dates to compute returns, got {len(prices)}")
    px = prices.astype("float64")
    if kind == "simple":
        out = px.pct_change(fill_method=None)
    else:
        out = np.log(px).diff()
    out = out.iloc[1:]
    return out if rf is None else excess_returns(out, rf, kind)


def excess_returns(returns: Frame, rf, kind: Literal["simple", "log"] = "simple") -> Frame:
    """Returns in excess of a risk-free rate per period: ``r - rf`` (log: ``r - log1p(rf)``).

    Parameters
    ----------
    returns : DataFrame (DatetimeIndex x assets) or Series of per-period returns, decimals.
    rf : the risk-free rate per period of ``returns`` (daily rates for daily returns, monthly
        for monthly), decimals: a Series indexed by date, aligned by date, with a value for
        every date of ``returns`` (else ``DataError``: trim to the common range first), or a
        scalar. A factor model's ``RF`` column is that rate:
        ``qf.sources.factor_model("ff3", freq="M")["RF"]``.
    kind : how ``returns`` were computed: ``"simple"`` or ``"log"``.

    Returns
    -------
    Same type and index as ``returns``, float64; NaN where the return is NaN.
    """
    if kind not in ("simple", "log"):
        raise DataError(f"kind must be 'simple' or 'log', got {kind!r}")
    if not isinstance(returns, (pd.DataFrame, pd.Series)):
        raise DataError(f"returns must be a DataFrame or Series, got {type(returns).__name__}")
    if not isinstance(returns.index, pd.DatetimeIndex):
        raise DataError("returns must have a DatetimeIndex (dates as the index)")
    rate = _rf_series(rf, returns.index, kind)
    if kind == "log":
        rate = np.log1p(rate)
    out = returns.astype("float64")
    return out.sub(rate, axis=0) if isinstance(out, pd.DataFrame) else (out - rate).rename(out.name)
