"""Benchmark ``qf.compound`` at universe scale against pandas' own resampling.

    python benchmarks/bench_compound.py                          # 10,000 assets x 7,560 days (30 years)
    python benchmarks/bench_compound.py --assets 1000 --days 2520    # quick run

Random daily returns with 1 % NaN (gaps), one fresh frame in this process. For each of W, M, Q
it times ``qf.compound`` (the default strict missing-day rule) and the pandas peer
``(1 + r).resample(alias).prod(min_count=1) - 1`` (which skips NaN days instead, so it does
less work), best of ``--repeat``, and prints the peak RSS of the process. Not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import pandas as pd

import quantfit as qf

ALIASES = {"W": "W-FRI", "M": "ME", "Q": "QE"}


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--assets", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=7_560)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    values = rng.normal(0.0003, 0.02, size=(args.days, args.assets))
    values[rng.random(values.shape) < 0.01] = np.nan
    index = pd.DatetimeIndex(pd.bdate_range("1995-01-02", periods=args.days), name="date")
    r = pd.DataFrame(values, index=index, columns=[f"T{i:05d}" for i in range(args.assets)])
    del values
    print(f"{args.assets:,} assets x {args.days:,} days ({r.size / 1e6:.0f} M cells, "
          f"{r.memory_usage().sum() / 2**20:,.0f} MiB); load average {os.getloadavg()[0]:.2f}")
    for freq, alias in ALIASES.items():
        ours = best_of(lambda f=freq: qf.compound(r, f), args.repeat)
        peer = best_of(lambda a=alias: (1 + r).resample(a).prod(min_count=1) - 1, args.repeat)
        print(f"{freq}: qf.compound {ours:.2f} s, pandas resample().prod() {peer:.2f} s "
              f"(ratio {peer / ours:.2f}x)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
