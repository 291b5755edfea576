"""Benchmark the price store: CSV -> PriceStore -> wide frame, at universe scale.

    python benchmarks/bench_store.py                      # 5,000 tickers x 2,520 days, long CSV
    python benchmarks/bench_store.py --format wide        # same data as a wide CSV
    python benchmarks/bench_store.py --tickers 500 --days 252   # quick run

Generates a synthetic CSV (random-walk prices, written with pyarrow), then times:
reading + validating it (``qf.sources.csv``), ingesting it into an empty store, reading it
back as a wide frame (``PriceStore.prices``), reading 50 tickers, re-ingesting the same
data (a no-op upsert), and upserting one new day for 100 tickers. Not a test: prints timings.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

import quantfit as qf


def make_csv(path: Path, n_tickers: int, n_days: int, fmt: str, seed: int = 0) -> None:
    """Write random-walk closes for ``n_tickers`` x ``n_days`` business days to ``path``."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2000-01-03", periods=n_days)
    rets = rng.normal(0.0003, 0.02, size=(n_days, n_tickers))
    prices = 50.0 * np.exp(np.cumsum(rets, axis=0))
    tickers = [f"T{i:05d}" for i in range(n_tickers)]
    date_txt = pa.array(dates.strftime("%Y-%m-%d"))
    if fmt == "wide":
        cols = {"date": date_txt} | {t: pa.array(prices[:, j]) for j, t in enumerate(tickers)}
        table = pa.table(cols)
    else:
        table = pa.table({
            "date": pa.DictionaryArray.from_arrays(
                pa.array(np.tile(np.arange(n_days, dtype=np.int32), n_tickers)), date_txt).cast(pa.string()),
            "ticker": pa.DictionaryArray.from_arrays(
                pa.array(np.repeat(np.arange(n_tickers, dtype=np.int32), n_days)), pa.array(tickers)).cast(pa.string()),
            "close": pa.array(prices.T.ravel()),
            "volume": pa.array(rng.integers(0, 10**7, n_days * n_tickers).astype(np.float64)),
        })
    pacsv.write_csv(table, path)


def timed(label: str, fn):
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    print(f"{label:<44s} {dt:8.2f} s")
    return out, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tickers", type=int, default=5000)
    ap.add_argument("--days", type=int, default=2520)
    ap.add_argument("--format", choices=("long", "wide"), default="long")
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir, removed after)")
    args = ap.parse_args()

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="qf-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    csv_path, store_dir = work / f"prices-{args.format}.csv", work / "store"
    shutil.rmtree(store_dir, ignore_errors=True)
    n_rows = args.tickers * args.days
    print(f"{args.tickers:,} tickers x {args.days:,} days = {n_rows:,} rows, {args.format} CSV, "
          f"{os.cpu_count()} cores")
    try:
        timed("generate CSV (not part of the store)", lambda: make_csv(csv_path, args.tickers, args.days, args.format))
        print(f"{'CSV size':<44s} {csv_path.stat().st_size / 2**20:8.0f} MiB")
        store = qf.PriceStore(store_dir)
        long, t_read = timed("read + validate CSV (qf.sources.csv)", lambda: qf.sources.csv(csv_path))
        summary, t_ingest = timed("ingest into empty store", lambda: store.ingest(long))
        print(f"  -> {summary}")
        print(f"{'CSV -> store total':<44s} {t_read + t_ingest:8.2f} s")
        size = sum(p.stat().st_size for p in (store_dir / "data").iterdir())
        print(f"{'store size on disk':<44s} {size / 2**20:8.0f} MiB")
        wide, _ = timed("read back all as wide frame (prices())", store.prices)
        assert wide.shape == (args.days, args.tickers), wide.shape
        some = [f"T{i:05d}" for i in range(0, args.tickers, max(1, args.tickers // 50))][:50]
        timed(f"read {len(some)} tickers", lambda: store.prices(some))
        s, _ = timed("re-ingest same data (no-op upsert)", lambda: store.ingest(long))
        assert not s.changed
        new_day = pd.DataFrame({"date": wide.index[-1] + pd.offsets.BDay(), "ticker": wide.columns[:100],
                                "close": wide.iloc[-1, :100].to_numpy() * 1.01})
        s, _ = timed("upsert one new day for 100 tickers", lambda: store.ingest(new_day))
        print(f"  -> {s}")
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
