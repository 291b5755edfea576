"""The driver of ``quantfit refresh``: plan, run the group tasks, commit once, report.

``refresh(params)`` (1) optionally ingests new prices; (2) resolves the universe and the
regressors (their dates are the calendar); (3) under the result set's lock, plans the work
against the committed manifest (``plan``); (4) runs one task per asset group (``task``), each
reading its own prices, fitting and writing its part files; (5) validates and commits the new
manifest in one atomic step; (6) writes the report. Killed at any moment, the previous results
stay intact and readable; the next run removes what the killed one left.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from quantfit.data.store import ChangesUnavailable
from quantfit.errors import DataError, QuantfitError
from quantfit.progress import Progress
from quantfit.refresh.inputs import _ensure_store, update_yfinance
from quantfit.refresh.params import (RefreshParams, canonical_params, check_params, fit_spec,
                                     model_name, params_key, parse_universe)
from quantfit.refresh.plan import GROUP_SIZE, GroupWork, Plan, make_plan
from quantfit.refresh.regressors import (Regressors, benchmark_regressors, factor_regressors,
                                         model_regressors)
from quantfit.refresh.task import GroupResult, JobContext, read_returns, run_group
from quantfit.results_store import FORMAT, VERSION, ResultSet, write_latest
from quantfit.results_store.overlays import GroupFiles, group_files
from quantfit.results_store.resultset import live_files

log = logging.getLogger("quantfit.refresh")


@dataclass
class RefreshOutcome:
    """What a refresh did. ``mode`` is "full", "incremental" or "up to date"."""

    mode: str
    reason: str
    result_dir: Path
    key: str
    dates_fitted: int = 0
    assets_fitted: int = 0
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


# ----------------------------------------------------------------------------- inputs
def resolve_universe(p: RefreshParams, store, base: list[str] | None) -> list[str]:
    """The sorted universe: the given tickers, or every stored ticker but the benchmark."""
    known = store.tickers()
    if not known:
        raise DataError(f"store {p.store} is empty: ingest prices first")
    known_set = set(known)
    universe = base or [t for t in known if t != p.benchmark]
    unknown = [t for t in universe if t not in known_set]
    if unknown:
        raise DataError(f"unknown ticker{'s' if len(unknown) > 1 else ''} in the universe "
                        f"(not in store {p.store}): {', '.join(unknown[:20])}"
                        + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""))
    if needs_benchmark(p) and p.benchmark not in known_set:
        raise DataError(f"benchmark {p.benchmark} is not in store {p.store}"
                        + (" (its trading days are the calendar monthly returns are compounded on)"
                           if p.model is not None else ""))
    if not universe:
        raise DataError(f"the universe is empty (store {p.store} holds only {p.benchmark})")
    return sorted(universe)


def needs_benchmark(p: RefreshParams) -> bool:
    """The benchmark's prices are the regressor (default mode) or the daily calendar monthly
    returns are compounded on (a model with ``freq="M"``)."""
    return p.factors is None and (p.model is None or fit_spec(p).sampling.freq == "M")


def regressors(p: RefreshParams, store) -> Regressors:
    """The regressors of the run: a factor model, a factor file, or the benchmark (compounded
    to ``freq`` when set)."""
    freq = fit_spec(p).sampling.freq
    model = model_name(p)
    if model is not None:
        return model_regressors(store, model, p.factors_dir, freq, p.benchmark)
    if p.factors:
        return factor_regressors(store, p.factors)
    return benchmark_regressors(store, p.benchmark, freq)


# ----------------------------------------------------------------------------- running tasks
def default_jobs() -> int:
    """Group tasks run at once in one process: one per core, at most ``MAX_JOBS``."""
    return max(1, min(os.cpu_count() or 1, MAX_JOBS))


#: Upper bound of the default number of concurrent group tasks (memory grows with it).
MAX_JOBS = 8


def run_local(ctx: JobContext, work: list[GroupWork], old: dict[int, GroupFiles], bar: Progress,
              jobs: int = 1) -> Iterator[GroupResult]:
    """The tasks in this process, ``jobs`` at a time on threads, yielded as they complete.

    With several jobs torch runs one thread per task (set for the run, restored after):
    whole tasks in parallel keep both cores busy through the reading, conversion and writing
    too, and a machine whose cores are shared stalls one task, not every operation of all.
    """
    if jobs <= 1 or len(work) <= 1:
        for w in work:
            res = run_group(ctx, w, old.get(w.group, GroupFiles()))
            bar.update(len(w.fit_from))
            yield res
        return
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            pending = {}
            queue = iter(work)
            for w in itertools.islice(queue, jobs):
                pending[pool.submit(run_group, ctx, w, old.get(w.group, GroupFiles()))] = w
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    w = pending.pop(fut)
                    res = fut.result()
                    bar.update(len(w.fit_from))
                    yield res
                    for nxt in itertools.islice(queue, 1):
                        pending[pool.submit(run_group, ctx, nxt, old.get(nxt.group, GroupFiles()))] = nxt
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- the job
def refresh(p: RefreshParams, *, downloader: Callable | None = None, progress: bool = False,
            client=None) -> RefreshOutcome:
    """Run the nightly job once (see ``quantfit.refresh``). Raises ``QuantfitError`` on user errors.

    ``downloader`` replaces ``yfinance.download`` for ``update="yfinance"`` (tests);
    ``progress`` shows a progress bar on stderr. ``client``: a ``distributed.Client`` whose
    cluster runs the group tasks (see ``quantfit.refresh.distributed``); without one,
    ``p.dask`` (an address, or ``"local:N"``) connects to or starts a cluster for this run, and
    without either the tasks run in this process (``p.jobs`` at a time).
    """
    if client is None and p.dask is not None:
        from quantfit.refresh.distributed import connect
        check_params(p)
        with connect(p.dask) as client:
            return refresh(p, downloader=downloader, progress=progress, client=client)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    check_params(p)
    base_universe = parse_universe(p.universe) if p.universe is not None else None
    notes: list[str] = []
    store = _ensure_store(p)
    if p.update == "yfinance":
        targets = list(dict.fromkeys((base_universe or [t for t in store.tickers() if t != p.benchmark])
                                     + ([p.benchmark] if needs_benchmark(p) else [])))
        if not targets:
            raise DataError("--update yfinance on an empty store needs --universe")
        notes += update_yfinance(store, targets, downloader)
    timings["ingest"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    store_id = store.store_id
    store_generation = store.generation  # read before any price: later commits are seen again
    universe = resolve_universe(p, store, base_universe)
    reg = regressors(p, store)
    params = canonical_params(p, reg.x.shape[1])
    key = params_key(params)
    out = Path(p.out)
    rs = ResultSet(out / key)
    log.debug("result set %s: %s", rs.path, params)
    timings["inputs"] = time.perf_counter() - t1

    with rs.lock(on_wait=lambda: log.info("waiting for another refresh of %s", rs.path)):
        manifest = rs.read_manifest()
        removed = rs.remove_orphans(manifest)
        if removed:
            log.info("removed %d file(s) left by an interrupted run", removed)
        changes = None
        if manifest is not None and manifest["inputs"].get("store_id") == store_id:
            try:
                changes = store.changes_since(manifest["inputs"]["store_generation"])
                store_generation = changes.generation
            except ChangesUnavailable as exc:
                log.info("%s", exc)
        group_size = p.group_size or GROUP_SIZE
        if client is not None and p.group_size is None:
            from quantfit.refresh.distributed import worker_group_size
            group_size = worker_group_size(client, len(reg.rows), GROUP_SIZE)
        plan = make_plan(manifest, reg.rows, reg.month_hashes, universe, store_id, changes,
                         p.window is None, lambda a: store.ticker_groups(a, group_size),
                         max(1, group_size // 10))
        log.info("%s: %s (%s)", rs.path, plan.mode, plan.reason)
        outcome = RefreshOutcome(mode=plan.mode, reason=plan.reason, result_dir=rs.path, key=key,
                                 warnings=list(notes))
        generation = (manifest or {}).get("generation", 0) + 1
        ctx = JobContext(store=str(Path(p.store).resolve()), store_id=store_id,
                         result_dir=str(rs.path.resolve()), generation=generation,
                         cal=reg.cal.values.astype("datetime64[D]"), x=reg.x.to_numpy(float),
                         factors=tuple(map(str, reg.x.columns)),
                         rf=None if reg.rf is None else reg.rf.to_numpy(float),
                         spec=fit_spec(p), min_obs=int(params["min_obs"]),
                         row_dates=None if reg.freq is None else
                         reg.rows.values.astype("datetime64[D]"), freq=reg.freq,
                         new_from=None if manifest is None or manifest["data"]["last"] is None else
                         int(reg.rows.searchsorted(pd.Timestamp(manifest["data"]["last"]), side="right")))
        results: list[GroupResult] = []
        if plan.work:
            t2 = time.perf_counter()
            old = {} if plan.mode == "full" else group_files(manifest)
            with Progress("fitting", total=plan.n_assets, unit="assets", quiet=not progress) as bar:
                if client is not None:
                    from quantfit.refresh.distributed import run_dask
                    results = list(run_dask(client, ctx, plan.work, old, bar))
                else:
                    results = list(run_local(ctx, plan.work, old, bar, p.jobs or default_jobs()))
            timings["fit_write"] = time.perf_counter() - t2
        if manifest is None or plan.work or _inputs_moved(manifest, universe, store_generation):
            new_manifest, superseded = _assemble(p, plan, manifest, results, reg, universe, params,
                                                 key, generation, store, store_id,
                                                 store_generation, timings, outcome)
            rs.commit(new_manifest, superseded)
            manifest = new_manifest
        outcome.rows_total = manifest["results"]["rows"]
        outcome.last_date = manifest["results"]["last"]
    latest_moved = write_latest(out, key)
    report_dir = out / "report"
    if p.report and (plan.mode != "up to date" or latest_moved or not (report_dir / "index.html").exists()):
        t4 = time.perf_counter()
        outcome.report = _write_report(out, ctx, outcome)
        timings["report"] = time.perf_counter() - t4
    timings["total"] = time.perf_counter() - t0
    outcome.timings = {k: round(v, 3) for k, v in timings.items()}
    return outcome


def _inputs_moved(manifest: dict, universe: list[str], store_generation: int) -> bool:
    """Nothing to fit, but the universe or the store's generation changed: record it."""
    return manifest["universe"] != universe or manifest["inputs"].get("store_generation") != store_generation


