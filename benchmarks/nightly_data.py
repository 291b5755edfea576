"""A synthetic universe at the nightly job's scale: long daily prices with ragged starts.

``write_universe(path, n_assets, n_days)`` writes one long parquet file ``date, ticker, close``
sorted by (ticker, date): the benchmark ``SPY`` over every day, and ``n_assets`` stocks
``T00000, T00001, ...`` that list on a random day in the first half of the sample (so about
75 % of the ``n_assets × n_days`` cells hold a price: 56.7 M rows at 10,000 × 7,560) and trade
every business day after that. Daily returns are ``r = α + β·m + ε`` (β ~ U(0.3, 1.8),
m ~ 1 % daily vol, ε ~ 2 % t(4), floored at −90 %), prices start at 50. The same arguments always give the same
file, generated a batch of tickers at a time (memory bounded by the batch, not the universe).

``next_day(path, n_assets, n_days)`` gives the long frame of the day after the sample for
every ticker: what a nightly update ingests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

BENCHMARK = "SPY"
FIRST_DAY = "1995-01-02"
BATCH = 1000


def tickers(n_assets: int) -> list[str]:
    return [f"T{i:05d}" for i in range(n_assets)]


def calendar(n_days: int) -> pd.DatetimeIndex:
    return pd.bdate_range(FIRST_DAY, periods=n_days, name="date")


def market_returns(n_days: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng([seed, 0])
    return 3e-4 + 0.01 * rng.standard_t(5, n_days) / np.sqrt(5 / 3)


def _batch_returns(b: int, n: int, n_days: int, m: np.ndarray, seed: int):
    """Returns (n_days, n) of batch b, their listing day per ticker."""
    rng = np.random.default_rng([seed, 1, b])
    beta = rng.uniform(0.3, 1.8, n)
    alpha = rng.normal(0.0, 2e-4, n)
    eps = rng.standard_t(4, (n_days, n)) * (0.02 / np.sqrt(2.0))
    start = rng.integers(0, n_days // 2, n)
    r = eps + alpha + np.multiply.outer(m, beta)
    np.maximum(r, -0.9, out=r)  # t(4) tails: never a loss of 100 % or more in a day
    return r, start


def _prices(r: np.ndarray) -> np.ndarray:
    return 50.0 * np.exp(np.cumsum(np.log1p(r), axis=0))


def _long(days: np.ndarray, names: list[str], prices: np.ndarray, start: np.ndarray) -> pa.Table:
    """Long table of the cells at or after each ticker's start, sorted by (ticker, date)."""
    n_days, n = prices.shape
    keep = np.arange(n_days)[:, None] >= start[None, :]
    ti, di = np.nonzero(keep.T)  # ticker-major
    return pa.table({
        "date": pa.array(days[di], pa.date32()),
        "ticker": pa.DictionaryArray.from_arrays(pa.array(ti.astype(np.int32)), pa.array(names)),
        "close": pa.array(prices.T[keep.T]),
    })


def batches(n_assets: int, n_days: int, seed: int = 0) -> Iterator[pa.Table]:
    """The universe as long tables, the benchmark first, then BATCH tickers at a time."""
    days = calendar(n_days).values.astype("datetime64[D]")
    m = market_returns(n_days, seed)
    yield _long(days, [BENCHMARK], _prices(m[:, None]), np.zeros(1, np.int64))
    names = tickers(n_assets)
    for b, a0 in enumerate(range(0, n_assets, BATCH)):
        n = min(BATCH, n_assets - a0)
        r, start = _batch_returns(b, n, n_days, m, seed)
        yield _long(days, names[a0:a0 + n], _prices(r), start)


def write_universe(path: str | Path, n_assets: int, n_days: int, seed: int = 0) -> int:
    """Write the long parquet file; returns its number of rows."""
    schema = pa.schema([("date", pa.date32()), ("ticker", pa.string()), ("close", pa.float64())])
    rows = 0
    with pq.ParquetWriter(str(path), schema, compression="zstd") as w:
        for t in batches(n_assets, n_days, seed):
            t = t.cast(schema)
            w.write_table(t, row_group_size=1 << 20)
            rows += t.num_rows
    return rows


def next_day(n_assets: int, n_days: int, seed: int = 0) -> pd.DataFrame:
    """Prices of the business day after the sample for the benchmark and every ticker."""
    days = calendar(n_days + 1)
    m = market_returns(n_days + 1, seed)
    out = {BENCHMARK: _prices(m[:, None])[-1, 0]}
    names = tickers(n_assets)
    for b, a0 in enumerate(range(0, n_assets, BATCH)):
        n = min(BATCH, n_assets - a0)
        r, _ = _batch_returns(b, n, n_days + 1, m, seed)
        out.update(zip(names[a0:a0 + n], _prices(r)[-1]))
    return pd.DataFrame({"date": days[-1], "ticker": list(out), "close": list(out.values())})
