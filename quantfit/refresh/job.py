"""The job: ``refresh()`` plans the work (full, incremental, up to date), fits the assets in
chunks, writes and commits the result set, collects the warnings and writes the report.
"""

from __future__ import annotations

import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from quantfit.errors import DataError, QuantfitError
from quantfit.refresh.inputs import _ensure_store, fingerprint, load_inputs, update_yfinance
from quantfit.refresh.params import (RefreshParams, canonical_params, check_params, fit_spec,
                                     params_key, parse_universe)
from quantfit.results import RollingFit
from quantfit.results_store import (FORMAT, VERSION, ResultSet, split_by_month, tidy_table,
                                    write_latest)

log = logging.getLogger("quantfit.refresh")

#: Assets per ``fit_rolling`` call: the unit of the progress bar and of peak memory.
ASSET_CHUNK = 512


@dataclass
class RefreshOutcome:
    """What a refresh did. ``mode`` is "full", "incremental" or "up to date"."""

    mode: str
    reason: str
    result_dir: Path
    key: str
    dates_fitted: int = 0
    rows_written: int = 0
    files_written: int = 0
    rows_total: int = 0
    last_date: str | None = None
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    report: Path | None = None


def outcome_dict(o: RefreshOutcome) -> dict[str, Any]:
    """JSON-able view of an outcome (for ``--json`` style logging)."""
    d = asdict(o)
    d["result_dir"] = str(o.result_dir)
    d["report"] = None if o.report is None else str(o.report)
    return d