def _assemble(p, plan: Plan, manifest, results: list[GroupResult], reg: Regressors, universe,
              params, key, generation, store, store_id, store_generation, timings,
              outcome: RefreshOutcome) -> tuple[dict, list[str]]:
    """The new manifest from the old one and the tasks' results, and the files it supersedes."""
    full = plan.mode == "full" or manifest is None
    files: dict[str, dict[str, dict]] = {} if full else {g: dict(m) for g, m in manifest["files"].items()}
    overlays: dict[str, list[dict]] = {} if full else dict(manifest.get("overlays", {}))
    superseded: list[str] = []
    if full and manifest is not None:
        superseded = list(live_files(manifest))
    asset_rows: dict[str, int] = {} if full else dict(manifest.get("asset_rows", {}))
    task_warnings: list[str] = []
    max_nobs: dict[str, int] = {}
    for r in results:
        months = files.setdefault(str(r.group), {})
        for month, entry in r.files.items():
            if entry is None:
                months.pop(month, None)
            else:
                months[month] = entry
        if r.overlays is not None:
            overlays[str(r.group)] = r.overlays
        superseded += r.superseded
        for a, d in r.asset_rows.items():
            asset_rows[a] = asset_rows.get(a, 0) + d
        task_warnings += r.warnings
        max_nobs.update(r.max_nobs)
        outcome.rows_written += r.rows_written
        outcome.files_written += sum(e is not None for e in r.files.values()) + r.new_overlay
    files = {g: dict(sorted(m.items())) for g, m in sorted(files.items(), key=lambda kv: int(kv[0])) if m}
    overlays = {g: o for g, o in sorted(overlays.items(), key=lambda kv: int(kv[0])) if o}
    entries = [e for m in files.values() for e in m.values()]
    spans = [e for e in (*entries, *(o for g in overlays.values() for o in g)) if e["first"] is not None]
    terms = results[0].terms if results else manifest["terms"]
    meta = results[0].meta if results else manifest["meta"]
    rows = reg.rows
    first_fit = min((w.first_row for w in plan.work), default=len(rows))
    outcome.dates_fitted = len(rows) - first_fit if plan.work else 0
    outcome.assets_fitted = plan.n_assets
    from quantfit import __version__
    now = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    new_manifest = {
        "format": FORMAT, "version": VERSION, "key": key, "generation": generation,
        "params": params, "created": (manifest or {}).get("created", now), "updated": now,
        "package_version": __version__, "meta": meta, "terms": terms,
        "universe": universe, "groups": [{"assets": g} for g in plan.groups],
        "files": files, "overlays": overlays,
        "inputs": {"store": str(Path(p.store).resolve()), "store_id": store_id,
                   "store_generation": store_generation,
                   "benchmark": p.benchmark if needs_benchmark(p) else None, "factors": p.factors,
                   "model": model_name(p),
                   "factors_dir": None if p.model is None else str(Path(p.factors_dir).resolve())},
        "data": {"first": str(rows[0].date()), "last": str(rows[-1].date()), "dates": len(rows),
                 "x_months": reg.month_hashes()},
        "results": {"first": min((e["first"] for e in spans), default=None),
                    "last": max((e["last"] for e in spans), default=None),
                    "rows": sum(asset_rows.values()),
                    "files": len(entries) + sum(map(len, overlays.values()))},
        "asset_rows": {a: n for a, n in sorted(asset_rows.items()) if n},
    }
    previous = None if full else manifest["data"]["last"]
    outcome.warnings += _warnings(store, universe, reg, new_manifest, task_warnings, max_nobs,
                                  int(params["min_obs"]), previous)
    new_manifest["last_run"] = {
        "mode": plan.mode, "reason": plan.reason, "assets_fitted": plan.n_assets,
        "dates_fitted": outcome.dates_fitted, "first_fitted": None if not plan.work else str(rows[first_fit].date()),
        "rows_fitted_on": max((r.rows_fitted_on for r in results), default=0),
        "rows_written": outcome.rows_written, "files_written": outcome.files_written,
        "timings": {k: round(v, 3) for k, v in timings.items()}, "warnings": outcome.warnings}
    return new_manifest, superseded


