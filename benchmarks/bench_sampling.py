"""Benchmark the time grid of a fit: period-end output, calendar windows, return frequency.

    python benchmarks/bench_sampling.py                    # W1: 500 assets x 2,520 days, one factor
    python benchmarks/bench_sampling.py --assets 5000 --days 5040

Times, best of ``--repeat`` in one process (after one warm-up call each), newton in float64:

* the daily fit (252-row windows) and the same with ``every="M"``: month-end windows only
  (the rows are still summed once; solves, statistics and results only at the 120 month ends),
  and the result's size;
* a calendar window ``"1Y"`` against the 252-row window (windows of varying length: two
  staggered blockings instead of one);
* ``freq="M"`` with a ``"36M"`` window (compounding y and x, then a small monthly fit) and the
  ``monthly60`` / ``bloomberg`` presets.

Not a test: figures go to the README's benchmark section with the load average.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from engine_workloads import make_w1

import quantfit as qf


def best_of(fn, repeat: int) -> tuple[float, object]:
    out = fn()  # warm-up (first call: imports, buffers)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def result_mib(fit) -> float:
    arrays = [fit._coef, fit._se_factor, *fit._stats.values()]
    return sum(np.asarray(a).nbytes for a in arrays if a.strides[0] != 0) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--assets", type=int, default=500)
    ap.add_argument("--days", type=int, default=2520)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    y, x, _ = make_w1(args.assets, args.days)
    print(f"{args.assets} assets x {args.days} days; load average {os.getloadavg()[0]:.1f}")
    rows = [
        ("daily, window 252", lambda: qf.fit_rolling(y, x, 252)),
        ('every="M", window 252', lambda: qf.fit_rolling(y, x, 252, every="M")),
        ('window "1Y", min_obs 250', lambda: qf.fit_rolling(y, x, "1Y", min_obs=250)),
        ('freq="M", window "36M"', lambda: qf.fit_rolling(y, x, "36M", freq="M")),
        ('preset="monthly60"', lambda: qf.fit_rolling(y, x, preset="monthly60")),
        ('preset="bloomberg"', lambda: qf.fit_rolling(y, x, preset="bloomberg")),
    ]
    base = None
    for name, fn in rows:
        t, fit = best_of(fn, args.repeat)
        base = base or t
        print(f"{name:28s} {t * 1e3:8.1f} ms  {t / base:5.2f}x daily  "
              f"{len(fit.index):5d} dates  results {result_mib(fit):7.1f} MiB")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
