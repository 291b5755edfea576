"""The nightly job's unit of work: one asset group, read → returns → fit → part files.

``run_group(ctx, work, old)`` needs only the store path, the result set path, the group's
assets and the rows to refit (``GroupWork``), the fit options and the regressors (a few
hundred kilobytes in ``JobContext``), and the manifest entries of the group's months it
rewrites. It writes new part files into the result set directory and returns small metadata
(``GroupResult``: file entries, row counts, warnings); it never commits. So the same call runs
in the driver process or as a Dask task on another machine that sees the same file system;
the driver alone validates and commits the manifest. Its memory is bounded by the group.
"""

from __future__ import annotations

import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import pyarrow as pa

from quantfit.refresh.plan import GroupWork
from quantfit.results import RollingFit, WindowColumns
from quantfit.results_store import ResultSet, file_schema, merge_month, month_tables
from quantfit.results_store.overlays import (
    FOLD_SPREAD,
    MAX_OVERLAYS,
    OVERLAY_MIN_MONTHS,
    GroupFiles,
    GroupView,
    applicable,
)
from quantfit.results_store.resultset import LOCK_FILE
from quantfit.spec import FitSpec

#: Threads writing a group's month files (parquet encoding and fsync release the GIL).
WRITE_THREADS = 3
#: Dates converted to rows at a time (whole months, at least this many rows).
SLAB_ROWS = 256


@dataclass(frozen=True)
class JobContext:
    """What every task of one refresh shares (picklable, small).

    store, result_dir : absolute paths (a Dask worker in another directory sees the same);
    store_id : the driver's store, checked by every task (``check_inputs``).
    cal : (m,) datetime64[D] price dates (the daily calendar prices are read on).
    x : (n, k) float64 factor returns on the rows; factors : their names.
    rf : (n,) float64 risk-free rate subtracted from the asset returns, or None.
    spec : the fit's validated options (``quantfit.spec.FitSpec``), ``min_obs`` its resolved
        row count.
    row_dates : (n,) datetime64[D] the fit's rows: ``cal[1:]`` (None), or the periods of
        ``freq`` (labelled by their calendar ends), to which the assets' daily returns on
        ``cal`` are compounded.
    new_from : the first row after the rows the result set covered before this run.
    """

    store: str
    store_id: str
    result_dir: str
    generation: int
    cal: np.ndarray
    x: np.ndarray
    factors: tuple[str, ...]
    rf: np.ndarray | None
    spec: FitSpec
    min_obs: int
    row_dates: np.ndarray | None = None
    freq: str | None = None
    new_from: int | None = None  # the first row the previous run did not cover (None: none)

    @property
    def window(self) -> int | str | None:
        return self.spec.window.length

    def rows(self) -> pd.DatetimeIndex:
        dates = self.cal[1:] if self.row_dates is None else self.row_dates
        return pd.DatetimeIndex(dates.astype("datetime64[us]"), name="date")

    def window_start(self, r: int) -> int:
        """The first row of the window ending at row ``r`` (rows, a calendar lookback, or 0
        for expanding windows): the rows a refit from ``r`` on must read."""
        w = self.spec.window
        if w.expanding:
            return 0
        if w.lookback is not None:
            from quantfit.sampling import window_starts
            return int(window_starts(self.rows(), w.lookback)[r])
        return max(0, r - int(w.length) + 1)


@dataclass
class GroupResult:
    """What a task hands back to the driver (no arrays of the universe's size)."""

    group: int
    files: dict[str, dict] = field(default_factory=dict)  # month -> new manifest entry
    superseded: list[str] = field(default_factory=list)  # files the new entries replace
    overlays: list[dict] | None = None  # the group's overlays after the run (None: unchanged)
    new_overlay: bool = False  # one of them written by this run
    rows_written: int = 0
    rows_fitted_on: int = 0  # return rows read and fitted (the tail on an incremental night)
    asset_rows: dict[str, int] = field(default_factory=dict)  # estimate count change per asset
    terms: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # the fit's metadata (FitMeta.to_dict())
    warnings: list[str] = field(default_factory=list)
    max_nobs: dict[str, int] = field(default_factory=dict)  # refitted assets without an estimate
    timings: dict[str, float] = field(default_factory=dict)