#: A full run reports a ticker as stale when its last price is at most this many calendar
#: rows old (about a month; older: delisted long ago, not news every night).
STALE_ROWS = 21


def _warnings(store, universe: list[str], reg: Regressors, manifest: dict, task_warnings: list[str],
              max_nobs: dict[str, int], min_obs: int, previous: str | None) -> list[str]:
    """Per asset, what a human should look at (exit code 1), one line each: no price on the
    calendar's last date (once: on the first run that covers a date it has no price for, so
    a delisted name does not warn every night); no estimate at all; the tasks' own (no
    estimate on the last date, windows that did not converge). ``previous``: the last date the
    result set covered before this run (None for a full run)."""
    last = reg.cal[-1]
    lasts = pd.to_datetime(store.ticker_info(universe)["last"]).reindex(universe)
    since = pd.Timestamp(previous) if previous else reg.cal[max(0, len(reg.cal) - STALE_ROWS)]
    stale = {a for a, d in lasts.items() if since <= d < last}
    out = [f"{a}: stale price: none on {last.date()} (last {lasts[a].date()})" for a in sorted(stale)]
    rows = manifest.get("asset_rows", {})
    never = [a for a in universe if not rows.get(a)]
    for a in never:
        most = f"at most {max_nobs[a]} valid rows in a window, " if a in max_nobs else ""
        out.append(f"{a}: too few observations for any estimate ({most}need {min_obs})")
    said = stale | set(never)  # one line per asset and problem
    return out + [w for w in task_warnings if w.split(":", 1)[0] not in said]


