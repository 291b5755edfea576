"""The nightly job's group tasks on Dask (``--dask local:2``) against one process, same machine.

    python benchmarks/bench_dask.py                      # Huber 2,000 x 2,520; OLS 10,000 x 7,560
    python benchmarks/bench_dask.py --huber-assets 200 --ols-assets 1000 --ols-days 2520   # quick

Each row is ``quantfit refresh`` in a fresh process (wall time including the interpreter and,
for Dask, starting the LocalCluster; peak RSS: the largest process of the tree, driver or
worker, as ``wait4`` reports it), a full rebuild into an
empty output folder, on the synthetic universe of ``nightly_data.py`` (ragged starts):

* Huber (``--loss huber``, window 252): one process with one group task at a time
  (``--jobs 1``, torch on both cores), then ``--dask local:2`` (two worker processes, one thread
  each);
* least squares (newton, window 252): ``--jobs 1``, ``--jobs 2`` (two group tasks on threads in
  one process) and ``--dask local:2``.

Prints a markdown table and, with ``--json PATH``, writes the figures. Not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from bench_nightly import QF_OK, build, quantfit, report, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--huber-assets", type=int, default=2000)
    ap.add_argument("--huber-days", type=int, default=2520)
    ap.add_argument("--ols-assets", type=int, default=10000)
    ap.add_argument("--ols-days", type=int, default=7560)
    ap.add_argument("--work", type=Path, default=Path("bench-out/nightly"))
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None
    rows = []
    cases = [("huber", a.huber_assets, a.huber_days, ["--loss", "huber"],
              [("one process, --jobs 1", ["--jobs", "1"]), ("--dask local:2", ["--dask", "local:2"])]),
             ("least squares", a.ols_assets, a.ols_days, [],
              [("one process, --jobs 1", ["--jobs", "1"]), ("one process, --jobs 2", ["--jobs", "2"]),
               ("--dask local:2", ["--dask", "local:2"])])]
    for name, n_assets, n_days, fit_args, variants in cases:
        print(f"{name}: {n_assets:,} assets x {n_days:,} days", flush=True)
        _, store = build(a.work, n_assets, n_days)
        for label, extra in variants:
            out = a.work / "dask-out"
            shutil.rmtree(out, ignore_errors=True)
            r = run(quantfit("refresh", "--store", str(store), "--out", str(out), "--window", "252",
                             "--no-report", "--quiet", *fit_args, *extra),
                    f"{name}, {n_assets:,} x {n_days:,}, {label}", ok=QF_OK)
            rows.append(r)
        shutil.rmtree(a.work / "dask-out", ignore_errors=True)
    report(rows, {"load_average_start": load, "note": "peak MiB: the largest process of the tree (driver or a local worker)"}, a.json)


if __name__ == "__main__":
    sys.exit(main())