def read_returns(ctx: JobContext, assets: list[str], s: int) -> pd.DataFrame:
    """Returns of ``assets`` on rows ``s:`` (prices read from calendar date ``cal[s]`` on); with
    ``ctx.freq``, daily returns on the calendar compounded to the rows' periods (read from the
    period before row ``s``, so that row ``s``'s period is never an edge ``qf.compound`` would
    judge partial), in excess of the period's rate."""
    from quantfit.data import PriceStore, compound
    from quantfit.data import returns as to_returns
    if ctx.freq is None:
        i0, rows = s, None
    else:
        from quantfit.data.frequency import FREQS
        rows = ctx.rows()[s:]
        before = (pd.Period(rows[0], FREQS[ctx.freq]) - 1).start_time
        i0 = max(0, int(np.searchsorted(ctx.cal, np.datetime64(before.date(), "D"))) - 1)
    cal = pd.DatetimeIndex(ctx.cal[i0:].astype("datetime64[us]"), name="date")
    px = PriceStore(ctx.store).prices(assets, start=cal[0], end=cal[-1]).reindex(cal)
    y = to_returns(px)
    if rows is not None:
        y = compound(y, ctx.freq).reindex(rows)
    if ctx.rf is not None:
        y = y.sub(ctx.rf[s:], axis=0)
    return y


def _fit(ctx: JobContext, y: pd.DataFrame, s: int) -> RollingFit:
    from quantfit.fit import fit_rolling
    x = pd.DataFrame(ctx.x[s:], index=y.index, columns=list(ctx.factors))
    return fit_rolling(y, x.iloc[:, 0] if x.shape[1] == 1 else x, spec=ctx.spec)


def _rows(w: WindowColumns, keep: np.ndarray) -> WindowColumns:
    """The windows of ``w`` where ``keep`` (n,) is True."""
    return replace(w, **{f: getattr(w, f)[keep] for f in (
        "date_pos", "asset_pos", "estimate", "std_error", "r2", "resid_vol", "nobs",
        "converged", "n_iter")})


def check_inputs(ctx: JobContext) -> None:
    """Refuse to work on another store or result set than the driver's (a worker that mounts
    another file system, or a stale copy at the same path): ``DataError`` naming the paths."""
    from quantfit.data import PriceStore
    from quantfit.errors import DataError
    if not (Path(ctx.result_dir) / LOCK_FILE).is_file():
        raise DataError(f"this worker does not see the result set {ctx.result_dir} (no lock file): "
                        f"the output must be on a file system every worker shares")
    if PriceStore(ctx.store).store_id != ctx.store_id:
        raise DataError(f"this worker sees another price store at {ctx.store} than the driver "
                        f"(store id differs): the store must be on a file system every worker shares")


def bands(ctx: JobContext, fit_from: dict[str, int], fresh: bool) -> list[tuple[dict[str, int], int]]:
    """The assets to refit in bands fitted separately: ``[(fit_from of the band, first row
    read)]``. On a night with revisions, the assets refitted from deep in the past (a revised
    history) form their own band, so the others read and fit only their tail: the rows of the
    window ending at their first refitted row (``JobContext.window_start``)."""
    if fresh or ctx.spec.window.expanding:
        return [(fit_from, 0)]
    tail = max(fit_from.values())
    reach = ctx.window_start(tail)  # where the tail's windows begin
    shallow = {a: f for a, f in fit_from.items() if f >= reach}
    deep = {a: f for a, f in fit_from.items() if a not in shallow}
    return [(part, ctx.window_start(min(part.values()))) for part in (deep, shallow) if part]


#: Replaces every row of an asset in a month (a day number before any date).
ALL_ROWS = int(np.iinfo(np.int32).min)