class Progress:
    """A one-line stderr progress bar (``\\r``-rewritten), shown only when ``enabled``."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.total, self.label, self.enabled, self.done = max(total, 1), label, enabled, 0
        self._t0 = time.perf_counter()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.enabled:
            frac = self.done / self.total
            bar = "#" * int(24 * frac)
            sys.stderr.write(f"\r{self.label} [{bar:<24}] {self.done}/{self.total} "
                             f"{time.perf_counter() - self._t0:5.1f}s")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


# ----------------------------------------------------------------------------- fitting
def fit_chunks(y: pd.DataFrame, x: pd.DataFrame, p: RefreshParams, progress: Progress) -> RollingFit:
    """``qf.fit_rolling`` over chunks of ``ASSET_CHUNK`` assets, joined into one RollingFit."""
    from quantfit.fit import fit_rolling
    spec = fit_spec(p)
    xs = x.iloc[:, 0] if x.shape[1] == 1 else x
    fits = []
    for a0 in range(0, y.shape[1], ASSET_CHUNK):
        fits.append(fit_rolling(y.iloc[:, a0:a0 + ASSET_CHUNK], xs, spec=spec))
        progress.advance()
    return fits[0] if len(fits) == 1 else RollingFit.concat(fits, axis="assets")


def plan(manifest: dict | None, y: pd.DataFrame, x: pd.DataFrame, universe: list[str],
         window: int | None) -> tuple[str, str, int]:
    """Decide what to compute: ``(mode, reason, first new row)``.

    mode is "full", "incremental" or "up to date"; rows ``first new row ..`` of y are new.
    """
    if manifest is None:
        return "full", "new result set", 0
    if manifest["universe"] != universe:
        added = sorted(set(universe) - set(manifest["universe"]))
        dropped = sorted(set(manifest["universe"]) - set(universe))
        return "full", (f"universe changed (+{len(added)} -{len(dropped)}: "
                        f"{', '.join(['+' + a for a in added][:5] + ['-' + d for d in dropped][:5])})"), 0
    last = pd.Timestamp(manifest["data"]["last"])
    if last not in y.index or fingerprint(y, x, last) != manifest["data"]["fingerprint"]:
        return "full", f"input data up to {last.date()} changed since the last run (revised history)", 0
    start = int(y.index.searchsorted(last, side="right"))
    if start == len(y.index):
        return "up to date", f"results already cover {last.date()}", start
    if window is None:
        return "full", "expanding windows are recomputed in full", 0
    return "incremental", f"{len(y.index) - start} new date(s) after {last.date()}", start


def _warnings(prices: pd.DataFrame, fit: RollingFit, universe: list[str], asset_rows: dict[str, int],
              min_obs: int, solver: str) -> list[str]:
    """Per-asset problems worth a human look (exit code 1), one line each."""
    out: list[str] = []
    last = prices.index[-1]
    at_last = prices.iloc[-1]
    for t in prices.columns:
        if np.isnan(at_last[t]):
            lv = prices[t].last_valid_index()
            out.append(f"{t}: stale price: none on {last.date()} (last {lv.date() if lv is not None else 'never'})")
    nobs = fit.nobs
    for a in universe:
        if asset_rows.get(a, 0) == 0:
            most = int(nobs[a].max()) if len(nobs) else 0
            out.append(f"{a}: too few observations for any estimate (at most {most} valid rows "
                       f"in a window, need {min_obs})")
    est = fit.coef(fit.terms[0])
    if len(est):
        last_fit = fit.index[-1]
        stale = {t for t in prices.columns if np.isnan(at_last[t])}
        for a in universe:
            if asset_rows.get(a, 0) and a not in stale and np.isnan(est[a].iloc[-1]):
                out.append(f"{a}: no estimate on {last_fit.date()} ({int(nobs[a].iloc[-1])} valid rows "
                           f"in the window, need {min_obs})")
    if solver != "newton":
        bad = ((fit.nobs >= min_obs) & ~fit.converged).sum()
        for a, n in bad[bad > 0].items():
            out.append(f"{a}: {int(n)} window{'s' if n > 1 else ''} did not converge (solver {solver})")
    return out


# ----------------------------------------------------------------------------- the job
def refresh(p: RefreshParams, *, downloader: Callable | None = None,
            progress: bool = False) -> RefreshOutcome:
    """Run the nightly job once (see ``quantfit.refresh``). Raises ``QuantfitError`` on user errors.

    ``downloader`` replaces ``yfinance.download`` for ``update="yfinance"`` (tests);
    ``progress`` shows a progress bar on stderr.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    check_params(p)
    base_universe = parse_universe(p.universe) if p.universe is not None else None
    notes: list[str] = []

    store = _ensure_store(p)
    if p.update == "yfinance":
        targets = list(dict.fromkeys((base_universe or [t for t in store.tickers() if t != p.benchmark])
                                     + ([p.benchmark] if p.factors is None else [])))
        if not targets:
            raise DataError("--update yfinance on an empty store needs --universe")
        notes += update_yfinance(store, targets, downloader)
    timings["ingest"] = time.perf_counter() - t0

    known = store.tickers()
    if not known:
        raise DataError(f"store {p.store} is empty: ingest prices first")
    universe = base_universe or [t for t in known if t != p.benchmark]
    unknown = [t for t in universe if t not in set(known)]
    if unknown:
        raise DataError(f"unknown ticker{'s' if len(unknown) > 1 else ''} in the universe "
                        f"(not in store {p.store}): {', '.join(unknown)}")
    if p.factors is None and p.benchmark not in known:
        raise DataError(f"benchmark {p.benchmark} is not in store {p.store}")
    if not universe:
        raise DataError(f"the universe is empty (store {p.store} holds only {p.benchmark})")
    universe = sorted(universe)

    t1 = time.perf_counter()
    prices, y, x = load_inputs(p, store, universe)
    timings["load"] = time.perf_counter() - t1
    params = canonical_params(p, x.shape[1])
    key = params_key(params)
    out = Path(p.out)
    rs = ResultSet(out / key)
    log.debug("result set %s: %s", rs.path, params)

    with rs.lock(on_wait=lambda: log.info("waiting for another refresh of %s", rs.path)):
        manifest = rs.read_manifest()
        removed = rs.remove_orphans(manifest)
        if removed:
            log.info("removed %d file(s) left by an interrupted run", removed)
        mode, reason, start = plan(manifest, y, x, universe, p.window)
        log.info("%s: %s (%s)", rs.path, mode, reason)
        outcome = RefreshOutcome(mode=mode, reason=reason, result_dir=rs.path, key=key,
                                 warnings=list(notes))
        if mode == "up to date":
            outcome.rows_total = manifest["results"]["rows"]
            outcome.last_date = manifest["data"]["last"]
        else:
            _compute_and_commit(p, rs, manifest, mode, reason, start, prices, y, x, universe,
                                params, key, outcome, timings, progress)
    latest_moved = write_latest(out, key)
    report_dir = out / "report"
    if p.report and (mode != "up to date" or latest_moved or not (report_dir / "index.html").exists()):
        t4 = time.perf_counter()
        outcome.report = _write_report(out, y, x, outcome)
        timings["report"] = time.perf_counter() - t4
    timings["total"] = time.perf_counter() - t0
    outcome.timings = {k: round(v, 3) for k, v in timings.items()}
    return outcome


