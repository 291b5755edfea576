"""The nightly job at universe scale, as a user runs it, against the polars reference.

    python benchmarks/bench_nightly.py --assets 10000 --days 7560     # the issue's size
    python benchmarks/bench_nightly.py --assets 500 --days 1500       # a quick run

Builds (once, cached under ``--work``) a synthetic store: ``--assets`` tickers with ragged
starts plus the benchmark SPY over ``--days`` business days (``nightly_data.py``), ingested in
batches and compacted once, as the README recommends after a bulk load; then times,
each step in a **fresh process** (wall time including the interpreter's start-up, peak RSS of
that process from ``wait4``):

1. the polars reference pipeline (``polars_reference.py``) on the same prices;
2. ``quantfit refresh`` full rebuild of every asset but one, and of a 2,000-asset universe
   (peak memory must not grow with the universe);
3. one new day for every ticker: ``quantfit ingest csv`` of that day, then the incremental
   ``quantfit refresh``;
4. the left-out ticker added to the universe: ``quantfit refresh``;
5. ``qf.read_betas`` of the latest date (a fresh interpreter: import + read; the call's own
   time is printed by the child);
6. reads of the past (a date ten years back, a year of 100 assets) before and after:
7. a night with revisions: 100 tickers' whole histories re-adjusted (rescaled), then another
   day for everyone: the two ingests and the incremental ``quantfit refresh`` (which writes
   one overlay per group); ``--nights N`` repeats it with other tickers (groups fold their
   overlays from the fifth night on).

Prints a markdown table; ``--json PATH`` also writes the figures. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(cmd: list[str], label: str, env: dict | None = None, ok: tuple[int, ...] = (0,)) -> dict:
    """Run ``cmd`` in a fresh process; wall seconds and its peak RSS (MiB). An exit code not in
    ``ok`` stops the benchmark (quantfit commands pass ``QF_OK``: 1 is "done with warnings")."""
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out_f, stderr=err_f, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read()[-4000:], err_f.read()[-4000:]
    code = os.waitstatus_to_exitcode(status)
    if code not in ok:
        raise SystemExit(f"{label} failed ({code}):\n{out}\n{err}")
    row = {"step": label, "wall_s": round(wall, 2), "peak_mib": round(usage.ru_maxrss / 1024)}
    said = out.strip().splitlines()[-1][:160] if out.strip() else ""
    if said:
        row["output"] = said
    print(f"  {label}: {wall:.2f} s, {row['peak_mib']} MiB" + (f"  [{said}]" if said else ""), flush=True)
    return row


def quantfit(*args: str) -> list[str]:
    return [sys.executable, "-m", "quantfit.cli", *args]


QF_OK = (0, 1)  # quantfit's exit codes for "done" and "done with warnings"


def build(work: Path, n_assets: int, n_days: int) -> tuple[Path, Path]:
    """The long parquet file and the store built from it (cached by size)."""
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"prices-{n_assets}x{n_days}.parquet"
    store = work / f"store-{n_assets}x{n_days}"
    if not src.exists():  # in a child, so that this process stays small (its RSS at each fork
        # would count in the children's peak RSS)
        code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import nightly_data as nd; "
                f"print(nd.write_universe({str(src)!r}, {n_assets}, {n_days}))")
        run([sys.executable, "-c", code], "generate the prices")
    if not (store / "manifest.json").exists():
        shutil.rmtree(store, ignore_errors=True)
        code = ("import sys, pyarrow.parquet as pq, quantfit as qf\n"
                "f = pq.ParquetFile(sys.argv[1]); s = qf.PriceStore(sys.argv[2])\n"
                "for i in range(f.num_row_groups):\n"
                "    s.ingest(f.read_row_group(i).to_pandas())\n")
        run([sys.executable, "-c", code, str(src), str(store)], "build the store (ingest in batches)")
        # What the README recommends after a bulk load: fold the batches' deltas once, so the
        # nightly appends that follow do not pay for it.
        run(quantfit("store", "compact", "--store", str(store), "--quiet"), "quantfit store compact")
    return src, store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--assets", type=int, default=10000)
    ap.add_argument("--days", type=int, default=7560)
    ap.add_argument("--window", type=int, default=252)
    ap.add_argument("--work", type=Path, default=Path("bench-out/nightly"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--skip-polars", action="store_true")
    ap.add_argument("--nights", type=int, default=1,
                    help="revision nights in a row (groups fold their overlays from the 5th on)")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    print(f"nightly benchmark: {a.assets:,} assets x {a.days:,} days, window {a.window}", flush=True)
    src, store_src = build(a.work, a.assets, a.days)
    rows: list[dict] = []

    if not a.skip_polars:
        ref_out = a.work / "polars-out"
        shutil.rmtree(ref_out, ignore_errors=True)
        rows.append(run([sys.executable, str(HERE / "polars_reference.py"), str(src), str(ref_out),
                         "--window", str(a.window)], "polars reference, full rebuild"))

    # The store is modified below (a new day): work on a copy.
    store = a.work / "store-run"
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(store_src, store)
    names = [f"T{i:05d}" for i in range(a.assets)]  # nightly_data.tickers
    held_out = names[-1]
    universe = a.work / "universe.txt"
    universe.write_text("\n".join(names[:-1]) + "\n")
    common = ["--store", str(store), "--window", str(a.window), "--no-report", "--quiet"]
    out = a.work / "results"
    shutil.rmtree(out, ignore_errors=True)
    rows.append(run(quantfit("refresh", *common, "--out", str(out), "--universe", str(universe)),
                    f"quantfit refresh, full rebuild ({a.assets - 1:,} assets)", ok=QF_OK))
    if a.assets > 2000:
        small = a.work / "universe-2000.txt"
        small.write_text("\n".join(names[:2000]) + "\n")
        out2 = a.work / "results-2000"
        shutil.rmtree(out2, ignore_errors=True)
        rows.append(run(quantfit("refresh", *common, "--out", str(out2), "--universe", str(small)),
                        "quantfit refresh, full rebuild (2,000 assets)", ok=QF_OK))

    day = a.work / "next-day.csv"
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import nightly_data as nd; "
            f"nd.next_day({a.assets}, {a.days}).to_csv({str(day)!r}, index=False, date_format='%Y-%m-%d')")
    run([sys.executable, "-c", code], "generate the next day")
    rows.append(run(quantfit("ingest", "csv", str(day), "--store", str(store)),
                    f"one new day, {a.assets + 1:,} tickers: quantfit ingest csv", ok=QF_OK))
    rows.append(run(quantfit("refresh", *common, "--out", str(out), "--universe", str(universe)),
                    "one new day: incremental quantfit refresh", ok=QF_OK))
    universe.write_text("\n".join(names) + "\n")
    rows.append(run(quantfit("refresh", *common, "--out", str(out), "--universe", str(universe)),
                    f"one ticker added ({held_out}): quantfit refresh", ok=QF_OK))
    code = ("import sys, time, quantfit as qf; t = time.perf_counter(); b = qf.read_betas(sys.argv[1]);"
            " print(f'read_betas: {len(b)} assets in {time.perf_counter() - t:.3f} s')")
    rows.append(run([sys.executable, "-c", code, str(out)], "read_betas(out), latest date (fresh process)"))
    rows += history_reads(out, names, "")

    # Nights with revisions: 100 tickers' histories re-adjusted (a dividend: every earlier
    # close rescaled), then the next day for everyone. Later nights revise other tickers; from
    # the fifth on, groups fold their overlays (staggered).
    for night in range(a.nights):
        rows += revision_night(a, src, store, out, universe, common, night)
    rows += history_reads(out, names, ", with overlays")
    report(rows, {"assets": a.assets, "days": a.days, "window": a.window, "nights": a.nights}, a.json)


def revision_night(a, src: Path, store: Path, out: Path, universe: Path, common: list[str],
                   night: int) -> list[dict]:
    """One night with 100 re-adjusted histories and a new day: the two ingests and the refresh."""
    revised, day = a.work / "revised.csv", a.work / "next-day.csv"
    step = max(1, a.assets // 100)
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import nightly_data as nd, pandas as pd; "
            f"r = pd.read_parquet({str(src)!r}, filters=[('ticker', 'in', nd.tickers({a.assets})[{night % step}::{step}])]); "
            f"r['close'] *= 0.98 ** {night + 1}; r.to_csv({str(revised)!r}, index=False, date_format='%Y-%m-%d'); "
            f"nd.next_day({a.assets}, {a.days + 1 + night}).to_csv({str(day)!r}, index=False, date_format='%Y-%m-%d')")
    run([sys.executable, "-c", code], "generate 100 re-adjusted histories and the day after")
    tag = f" (night {night + 1})" if a.nights > 1 else ""
    return [run(quantfit("ingest", "csv", str(revised), "--store", str(store)),
                f"100 re-adjusted histories: quantfit ingest csv{tag}", ok=QF_OK),
            run(quantfit("ingest", "csv", str(day), "--store", str(store)),
                f"the next day: quantfit ingest csv{tag}", ok=QF_OK),
            run(quantfit("refresh", *common, "--out", str(out), "--universe", str(universe)),
                f"a new day + 100 revised histories: incremental quantfit refresh{tag}", ok=QF_OK)]


def history_reads(out: Path, names: list[str], note: str) -> list[dict]:
    """Reads of past results in fresh processes: ``read_betas`` of a date ten years back
    (every group's month) and ``read_results`` of one year of 100 assets spread over the groups."""
    code = ("import sys, time, quantfit as qf; t = time.perf_counter(); "
            "b = qf.read_betas(sys.argv[1], '2013-06-28'); t1 = time.perf_counter(); "
            "r = qf.read_results(sys.argv[1], start='2013-01-01', end='2013-12-31', assets=sys.argv[2].split(',')); "
            "print(f'read_betas: {len(b)} assets in {t1 - t:.3f} s; read_results: '"
            "f'{r.beta.shape} in {time.perf_counter() - t1:.3f} s')")
    picks = ",".join(names[:: max(1, len(names) // 100)][:100])
    return [run([sys.executable, "-c", code, str(out), picks],
                f"read_betas(out, 2013-06-28) + read_results(2013, 100 assets){note} (fresh process)")]


def report(rows: list[dict], meta: dict, json_path: Path | None) -> None:
    """Print the rows as a markdown table; with ``json_path``, write them and the machine too."""
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "load_average": open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None,
            **meta}
    print("\n| step | wall s | peak MiB |\n|---|---|---|")
    for r in rows:
        print(f"| {r['step']} | {r['wall_s']:.2f} | {r['peak_mib']:,} |")
    if json_path:
        json_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