def run_group(ctx: JobContext, work: GroupWork, old: GroupFiles) -> GroupResult:
    """Refit ``work.fit_from``'s assets and write their group's new files (see module).

    ``old`` : the group's committed files (empty for a fresh group). Assets refitted from
    more than ``OVERLAY_MIN_MONTHS`` months before the night's tail (a revised history, an
    asset back or added) are refitted from their first row and written as one overlay file
    (``quantfit.results_store.overlays``) instead of rewriting every month they touch; a group
    with ``MAX_OVERLAYS`` overlays folds them instead: it is refitted and written afresh, or,
    when it holds rows of assets that left the universe, its overlaid months are rewritten.
    """
    t0 = time.perf_counter()
    res = GroupResult(group=work.group)
    rows = ctx.rows()
    fit_from = dict(work.fit_from)
    every = ctx.spec.sampling.every
    fresh = work.fresh
    # A group folds its overlays at 5 to 8 of them (by its number, so that when revisions reach
    # every group each night, the folds spread over four nights), and writes no new one. When
    # every asset of the group is refitted anyway (none left the universe), the whole group is
    # refitted from its first row and written afresh: cheaper than rewriting every month from
    # its overlaid view, which is what a group holding a removed asset's rows does instead.
    fold = not fresh and len(old.overlays) >= MAX_OVERLAYS - work.group % FOLD_SPREAD
    rebuilt = fold and set(work.fit_from) == set(work.assets)
    if rebuilt:
        fit_from, fresh = {a: 0 for a in work.assets}, True
    if every is not None and not fresh:
        # An estimate per period, dated on its last row so far: refit from the start of the
        # period, so the new last row's estimate replaces the one the period had.
        from quantfit.sampling import period_start_rows
        first_of = period_start_rows(rows, every)
        fit_from = {a: int(first_of[r]) for a, r in fit_from.items()}
    pos = {a: i for i, a in enumerate(work.assets)}
    n = len(work.assets)
    dictionary = pa.array(list(work.assets), pa.string())
    rs = ResultSet(ctx.result_dir)
    # Assets refitted from further back than OVERLAY_MIN_MONTHS before the night's new rows
    # (their period's start with ``every``) go to an overlay, refitted from their first row;
    # the others are refitted in place, and months from the first of their rows on rewritten.
    r_new = min(len(rows) if ctx.new_from is None else ctx.new_from, len(rows) - 1)
    last = rows.values[first_of[r_new] if every is not None and not fresh else r_new]
    overlay = {} if fresh or fold or ctx.spec.window.expanding else {
        a: 0 for a, f in fit_from.items() if _months_between(rows.values[f], last) >= OVERLAY_MIN_MONTHS}
    rest = {a: f for a, f in fit_from.items() if a not in overlay}
    tail_month = str(rows.values[min(rest.values())].astype("datetime64[M]") if rest
                     else rows.values[-1].astype("datetime64[M]") + 1)  # (none: no month rewritten)
    plan = ([(overlay, 0, True)] if overlay else []) + \
        ([(part, s, False) for part, s in bands(ctx, rest, fresh)] if rest else [])
    # Old rows of a refitted asset from its first refitted date on are superseded, also where
    # the new fit has no estimate any more.
    replace_from: dict[int, int] = {}
    overlaid = np.zeros(n, dtype=bool)  # assets whose rows before the tail go to the overlay
    overlay_tables: list[pa.Table] = []
    sources = []
    for part, s, to_overlay in plan:
        y = read_returns(ctx, list(part), s)
        fit = _fit(ctx, y, s)
        names = [str(a) for a in fit.assets]
        res.terms, res.meta = list(fit.terms), fit.meta.to_dict()
        res.rows_fitted_on += len(y)
        # Each asset's first refitted date, and its position among the fit's dates (every row,
        # or the period ends): windows before it keep their committed rows, so they are left
        # out of what is written.
        start_days = rows.values[[part[a] for a in names]].astype("datetime64[D]").astype(np.int64)
        days = fit.index.values.astype("datetime64[D]").astype(np.int64)
        starts = np.searchsorted(days, start_days, side="left").astype(np.int64)
        warn, most = _task_warnings(ctx, fit, starts, y.iloc[-1].notna().to_numpy())
        res.warnings += warn
        res.max_nobs.update(most)
        codes = np.array([pos[a] for a in names], dtype=np.int32)
        tables = _month_tables(fit, starts, codes, dictionary)
        if to_overlay:
            overlaid[codes] = True
            tail = []
            for month, table in tables:
                if month < tail_month:
                    overlay_tables.append(table)
                else:
                    tail.append((month, table))
            tables = iter(tail)
            replace_from.update({int(c): ALL_ROWS for c in codes})
        elif not fresh:
            replace_from.update({int(c): int(d) for c, d in zip(codes, start_days)})
        sources.append(tables)
    t2 = time.perf_counter()
    view = GroupView(rs, old, res.terms)
    new_rows = np.zeros(n, dtype=np.int64)  # estimates per asset in the months written
    old_rows = np.zeros(n, dtype=np.int64)  # ... and in those months before

    def write(month: str, new: pa.Table | None):
        entry = None if fresh else old.months.get(month)
        table, prior_rows = new, np.zeros(n, dtype=np.int64)
        layered = not fresh and bool(applicable(old.overlays, month, entry))
        if entry is not None or layered:
            prior = view.month(month)  # the month as readers see it: older overlays applied
            table = merge_month(prior, new if new is not None else prior.slice(0, 0), replace_from)
            if new is None and not layered and table.num_rows == prior.num_rows:
                return month, entry, 0, None, None  # nothing of this month changed after all
            prior_rows = np.bincount(_codes(prior), minlength=n)
        done = rs.write_part(work.group, month, table, ctx.generation) if table.num_rows else None
        return month, done, 0 if new is None else new.num_rows, np.bincount(_codes(table), minlength=n), prior_rows

    written: set[str] = set()

    def note(results) -> None:
        for month, entry, n_new, new_count, old_count in results:
            written.add(month)
            if new_count is not None:
                new_rows[:] += new_count
                old_rows[:] += old_count
            _record(res, old.months, month, entry, n_new)

    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        note(bounded_map(pool, write, _by_month(sources), 2 * WRITE_THREADS))
        # Months without new rows that still hold superseded rows of a refitted asset.
        if replace_from:
            # (an overlaid asset's rows before the tail month are the overlay's business)
            tail_day = int(np.datetime64(tail_month, "D").astype(np.int64))
            cut = str(np.datetime64(min(tail_day if d == ALL_ROWS else d for d in replace_from.values()), "D"))
            stale = [(m, None) for m, e in old.months.items() if m not in written and e["last"] >= cut]
            note(bounded_map(pool, write, stale, 2 * WRITE_THREADS))
        if fold and not rebuilt:  # every other month an overlay applies to
            layered = [(m, None) for m in view.months()
                       if m not in written and applicable(old.overlays, m, old.months.get(m))]
            note(bounded_map(pool, write, layered, 2 * WRITE_THREADS))
    if fold:
        res.overlays, res.superseded = [], res.superseded + [o["file"] for o in old.overlays]
    delta = new_rows - old_rows
    before = np.array([old.asset_rows.get(a, 0) for a in work.assets], dtype=np.int64)
    if rebuilt:  # months the refit did not write again are gone; every count is new
        for month in sorted(set(old.months) - written):
            _record(res, old.months, month, None, 0)
        delta = new_rows - before
    if overlaid.any():
        # These assets' rows were all replaced: count them afresh against the manifest's count.
        if overlay_tables:
            table = pa.concat_tables(overlay_tables)
            over_rows = np.bincount(_codes(table), minlength=n)
        else:
            table, over_rows = None, np.zeros(n, dtype=np.int64)
        delta[overlaid] = (over_rows + new_rows - before)[overlaid]
        if table is not None or before[overlaid].any():
            if table is None:
                table = file_schema(res.terms).empty_table()
            entry = rs.write_overlay(work.group, table, ctx.generation,
                                     [int(c) for c in np.flatnonzero(overlaid)], str(rows[-1].date()))
            res.overlays, res.new_overlay = [*old.overlays, entry], True
            res.rows_written += table.num_rows
    res.asset_rows = {a: int(delta[i]) for i, a in enumerate(work.assets) if delta[i]}
    res.timings = {"read_fit": t2 - t0, "write": time.perf_counter() - t2}
    return res


