"""Benchmark the price store at universe scale. Not a test: prints a table.

Two scenarios:

    python benchmarks/bench_store.py nightly                     # 10,000 tickers x 7,560 days, ragged starts
    python benchmarks/bench_store.py nightly --tickers 500 --days 1000      # quick run
    python benchmarks/bench_store.py csv                         # 5,000 x 2,520 long CSV -> store -> wide
    python benchmarks/bench_store.py csv --format wide

**nightly** (issue 12) builds a synthetic store: random-walk closes, each ticker starting on a
random day in the first half of the history (10,000 x 7,560 -> ~56.7 M rows), ingested in
blocks of years (peak memory stays at one block). Then, **each step in a fresh process**
(cold: what a cron job sees), with the time of the store call itself and the process's peak
RSS: one new day for every ticker (target: ingest <= 2 s), the same day sent again with the
previous day (what a Yahoo update sends: the overlap is compared, not appended), 100 tickers
re-adjusted (whole history rescaled), 20 more daily appends in one process (steady state,
automatic folding included), the tails an incremental night reads
(``prices(all, start=new day, lookback=252)``), one ~1,000-ticker chunk's full history
(``ticker_groups``), ``changes_since``, ``compact`` and ``verify``. Files read are counted.

**csv** (issue 2): generates a CSV, then times reading + validating it (``qf.sources.csv``),
ingesting it into an empty store, reading it back as a wide frame, reading 50 tickers,
re-ingesting the same data (a no-op upsert) and upserting one new day for 100 tickers.

Run it with ``nice -n 10`` on a shared machine, and note ``/proc/loadavg``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

import quantfit as qf

START = "1995-01-02"


# ----------------------------------------------------------------------------- synthetic data
def universe(n_tickers: int, n_days: int, seed: int = 0):
    """Business days, tickers, and each ticker's first day (ragged: first half of the history)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(START, periods=n_days)
    tickers = np.array([f"T{i:05d}" for i in range(n_tickers)], dtype=object)
    first = rng.integers(0, n_days // 2, n_tickers)
    first[: max(1, n_tickers // 20)] = 0  # some names cover the whole history
    return dates, tickers, first


def block_frame(dates, tickers, first, lo: int, hi: int, level: np.ndarray, rng) -> pd.DataFrame:
    """Long rows of days [lo, hi) for the tickers alive then; ``level`` carries each walk on."""
    n = hi - lo
    rets = rng.normal(0.0003, 0.02, size=(n, len(tickers)))
    walk = level[None, :] * np.exp(np.cumsum(rets, axis=0))
    level[:] = walk[-1]
    alive = (np.arange(lo, hi)[:, None] >= first[None, :])
    ti, di = np.nonzero(alive.T)  # grouped by ticker
    return pd.DataFrame({
        "date": dates[lo + di],
        "ticker": pd.Categorical.from_codes(ti, categories=pd.Index(tickers)),
        "close": walk[di, ti],
        "volume": rng.integers(0, 10**7, len(di)).astype(np.float64),
    })


def build(store_dir: Path, n_tickers: int, n_days: int, block_days: int = 504) -> dict:
    dates, tickers, first = universe(n_tickers, n_days)
    rng = np.random.default_rng(1)
    level = np.full(n_tickers, 50.0)
    store = qf.PriceStore(store_dir)
    rows = 0
    t0 = time.perf_counter()
    for lo in range(0, n_days, block_days):
        frame = block_frame(dates, tickers, first, lo, min(n_days, lo + block_days), level, rng)
        rows += len(frame)
        store.ingest(frame)
        print(f"  built {dates[min(n_days, lo + block_days) - 1].date()}: {rows:,} rows, "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    np.save(store_dir.parent / "level.npy", level)
    return {"seconds": time.perf_counter() - t0, "rows": rows}


# ----------------------------------------------------------------------------- steps (child processes)
def _count_reads():
    import pyarrow.parquet as pq
    seen: list[str] = []
    real = pq.ParquetFile

    def spy(source, *a, **kw):
        seen.append(str(source))
        return real(source, *a, **kw)

    pq.ParquetFile = spy
    return seen


def step(name: str, store_dir: Path, n_tickers: int, n_days: int) -> dict:
    store = qf.PriceStore(store_dir)
    reads = _count_reads()
    dates, tickers, _ = universe(n_tickers, n_days)
    level = np.load(store_dir.parent / "level.npy")
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    new_day = dates[-1] + pd.offsets.BDay()
    out: dict = {}

    def day_frame(day, scale=1.0):
        return pd.DataFrame({"date": day, "ticker": tickers, "close": level * scale,
                             "volume": rng.integers(0, 10**7, len(tickers)).astype(float)})

    t0 = time.perf_counter()
    if name == "append":
        s = store.ingest(day_frame(new_day))
        out["note"] = f"{s.rows_added:,} added, {s.files_written} files written, {s.rows_rewritten:,} rows rewritten"
    elif name == "overlap":  # the last stored day again (unchanged) + the next one
        last = store.ticker_info()["last"].max()
        stored = {f: store.prices(start=last, end=last, field=f).iloc[0].reindex(tickers).to_numpy()
                  for f in ("close", "volume")}
        frame = pd.concat([day_frame(last).assign(**stored), day_frame(last + pd.offsets.BDay(), 1.001)])
        t0 = time.perf_counter()
        s = store.ingest(frame)
        out["note"] = f"{s.rows_added:,} added, {s.rows_unchanged:,} unchanged, {s.rows_rewritten:,} rows rewritten"
    elif name == "revise":  # Yahoo re-adjusts 100 tickers: their whole history rescaled
        names = list(tickers[:: max(1, n_tickers // 100)][:100])
        hist = store.prices(names)
        frame = hist.stack().dropna().rename("close").rename_axis(["date", "ticker"]).reset_index()
        frame["close"] *= 0.99
        t0 = time.perf_counter()
        s = store.ingest(frame)
        out["note"] = f"{s.rows_replaced:,} replaced, {s.files_written} files, {s.rows_rewritten:,} rows rewritten"
    elif name == "days20":  # 20 more daily appends in one process: steady state incl. folds
        times = []
        day = store.ticker_info()["last"].max() + pd.offsets.BDay()
        for _ in range(20):
            frame = day_frame(day)
            t1 = time.perf_counter()
            store.ingest(frame)
            times.append(time.perf_counter() - t1)
            day += pd.offsets.BDay()
        out["note"] = f"per day: median {np.median(times):.2f} s, max {max(times):.2f} s"
    elif name == "tails":
        last = store.ticker_info()["last"].max()
        w = store.prices(start=last, lookback=252)
        out["note"] = f"{w.shape[0]} dates x {w.shape[1]:,} tickers"
    elif name == "chunk":
        group = store.ticker_groups(size=1000)[0]
        t0 = time.perf_counter()
        w = store.prices(group)
        out["note"] = f"{w.shape[0]:,} dates x {w.shape[1]:,} tickers, {int(w.notna().sum().sum()):,} prices"
    elif name == "changes":
        c = store.changes_since(store.generation - 22)
        out["note"] = f"{len(c):,} tickers changed over the last 22 generations"
    elif name == "compact":
        s = store.compact()
        out["note"] = str(s)
    elif name == "verify":
        r = store.verify()
        out["note"] = f"{r.files:,} files, {r.bytes / 2**20:,.0f} MiB, ok={r.ok}"
    else:
        raise SystemExit(f"unknown step {name}")
    out["seconds"] = time.perf_counter() - t0
    out["files_read"] = len(reads)
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_child(args: list[str]) -> dict:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if p.returncode:
        raise SystemExit(f"step {args} failed:\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["wall"] = time.perf_counter() - t0
    return out


def store_size(store_dir: Path) -> tuple[int, int]:
    files = list((store_dir / "data").iterdir())
    return len(files), sum(f.stat().st_size for f in files)


def nightly(args) -> None:
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="qf-bench-store-"))
    store_dir = work / "store"
    n, d = args.tickers, args.days
    print(f"nightly: {n:,} tickers x {d:,} business days, ragged starts; {os.cpu_count()} cores; "
          f"load average at start {os.getloadavg()[0]:.2f}")
    rows = []
    try:
        if not (store_dir / "manifest.json").exists() or not args.keep:
            shutil.rmtree(work / "store", ignore_errors=True)
            b = run_child(["_step", "build", str(store_dir), str(n), str(d)])
            files, size = store_size(store_dir)
            rows.append(("build (blocks of 2 years)", b["seconds"], b["wall"], b["peak_mib"], "-",
                         f"{b['rows']:,} rows, {files:,} files, {size / 2**20:,.0f} MiB"))
        keep = work / "built"
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(store_dir, keep)  # every step starts from the built store
        for name, label in [("append", "one new day, all tickers: ingest"),
                            ("overlap", "last day again + a new day (Yahoo update)"),
                            ("revise", "100 tickers re-adjusted (full history)"),
                            ("days20", "20 more daily appends (steady state)"),
                            ("tails", "tails: prices(all, start, lookback=252)"),
                            ("chunk", "one chunk (ticker_groups, ~1,000): full history"),
                            ("changes", "changes_since (22 generations back)"),
                            ("compact", "compact (fold all deltas)"),
                            ("verify", "verify (SHA-256 of every file)")]:
            if name == "append":
                shutil.rmtree(store_dir)
                shutil.copytree(keep, store_dir)
            r = run_child(["_step", name, str(store_dir), str(n), str(d)])
            rows.append((label, r["seconds"], r["wall"], r["peak_mib"], r["files_read"], r["note"]))
            print(f"  {label}: {r['seconds']:.2f} s", file=sys.stderr, flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}\n")
    print("| step | seconds | process wall s | peak RSS MiB | files read | note |")
    print("|---|---|---|---|---|---|")
    for label, sec, wall, mib, nread, note in rows:
        print(f"| {label} | {sec:.2f} | {wall:.1f} | {mib:,.0f} | {nread} | {note} |")
    print("\nseconds: the store call(s) alone; process wall: the whole fresh process (interpreter "
          "start-up, imports, preparing the input, the call)")


# ----------------------------------------------------------------------------- csv scenario (issue 2)
def make_csv(path: Path, n_tickers: int, n_days: int, fmt: str, seed: int = 0) -> None:
    """Write random-walk closes for ``n_tickers`` x ``n_days`` business days to ``path``."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2000-01-03", periods=n_days)
    rets = rng.normal(0.0003, 0.02, size=(n_days, n_tickers))
    prices = 50.0 * np.exp(np.cumsum(rets, axis=0))
    tickers = [f"T{i:05d}" for i in range(n_tickers)]
    date_txt = pa.array(dates.strftime("%Y-%m-%d"))
    if fmt == "wide":
        table = pa.table({"date": date_txt} | {t: pa.array(prices[:, j]) for j, t in enumerate(tickers)})
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


def csv_scenario(args) -> None:
    n_t, n_d = args.tickers or 5000, args.days or 2520
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="qf-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    csv_path, store_dir = work / f"prices-{args.format}.csv", work / "store"
    shutil.rmtree(store_dir, ignore_errors=True)
    print(f"{n_t:,} tickers x {n_d:,} days = {n_t * n_d:,} rows, {args.format} CSV, {os.cpu_count()} cores")
    try:
        timed("generate CSV (not part of the store)", lambda: make_csv(csv_path, n_t, n_d, args.format))
        store = qf.PriceStore(store_dir)
        long, t_read = timed("read + validate CSV (qf.sources.csv)", lambda: qf.sources.csv(csv_path))
        summary, t_ingest = timed("ingest into empty store", lambda: store.ingest(long))
        print(f"  -> {summary}")
        print(f"{'CSV -> store total':<44s} {t_read + t_ingest:8.2f} s")
        wide, _ = timed("read back all as wide frame (prices())", store.prices)
        assert wide.shape == (n_d, n_t), wide.shape
        some = [f"T{i:05d}" for i in range(0, n_t, max(1, n_t // 50))][:50]
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


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_step":  # a child process: one step, JSON out
        name, store_dir, n, d = sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        if name == "build":
            out = build(store_dir, n, d)
            out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        else:
            out = step(name, store_dir, n, d)
        print(json.dumps(out))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", nargs="?", choices=("nightly", "csv"), default="nightly")
    ap.add_argument("--tickers", type=int, default=None, help="nightly: 10,000; csv: 5,000")
    ap.add_argument("--days", type=int, default=None, help="nightly: 7,560; csv: 2,520")
    ap.add_argument("--format", choices=("long", "wide"), default="long", help="csv scenario only")
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir, removed after)")
    ap.add_argument("--keep", action="store_true", help="nightly: reuse the store built in --dir")
    args = ap.parse_args()
    if args.scenario == "csv":
        csv_scenario(args)
    else:
        args.tickers, args.days = args.tickers or 10_000, args.days or 7_560
        nightly(args)


if __name__ == "__main__":
    main()
