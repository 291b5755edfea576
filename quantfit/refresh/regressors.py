"""The regressors of a refresh and the calendar they define.

* default: ``x`` = the benchmark's simple daily return (one factor named by its ticker);
* ``factors=FILE`` (a Ken French *daily* file): ``x`` = every factor column but ``RF``, and
  each asset's return is taken in excess of ``RF``;
* ``model=NAME`` (``qf.sources.factor_model``: capm, ff3, ff5, carhart): the model's factors
  and ``RF`` from its daily Ken French files, as ``factors=``; with ``freq="M"`` its monthly
  files, on the months both the files and the prices cover completely.

With ``freq`` ("W", "M", "Q") the fit's **rows are periods**, labelled by their calendar end
(``qf.compound``): the benchmark's daily returns compounded (strict: a period must be complete),
or the model's monthly rows. Prices are still read on the daily calendar ``cal`` (the
benchmark's trading days), and every asset's daily returns on it are compounded the same way,
so periods line up and a group of assets gives the numbers the whole universe would.

**The calendar is the regressors' dates**: the benchmark's trading days (or the factor file's
days within the store's date range). Asset prices are read on those dates only, and returns
run from one calendar date to the next, so an asset's return and the factor's cover the same
period (a price on a day the benchmark did not trade is not used). The first calendar date has
no return; the others are the fit's rows, identical for every chunk of assets, so fitting the
universe in chunks gives the same numbers as fitting it at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from quantfit.errors import DataError


@dataclass
class Regressors:
    """cal : price dates (DatetimeIndex); x : factor returns on the fit's rows (rows × factors):
    ``cal[1:]``, or the periods of ``freq``; rf : the risk-free rate per row (factors and model
    modes) or None."""

    cal: pd.DatetimeIndex
    x: pd.DataFrame
    rf: pd.Series | None = None
    freq: str | None = None

    @property
    def rows(self) -> pd.DatetimeIndex:
        return self.x.index

    def month_hashes(self, upto=None) -> dict[str, str]:
        """One hash per month of rows (dates, factor values, RF), rows after ``upto`` left out."""
        x = self.x if upto is None else self.x.loc[:pd.Timestamp(upto)]
        parts = [x.index.values.astype("datetime64[D]").astype(np.int64)[:, None].view(np.float64),
                 x.to_numpy(np.float64)]
        if self.rf is not None:
            parts.append(self.rf.loc[x.index].to_numpy(np.float64)[:, None])
        values = np.ascontiguousarray(np.hstack(parts))
        months = x.index.strftime("%Y-%m").to_numpy()
        cut = np.flatnonzero(np.r_[True, months[1:] != months[:-1], True])
        header = ",".join(map(str, x.columns)).encode()
        return {str(months[s]): hashlib.blake2b(header + values[s:e].tobytes(), digest_size=12).hexdigest()
                for s, e in zip(cut[:-1], cut[1:])}


def _benchmark_prices(store, benchmark: str) -> pd.Series:
    px = store.prices([benchmark])[benchmark].dropna()
    if len(px) < 2:
        raise DataError(f"benchmark {benchmark} has {len(px)} price(s) in the store: need at least 2")
    return px


def benchmark_regressors(store, benchmark: str, freq: str | None = None) -> Regressors:
    """The benchmark's dates and daily returns (from the store); with ``freq`` its returns
    compounded to complete periods (``qf.compound``)."""
    from quantfit.data import compound, returns
    px = _benchmark_prices(store, benchmark)
    x = returns(px).to_frame(benchmark)
    if freq is not None:
        x = compound(x, freq)
        if len(x) == 0:
            raise DataError(f"benchmark {benchmark} ({px.index[0].date()} to {px.index[-1].date()}) "
                            f"covers no complete {freq} period")
    return Regressors(cal=px.index, x=x, freq=freq)


def factor_regressors(store, factors: str) -> Regressors:
    """A Ken French daily factors file, on its dates within the store's date range (the range
    of every ticker in the store, not only the universe's: the calendar then does not move
    when the universe changes)."""
    from quantfit.data import sources
    ff = sources.french(factors)
    if "RF" not in ff.columns:
        raise DataError(f"factors file {factors} has no RF column (columns: {', '.join(ff.columns)})")
    gaps = np.diff(ff.index.values).astype("timedelta64[D]").astype(int)
    if len(gaps) and np.median(gaps) > 4:
        raise DataError(f"factors file {factors} is not daily (median gap {np.median(gaps):.0f} days); "
                        f"use a *_daily file with daily prices")
    return _daily_factors(store, ff, f"factors file {factors}")


def _daily_factors(store, ff: pd.DataFrame, what: str) -> Regressors:
    lo, hi = store_range(store)
    cal = ff.index[(ff.index >= lo) & (ff.index <= hi)]
    if len(cal) < 2:
        raise DataError(f"{what} ({ff.index[0].date()} to {ff.index[-1].date()}) "
                        f"shares no dates with the prices ({lo.date()} to {hi.date()})")
    ff = ff.loc[cal]
    x = ff.drop(columns="RF").iloc[1:]
    return Regressors(cal=cal, x=x, rf=ff["RF"].iloc[1:])


def model_regressors(store, model: str, factors_dir: str, freq: str | None, benchmark: str,
                     fetch=None) -> Regressors:
    """A factor model by name (``qf.sources.factor_model``): its daily files on their dates
    within the store's range (as ``factor_regressors``); with ``freq="M"`` its monthly files on
    the months that the benchmark's trading days cover completely (the daily calendar the
    assets' returns are compounded on)."""
    from quantfit.data import compound, returns, sources
    ff = sources.factor_model(model, freq="M" if freq == "M" else "D", factors_dir=factors_dir,
                              fetch=fetch)
    factors = list(ff.attrs.get("factors", [c for c in ff.columns if c != "RF"]))
    what = f"factor model {model} ({', '.join(map(str, ff.attrs.get('sources', [])))})"
    if freq != "M":
        return _daily_factors(store, ff[factors + ["RF"]], what)
    px = _benchmark_prices(store, benchmark)
    months = compound(returns(px).to_frame(benchmark), "M").index  # complete months only
    rows = months.intersection(ff.index)
    if len(rows) == 0:
        raise DataError(f"{what} ({ff.index[0].date()} to {ff.index[-1].date()}) shares no "
                        f"complete month with the prices of {benchmark} ({px.index[0].date()} to "
                        f"{px.index[-1].date()})")
    return Regressors(cal=px.index, x=ff.loc[rows, factors], rf=ff.loc[rows, "RF"], freq="M")


def store_range(store) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last date with a price in the store."""
    info = store.ticker_info()
    return pd.Timestamp(info["first"].min()), pd.Timestamp(info["last"].max())