def _months_between(a: np.datetime64, b: np.datetime64) -> int:
    """Calendar months from the month of ``a`` to the month of ``b``."""
    return int((b.astype("datetime64[M]") - a.astype("datetime64[M]")).astype(int))


def _by_month(sources: list) -> Iterator[tuple[str, pa.Table]]:
    """Month tables of several bands (each in month order), one table per month."""
    if len(sources) == 1:
        yield from sources[0]
        return
    merged: dict[str, list[pa.Table]] = {}
    for src in sources:  # bands are small apart from the tail's few months: collect them
        for month, table in src:
            merged.setdefault(month, []).append(table)
    for month in sorted(merged):
        parts = merged[month]
        yield month, parts[0] if len(parts) == 1 else pa.concat_tables(parts)


def _month_tables(fit: RollingFit, starts: np.ndarray, codes: np.ndarray, dictionary: pa.Array):
    """The fit's windows from each asset's start row on (``RollingFit.windows()``, the one
    conversion to rows), cut into month tables, converted a slab of whole months at a time:
    the temporaries stay small (cache-sized, recycled by the allocator) whatever the history."""
    t_first = int(starts.min())
    months = fit.index[t_first:].values.astype("datetime64[M]")
    cuts = t_first + np.flatnonzero(np.r_[True, months[1:] != months[:-1]])
    bounds = [int(c) for c in cuts] + [len(fit.index)]
    a = bounds[0]
    while a < len(fit.index):
        b = next((e for e in bounds if e - a >= SLAB_ROWS), bounds[-1])  # whole months
        w = fit.isel(dates=slice(a, b)).windows()
        if (starts > a).any():
            w = _rows(w, w.date_pos + a >= starts[w.asset_pos])
        yield from month_tables(w, codes, dictionary)
        a = b