def _compute_and_commit(p, rs: ResultSet, manifest, mode, reason, start, prices, y, x, universe,
                        params, key, outcome: RefreshOutcome, timings, progress) -> None:
    """Fit the planned rows, write their months, commit the manifest. Lock held."""
    window = p.window
    # Rows the new windows need: the window ending at row `start` begins at start - W + 1.
    lo = 0 if mode == "full" else max(0, start - window + 1)
    t2 = time.perf_counter()
    bar = Progress(-(-len(universe) // ASSET_CHUNK), "fitting", progress)
    fit = fit_chunks(y.iloc[lo:], x.iloc[lo:], p, bar)
    timings["fit"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    new = fit.index[start - lo:]
    table = tidy_table(_tail(fit, start - lo))
    months = split_by_month(table)
    old_files = {} if (manifest is None or mode == "full") else dict(manifest["files"])
    generation = (manifest or {}).get("generation", 0) + 1
    files = dict(old_files)

    def write(item):
        month, part = item
        if month in old_files:  # the month already has rows: rewrite it whole, appended
            part = pa.concat_tables([rs.read_month(old_files[month]), part])
        return month, rs.write_month(month, part, generation)

    # Parquet encoding and fsync release the GIL: a few threads overlap the many small files.
    with ThreadPoolExecutor(max_workers=min(4, max(1, len(months)))) as pool:
        files.update(dict(pool.map(write, months.items())))
    superseded = sorted({e["file"] for e in (manifest or {}).get("files", {}).values()}
                        - {e["file"] for e in files.values()})

    # Per-asset estimate counts, for "too few observations" across runs.
    asset_rows = {} if mode == "full" else dict(manifest.get("asset_rows", {}))
    has = np.isfinite(fit.coef(fit.terms[0]).to_numpy()[start - lo:]).sum(axis=0)
    for a, n in zip(universe, has):
        asset_rows[a] = asset_rows.get(a, 0) + int(n)
    min_obs = params["min_obs"]
    outcome.warnings += _warnings(prices, _tail(fit, start - lo), universe, asset_rows, min_obs, p.solver)
    total = sum(e["rows"] for e in files.values())
    firsts = [e["first"] for e in files.values()]
    lasts = [e["last"] for e in files.values()]
    timings["write"] = time.perf_counter() - t3
    from quantfit import __version__
    now = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    new_manifest = {
        "format": FORMAT, "version": VERSION, "key": key, "generation": generation,
        "params": params, "created": (manifest or {}).get("created", now), "updated": now,
        "package_version": __version__,
        "settings": fit.settings,
        "meta": fit.meta.to_dict(),
        "inputs": {"store": str(Path(p.store).resolve()), "benchmark": p.benchmark if p.factors is None else None,
                   "factors": p.factors, "store_last": str(prices.index[-1].date())},
        "universe": universe, "terms": fit.terms,
        "data": {"first": str(y.index[0].date()), "last": str(y.index[-1].date()), "dates": len(y.index),
                 "fingerprint": fingerprint(y, x, y.index[-1])},
        "results": {"first": min(firsts) if firsts else None, "last": max(lasts) if lasts else None,
                    "rows": total, "months": len(files)},
        "files": dict(sorted(files.items())),
        "asset_rows": asset_rows,
        "last_run": {"mode": mode, "reason": reason, "dates_fitted": len(new),
                     "first_fitted": str(new[0].date()) if len(new) else None,
                     "rows_fitted_on": len(fit.index), "rows_written": table.num_rows,
                     "files_written": len(months), "timings": {k: round(v, 3) for k, v in timings.items()},
                     "warnings": outcome.warnings},
    }
    rs.commit(new_manifest, superseded)
    outcome.dates_fitted, outcome.rows_written = len(new), table.num_rows
    outcome.files_written, outcome.rows_total = len(months), total
    outcome.last_date = new_manifest["data"]["last"]
    log.info("%s: fitted %d date(s) x %d asset(s) (%s to %s); wrote %s rows in %d file(s); %s rows in all",
             rs.path, len(new), len(universe), new[0].date() if len(new) else "-",
             new[-1].date() if len(new) else "-", f"{table.num_rows:,}", len(months), f"{total:,}")


def _tail(fit: RollingFit, i: int) -> RollingFit:
    """The fit restricted to its dates ``i:``."""
    return fit if i == 0 else fit.isel(dates=slice(i, None))


#: The nightly report shows this many years up to the latest date (all of it is on disk).
REPORT_YEARS = 10


def _write_report(out: Path, y: pd.DataFrame, x: pd.DataFrame, outcome: RefreshOutcome) -> Path | None:
    """The HTML report of the latest result set, in ``out/report``; a failure is a warning."""
    try:
        from quantfit.report import write_html  # imported here: the report is optional to the job
        from quantfit.results_store import read_results
        fit = read_results(outcome.result_dir, last_years=REPORT_YEARS)
        xs = x.iloc[:, 0] if x.shape[1] == 1 else x
        path = write_html(fit, out / "report", y=y, x=xs,
                          title=f"quantfit betas ({outcome.key})")
        log.info("report: %s", path)
        return Path(path)
    except (ImportError, QuantfitError, OSError, ValueError) as exc:
        outcome.warnings.append(f"report not written: {type(exc).__name__}: {exc}")
        return None
