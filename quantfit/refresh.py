"""The nightly job behind ``quantfit refresh``: store -> returns -> rolling betas -> result set.

    >>> from quantfit.refresh import RefreshParams, refresh
    >>> outcome = refresh(RefreshParams(store="data/store", out="data/results"))
    >>> outcome.mode, outcome.rows_written, outcome.warnings

One call (1) optionally ingests new prices (``update="yfinance"``), or the embedded sample when
the default store is empty; (2) computes simple daily returns; (3) fits rolling regressions of
every asset of the universe; (4) writes the tidy results as a result set under ``out`` (see
``quantfit.results_store`` for the layout); (5) writes the HTML report to ``out/report``.

Regressions (all in daily decimal returns):

* default: ``y`` = asset returns, ``x`` = the benchmark's returns (one factor, named by its
  ticker), on the dates where any of them has a price;
* ``factors=FILE`` (a Ken French daily factors file): ``y`` = asset returns minus ``RF``,
  ``x`` = every factor column except ``RF``, on the asset return dates that the file covers
  (inner join); the benchmark is not used then.

Incremental and idempotent: the result set remembers the last date it covers and a fingerprint
of the returns (y and x) up to that date. When the store has gained dates, only the windows
ending on the new dates are fitted, from the last ``window`` rows before them, and appended;
this equals a full recompute (to rounding: the engine's window sums start from the slice).
A full recompute (same result set) happens when there is no result yet, the universe changed,
the returns up to the covered date changed (revised history), or windows are expanding.
Nothing new: nothing is written. A different parameter set gets its own result set.

The library (``fit_rolling``, ``RollingFit``, ``report``) never imports this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from quantfit.errors import DataError, FitError, QuantfitError
from quantfit.results import RollingFit
from quantfit.results_store import (FORMAT, VERSION, ResultSet, split_by_month, tidy_table,
                                    write_latest)

log = logging.getLogger("quantfit.refresh")

DEFAULT_STORE = "data/store"
DEFAULT_OUT = "data/results"
#: Assets per ``fit_rolling`` call: the unit of the progress bar and of peak memory.
ASSET_CHUNK = 512


@dataclass
class RefreshParams:
    """Everything one refresh needs. Paths are as given (relative to the working directory).

    store, out : price store and results directories.
    benchmark : ticker of the single factor (default mode) and the ticker left out of the
        default universe.
    factors : Ken French daily factors file (or dataset name); replaces the benchmark as x.
    universe : tickers to fit; None = every ticker in the store except the benchmark.
    window : rows per window (None = expanding); min_obs: valid rows needed (default window).
    halflife : exponential weights' half-life in rows (None = equal weights).
    solver, loss, tol, max_iter, device : passed to ``qf.fit_rolling`` (tol and max_iter
        matter to the iterative solvers only; None = the solver's default).
    update : "yfinance" to ingest the latest prices first, or None.
    report : write ``out/report/index.html``.
    store_given : False when ``store`` is the default; only then may an empty store be filled
        with the embedded sample (a mistyped ``--store`` must not silently become the sample).
    """

    store: str = DEFAULT_STORE
    out: str = DEFAULT_OUT
    benchmark: str = "SPY"
    factors: str | None = None
    universe: list[str] | None = None
    window: int | None = 252
    min_obs: int | None = None
    halflife: float | None = None
    solver: str = "newton"
    loss: str = "mse"
    tol: float | None = None
    max_iter: int | None = None
    device: str = "auto"
    update: str | None = None
    report: bool = True
    store_given: bool = False


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


# ----------------------------------------------------------------------------- inputs
def check_params(p: RefreshParams) -> None:
    """Validate the parameters before any work; ``FitError``/``DataError`` name the problem."""
    from quantfit.engine import LOSSES, SOLVERS
    if p.solver not in SOLVERS:
        raise FitError(f"unknown solver {p.solver!r}; choose one of {', '.join(sorted(SOLVERS))}")
    if p.loss not in LOSSES:
        raise FitError(f"unknown loss {p.loss!r}; choose one of {', '.join(sorted(LOSSES))}")
    if p.window is not None and not (isinstance(p.window, int) and not isinstance(p.window, bool)
                                     and p.window >= 2):
        raise FitError(f"window must be an integer >= 2 or 'expanding', got {p.window!r}")
    if p.min_obs is not None and not (isinstance(p.min_obs, int) and p.min_obs >= 1):
        raise FitError(f"min_obs must be a positive integer, got {p.min_obs!r}")
    if p.min_obs is not None and p.window is not None and p.min_obs > p.window:
        raise FitError(f"min_obs={p.min_obs} is larger than window={p.window}")
    if p.halflife is not None and not (isinstance(p.halflife, (int, float)) and math.isfinite(p.halflife)
                                       and p.halflife > 0):
        raise FitError(f"halflife must be a positive number of rows, got {p.halflife!r}")
    if p.tol is not None and not (isinstance(p.tol, (int, float)) and p.tol > 0):
        raise FitError(f"tol must be a positive number, got {p.tol!r}")
    if p.max_iter is not None and not (isinstance(p.max_iter, int) and p.max_iter >= 1):
        raise FitError(f"max_iter must be a positive integer, got {p.max_iter!r}")
    if p.update not in (None, "yfinance"):
        raise DataError(f"unknown update source {p.update!r}; the only one is 'yfinance'")
    if not p.benchmark:
        raise DataError("benchmark must be a ticker")
    if p.universe is not None and not p.universe:
        raise DataError("the universe is empty")


def parse_universe(spec: str | list[str] | None, base: Path | None = None) -> list[str] | None:
    """``"AAPL,MSFT"``, a file of tickers (one per line, ``#`` comments) or a list -> tickers.

    A string naming an existing file (relative to ``base`` when given) is read as a file; a
    string that looks like a path (has a ``/`` or a ``.txt``/``.csv`` suffix) but does not
    exist is an error; anything else is a comma-separated list. Order kept, duplicates dropped.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        path = Path(spec) if base is None or Path(spec).is_absolute() else base / spec
        if path.is_file():
            names = []
            for line in path.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                names += [t.strip() for t in line.replace(",", " ").split()]
            if not names:
                raise DataError(f"universe file {path} lists no tickers")
        elif "/" in spec or os.sep in spec or Path(spec).suffix.lower() in (".txt", ".csv"):
            raise DataError(f"universe file {path} not found")
        else:
            names = [t.strip() for t in spec.split(",")]
    elif isinstance(spec, (list, tuple)):
        names = [str(t).strip() for t in spec]
    else:
        raise DataError(f"universe must be tickers or a file, got {spec!r}")
    if any(not t for t in names):
        raise DataError(f"bad universe {spec!r}: empty ticker name")
    return list(dict.fromkeys(names))


def _fit_dtype(device: str) -> str:
    """The precision fit_rolling will use on ``device`` (part of the result set's key)."""
    from quantfit.engine import default_dtype, pick_device
    try:
        return str(default_dtype(pick_device(device))).replace("torch.", "")
    except (RuntimeError, ValueError, TypeError) as exc:
        raise FitError(f"bad device {device!r}: {exc}") from None


def canonical_params(p: RefreshParams, n_factors: int) -> dict[str, Any]:
    """The parameters that define a result set (its key): what changes the numbers.

    Paths to factor files are made absolute; ``min_obs`` is resolved to its default. The
    universe is not part of it (a changed universe recomputes the same set), nor the device
    (only the precision it implies).
    """
    if p.factors is None:
        regressors = f"benchmark:{p.benchmark}"
    else:
        f = Path(p.factors)
        regressors = f"french:{f.resolve() if f.exists() else p.factors}"
    n_params = n_factors + 1
    min_obs = p.min_obs if p.min_obs is not None else (p.window if p.window is not None else n_params)
    return {"format": FORMAT, "version": VERSION, "regressors": regressors, "window": p.window,
            "min_obs": int(min_obs), "halflife": None if p.halflife is None else float(p.halflife),
            "solver": p.solver, "loss": p.loss, "tol": p.tol, "max_iter": p.max_iter,
            "dtype": _fit_dtype(p.device)}


def params_key(params: dict[str, Any]) -> str:
    """Short stable hash of the canonical parameters (12 hex digits)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def fingerprint(y: pd.DataFrame, x: pd.DataFrame, end: pd.Timestamp) -> str:
    """Hash of the regression inputs up to ``end`` (dates, names, every value bit for bit)."""
    h = hashlib.blake2b(digest_size=16)
    ys, xs = y.loc[:end], x.loc[:end]
    h.update(json.dumps([[str(c) for c in y.columns], [str(c) for c in x.columns]]).encode())
    h.update(ys.index.values.astype("datetime64[D]").astype(np.int64).tobytes())
    h.update(np.ascontiguousarray(ys.to_numpy(np.float64)).tobytes())
    h.update(np.ascontiguousarray(xs.to_numpy(np.float64)).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- prices
def _ensure_store(p: RefreshParams):
    """Open the store; fill an empty *default* store with the embedded sample."""
    from quantfit.data import PriceStore, sources
    store = PriceStore(p.store)
    if store.tickers():
        return store
    if p.update:
        return store  # the update below fills it
    if p.store_given:
        raise DataError(f"store {p.store} is empty or missing: ingest prices first "
                        f"('quantfit ingest ...') or use --update yfinance")
    log.info("store %s is empty: ingesting the embedded sample (19 stocks + SPY)", p.store)
    summary = store.ingest(sources.sample(), source="sample")
    log.info("%s: %s", p.store, summary)
    return store


def update_yfinance(store, tickers: list[str], downloader: Callable | None = None) -> list[str]:
    """Ingest the latest Yahoo prices of ``tickers`` into ``store``; returns warning lines.

    Tickers already in the store are fetched from the earliest of their last dates (so a
    revised last close is replaced); new tickers get their whole history.
    """
    from quantfit.data import sources
    known = set(store.tickers())
    old = [t for t in tickers if t in known]
    new = [t for t in tickers if t not in known]
    notes: list[str] = []
    batches: list[tuple[list[str], str | None]] = []
    if old:
        last = store.prices(old).apply(lambda c: c.last_valid_index())
        batches.append((old, str(min(last).date())))
    if new:
        batches.append((new, None))
    for names, start in batches:
        log.info("yfinance: %d ticker%s from %s", len(names), "s" if len(names) > 1 else "",
                 start or "the start of their history")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sources.MissingTickersWarning)
            frame = sources.yfinance(names, start=start, downloader=downloader)
        missing = frame.attrs.get("missing", [])
        if missing:
            notes.append(f"yfinance returned no prices for {len(missing)} ticker"
                         f"{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
        log.info("%s: %s", store.path, store.ingest(frame, source="yfinance"))
    return notes


def load_inputs(p: RefreshParams, store, universe: list[str]):
    """Prices, and the regression inputs: y (dates × assets), x (dates × factors).

    Returns ``(prices, y, x)``; prices cover the universe and (without factors) the benchmark.
    """
    from quantfit.data import returns, sources
    wanted = universe + ([p.benchmark] if p.factors is None and p.benchmark not in universe else [])
    prices = store.prices(wanted)
    if len(prices) < 2:
        raise DataError(f"store {p.store} has {len(prices)} date(s) for the universe: need at least 2")
    rets = returns(prices)
    if p.factors is None:
        return prices, rets[universe], rets[[p.benchmark]]
    ff = sources.french(p.factors)
    if "RF" not in ff.columns:
        raise DataError(f"factors file {p.factors} has no RF column (columns: {', '.join(ff.columns)})")
    gaps = np.diff(ff.index.values).astype("timedelta64[D]").astype(int)
    if len(gaps) and np.median(gaps) > 4:
        raise DataError(f"factors file {p.factors} is not daily (median gap {np.median(gaps):.0f} days); "
                        f"use a *_daily file with daily prices")
    dates = rets.index.intersection(ff.index)
    if len(dates) < 2:
        raise DataError(f"factors file {p.factors} ({ff.index[0].date()} to {ff.index[-1].date()}) "
                        f"shares no dates with the prices")
    ff = ff.loc[dates]
    y = rets.loc[dates, universe].sub(ff["RF"], axis=0)
    x = ff.drop(columns="RF")
    return prices, y, x


# ----------------------------------------------------------------------------- fitting
def fit_chunks(y: pd.DataFrame, x: pd.DataFrame, p: RefreshParams, progress: Progress) -> RollingFit:
    """``qf.fit_rolling`` over chunks of ``ASSET_CHUNK`` assets, joined into one RollingFit."""
    from quantfit.fit import fit_rolling
    kw = dict(window=p.window, min_obs=p.min_obs, expanding=p.window is None, halflife=p.halflife,
              solver=p.solver, loss=p.loss, tol=p.tol, max_iter=p.max_iter, device=p.device)
    xs = x.iloc[:, 0] if x.shape[1] == 1 else x
    fits = []
    for a0 in range(0, y.shape[1], ASSET_CHUNK):
        fits.append(fit_rolling(y.iloc[:, a0:a0 + ASSET_CHUNK], xs, **kw))
        progress.advance()
    if len(fits) == 1:
        return fits[0]
    first = fits[0]
    cat = lambda get: np.concatenate([get(f).to_numpy() for f in fits], axis=1).T  # noqa: E731
    return RollingFit(
        index=first.index, assets=y.columns, terms=first.terms,
        coef=np.stack([cat(lambda f, t=t: f.coef(t)) for t in first.terms]),
        stderr=np.stack([cat(lambda f, t=t: f.stderr(t)) for t in first.terms]),
        r2=cat(lambda f: f.r2), resid_vol=cat(lambda f: f.resid_vol), nobs=cat(lambda f: f.nobs),
        converged=cat(lambda f: f.converged), n_iter=cat(lambda f: f.n_iter),
        settings=first.settings)


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
    """Run the nightly job once (see the module doc). Raises ``QuantfitError`` on user errors.

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
    """The fit restricted to its dates ``i:`` (views, no copies)."""
    if i == 0:
        return fit
    arr = lambda f: f.to_numpy()[i:].T  # noqa: E731  (T, A) frame -> (A, T - i)
    return RollingFit(
        index=fit.index[i:], assets=fit.assets, terms=fit.terms,
        coef=np.stack([arr(fit.coef(t)) for t in fit.terms]),
        stderr=np.stack([arr(fit.stderr(t)) for t in fit.terms]),
        r2=arr(fit.r2), resid_vol=arr(fit.resid_vol), nobs=arr(fit.nobs),
        converged=arr(fit.converged), n_iter=arr(fit.n_iter), settings=fit.settings)


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


# ----------------------------------------------------------------------------- configuration
#: Config-file keys (TOML) and their types; the same names as the long command-line flags.
CONFIG_KEYS: dict[str, tuple[type, ...]] = {
    "store": (str,), "out": (str,), "benchmark": (str,), "factors": (str,),
    "universe": (str, list), "window": (int, str), "min_obs": (int,), "halflife": (int, float),
    "solver": (str,), "loss": (str,), "tol": (int, float), "max_iter": (int,), "device": (str,), "update": (str,), "report": (bool,),
    "quiet": (bool,), "verbose": (bool,), "log_file": (str,),
}
_PATH_KEYS = ("store", "out", "factors", "log_file")


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML config: keys as the long flags (``min_obs`` or ``min-obs``).

    Relative paths in it (store, out, factors, log_file, a universe file) are resolved against
    the config file's directory, so a cron job works from any working directory.
    Unknown keys or wrong types raise ``DataError`` naming them.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise DataError(f"config file {path} is a directory") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"config file {path}: {exc}") from None
    cfg = {k.replace("-", "_"): v for k, v in raw.items()}
    unknown = sorted(k for k in cfg if k not in CONFIG_KEYS)
    if unknown:
        raise DataError(f"config file {path}: unknown key{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(unknown)} (known: {', '.join(CONFIG_KEYS)})")
    base = path.resolve().parent
    for k, v in cfg.items():
        types = CONFIG_KEYS[k]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            raise DataError(f"config file {path}: {k} must be {' or '.join(t.__name__ for t in types)}, "
                            f"got {v!r}")
        if k in _PATH_KEYS and not Path(v).is_absolute():
            candidate = base / v
            # A factors *name* (downloaded) stays a name; an existing or path-like value is a path.
            if k != "factors" or candidate.exists() or "/" in v or Path(v).suffix:
                cfg[k] = str(candidate)
        if k == "universe" and isinstance(v, str):
            cfg[k] = parse_universe(v, base)
        if k == "window":
            cfg[k] = parse_window(v)
    return cfg


def parse_window(value: int | str) -> int | None:
    """``252`` / ``"252"`` -> 252; ``"expanding"`` -> None."""
    if isinstance(value, str):
        if value.strip().lower() == "expanding":
            return None
        try:
            value = int(value)
        except ValueError:
            raise DataError(f"window must be a number of rows or 'expanding', got {value!r}") from None
    return value


def params_from(cfg: dict[str, Any]) -> RefreshParams:
    """RefreshParams from merged settings (defaults <- config <- flags); extra keys ignored."""
    names = set(RefreshParams.__dataclass_fields__)
    # window None means "expanding" (parsed from the flag or config); other Nones mean unset.
    kw = {k: v for k, v in cfg.items() if k in names and (v is not None or k == "window")}
    kw["store_given"] = "store" in kw
    if "universe" in kw and isinstance(kw["universe"], str):
        kw["universe"] = parse_universe(kw["universe"])
    return RefreshParams(**kw)


def outcome_dict(o: RefreshOutcome) -> dict[str, Any]:
    """JSON-able view of an outcome (for ``--json`` style logging)."""
    d = asdict(o)
    d["result_dir"] = str(o.result_dir)
    d["report"] = None if o.report is None else str(o.report)
    return d


# ----------------------------------------------------------------------------- command line
def add_arguments(parser) -> None:
    """The ``quantfit refresh`` flags (every default is None so that config values show through)."""
    a = parser.add_argument
    a("--config", metavar="FILE", help="TOML file with any of the options below (flags override it)")
    a("--store", metavar="DIR", help=f"price store (default: {DEFAULT_STORE}; when that is empty, "
                                     f"the embedded sample is ingested first)")
    a("--out", metavar="DIR", help=f"results directory (default: {DEFAULT_OUT})")
    a("--benchmark", metavar="TICKER", help="the factor, a ticker in the store (default: SPY)")
    a("--factors", metavar="FILE", help="Ken French daily factors file: regress excess returns "
                                        "on its factors instead of the benchmark")
    a("--universe", metavar="TICKERS|FILE", help="comma-separated tickers or a file of tickers "
                                                 "(default: every ticker in the store but the benchmark)")
    a("--window", metavar="N", help="rows per window, or 'expanding' (default: 252)")
    a("--min-obs", dest="min_obs", metavar="N", type=int, help="valid rows needed for an estimate "
                                                                "(default: the window)")
    a("--halflife", metavar="H", type=float, help="half-life of exponential weights, in rows")
    a("--solver", metavar="S", help="newton (default), gd, adam, lbfgs")
    a("--loss", metavar="L", help="mse (default)")
    a("--tol", metavar="X", type=float, help="convergence tolerance of gd/adam/lbfgs")
    a("--max-iter", dest="max_iter", metavar="N", type=int, help="iteration cap of gd/adam/lbfgs")
    a("--device", metavar="D", help="auto (default), cpu, cuda, cuda:1, mps")
    a("--update", metavar="SOURCE", help="ingest the latest prices first: yfinance")
    a("--no-report", dest="report", action="store_const", const=False,
      help="do not write the HTML report")
    a("--log-file", dest="log_file", metavar="FILE", help="also log (with timestamps) to FILE, "
                                                          "warnings included even with --quiet")
    a("-q", "--quiet", action="store_const", const=True, help="errors only on stderr (for cron)")
    a("-v", "--verbose", action="store_const", const=True, help="debug logging")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"quantfit refresh: {level}{record.getMessage()}"


def run_cli(args) -> int:
    """Handler of ``quantfit refresh``: merge config and flags, run, log, return the exit code."""
    cfg: dict[str, Any] = {}
    if args.config:
        cfg.update(load_config(args.config))
    flags = {k: v for k, v in vars(args).items()
             if k in CONFIG_KEYS and v is not None}
    if "window" in flags:
        flags["window"] = parse_window(flags["window"])
    cfg.update(flags)
    quiet, verbose = bool(cfg.get("quiet")), bool(cfg.get("verbose"))
    handlers: list[logging.Handler] = []
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(_Formatter())
    console.setLevel(logging.ERROR if quiet else (logging.DEBUG if verbose else logging.INFO))
    handlers.append(console)
    if cfg.get("log_file"):
        fh = logging.FileHandler(cfg["log_file"])
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        fh.setLevel(logging.DEBUG if verbose else logging.INFO)
        handlers.append(fh)
    old_level = log.level
    log.setLevel(logging.DEBUG)
    for h in handlers:
        log.addHandler(h)
    try:
        params = params_from(cfg)
        show = not quiet and sys.stderr.isatty()
        outcome = refresh(params, progress=show)
        for line in outcome.warnings:
            log.warning(line)
        if outcome.warnings:
            log.warning("done with %d warning%s (listed above and in %s)", len(outcome.warnings),
                        "s" if len(outcome.warnings) > 1 else "", outcome.result_dir / "manifest.json")
            return 1
        log.info("done in %.1fs", outcome.timings.get("total", 0.0))
        return 0
    finally:
        for h in handlers:
            log.removeHandler(h)
            h.close()
        log.setLevel(old_level)