def _record(res: GroupResult, old: dict[str, dict], month: str, entry: dict | None, n_new: int) -> None:
    """Note a month's new entry (None: the month has no rows any more) in the result."""
    if month in old and entry is old[month]:
        return  # unchanged
    res.files[month] = entry
    res.rows_written += n_new
    if month in old:
        res.superseded.append(old[month]["file"])


def bounded_map(pool: ThreadPoolExecutor, fn, items, max_pending: int):
    """``fn(*item)`` for each item on ``pool``, in order, with at most ``max_pending`` items
    in flight, so a generator of large items is never materialized at once."""
    pending: list = []
    for item in items:
        pending.append(pool.submit(fn, *item))
        if len(pending) >= max_pending:
            yield pending.pop(0).result()
    for fut in pending:
        yield fut.result()


def _codes(table: pa.Table) -> np.ndarray:
    return table.column("asset").combine_chunks().indices.to_numpy(zero_copy_only=False)


def _task_warnings(ctx: JobContext, fit: RollingFit, starts: np.ndarray,
              has_last: np.ndarray) -> tuple[list[str], dict[str, int]]:
    """Per asset, what a human should look at: no estimate on the last date although the
    asset has a return there; refitted windows an iterative solver did not converge on. And
    the most valid rows of a window, for refitted assets without any estimate."""
    out = []
    names = [str(a) for a in fit.assets]
    est = np.isfinite(fit.coef(fit.terms[0]).to_numpy())  # (T, A)
    nobs = fit.nobs.to_numpy()
    refit = np.arange(len(fit.index))[:, None] >= starts[None, :]
    last_day = str(fit.index[-1].date())
    for i in np.flatnonzero(~est[-1] & has_last):
        out.append(f"{names[i]}: no estimate on {last_day} ({int(nobs[-1, i])} valid rows "
                   f"in the window, need {ctx.min_obs})")
    if ctx.spec.solver.name != "newton":
        bad = ((est | (nobs >= ctx.min_obs)) & refit & ~fit.converged.to_numpy()).sum(axis=0)
        for i in np.flatnonzero(bad):
            k = int(bad[i])
            out.append(f"{names[i]}: {k} window{'s' if k > 1 else ''} did not converge "
                       f"(solver {ctx.spec.solver.name})")
    none = ~(est & refit).any(axis=0)
    return out, {names[i]: int(nobs[:, i].max(initial=0)) for i in np.flatnonzero(none)}