#: The nightly report shows this many years up to the latest date (all of it is on disk).
REPORT_YEARS = 10
#: At most this many assets are drawn in the report's time-series figures (all of them are
#: in its latest cross-section), so the report costs the same for 20 or 20,000 assets.
REPORT_ASSETS = 40


def _report_assets(latest) -> list[str] | None:
    """None (every asset) for small universes; else REPORT_ASSETS assets spread evenly over
    the latest cross-section of the first factor (lowest to highest β)."""
    beta = latest.coef(latest.factors[0]).iloc[-1].dropna().sort_values(kind="stable")
    if len(latest.assets) <= REPORT_ASSETS or len(beta) <= REPORT_ASSETS:
        return None if len(latest.assets) <= REPORT_ASSETS else list(beta.index)
    pos = np.linspace(0, len(beta) - 1, REPORT_ASSETS).round().astype(int)
    return sorted(set(beta.index[pos]))


def _write_report(out: Path, ctx: JobContext, outcome: RefreshOutcome) -> Path | None:
    """The HTML report of the latest result set, in ``out/report``; a failure is a warning.

    Its cost does not grow with the universe: the latest cross-section (one date, every
    asset: the table and its histogram), ``REPORT_YEARS`` years of a bounded selection of
    assets (rolling β, heatmap), and the last window of the highest β (scatter).
    """
    try:
        from quantfit.report import write_html  # imported here: the report is optional to the job
        from quantfit.results_store import read_results
        last = outcome.last_date
        latest = read_results(outcome.result_dir, start=last, end=last)
        fit = read_results(outcome.result_dir, assets=_report_assets(latest),
                           last_years=REPORT_YEARS)
        y = x = None
        if len(latest.factors) == 1 and not ctx.spec.window.expanding:
            top = latest.coef(latest.factors[0]).iloc[-1].idxmax()
            s = ctx.window_start(len(ctx.x) - 1)  # the last window's rows
            y = read_returns(ctx, [str(top)], s)
            x = pd.Series(ctx.x[s:, 0], index=y.index, name=ctx.factors[0])
        path = write_html(fit, out / "report", y=y, x=x, cross_section=latest,
                          title=f"quantfit betas ({outcome.key})")
        log.info("report: %s", path)
        return Path(path)
    except (ImportError, QuantfitError, OSError, ValueError) as exc:
        outcome.warnings.append(f"report not written: {type(exc).__name__}: {exc}")
        return None
