"""The regressors of a refresh and the calendar they define.

* default: ``x`` = the benchmark's simple daily return (one factor named by its ticker);
* ``factors=FILE`` (a Ken French *daily* file): ``x`` = every factor column but ``RF``, and
  each asset's return is taken in excess of ``RF``.

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
    """cal : price dates (DatetimeIndex); x : factor returns on ``cal[1:]`` (rows × factors);
    rf : the risk-free rate per row (factors mode) or None."""

    cal: pd.DatetimeIndex
    x: pd.DataFrame
    rf: pd.Series | None = None

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


def benchmark_regressors(store, benchmark: str) -> Regressors:
    """The benchmark's dates and daily returns (from the store)."""
    from quantfit.data import returns
    px = store.prices([benchmark])[benchmark].dropna()
    if len(px) < 2:
        raise DataError(f"benchmark {benchmark} has {len(px)} price(s) in the store: need at least 2")
    return Regressors(cal=px.index, x=returns(px).to_frame(benchmark))


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
    lo, hi = store_range(store)
    cal = ff.index[(ff.index >= lo) & (ff.index <= hi)]
    if len(cal) < 2:
        raise DataError(f"factors file {factors} ({ff.index[0].date()} to {ff.index[-1].date()}) "
                        f"shares no dates with the prices ({lo.date()} to {hi.date()})")
    ff = ff.loc[cal]
    x = ff.drop(columns="RF").iloc[1:]
    return Regressors(cal=cal, x=x, rf=ff["RF"].iloc[1:])


def store_range(store) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last date with a price in the store."""
    info = store.ticker_info()
    return pd.Timestamp(info["first"].min()), pd.Timestamp(info["last"].max())
