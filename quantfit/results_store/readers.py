"""Reading a result set: ``read_betas`` (one date), ``read_tidy`` and ``read_results`` (ranges).

Every reader reads the committed manifest, then only the part files it needs: one month (every
group) for ``read_betas``; the months overlapping ``start..end`` of the groups holding the
requested assets for the range readers, and the overlays that apply to those months
(``overlays``). They never take the writer's lock; when a writer
replaces a file under them they re-read the manifest and try again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from quantfit.data.dates import parse_date
from quantfit.errors import DataError
from quantfit.results_store.encoding import estimate_column, file_schema, to_tidy, to_windows
from quantfit.results_store.overlays import GroupView, applicable, group_files
from quantfit.results_store.resultset import ResultSet, open_results, retrying

#: Part files read at once (pyarrow releases the GIL while decoding).
READ_THREADS = 4


def committed(rs: ResultSet) -> dict:
    """The committed manifest of ``rs``; ``DataError`` when there is none or no estimate."""
    manifest = rs.read_manifest()
    if manifest is None:
        raise DataError(f"{rs.path} holds no committed results")
    if not manifest["results"]["rows"]:
        raise DataError(f"{rs.path} holds no estimates (every window had too few observations)")
    return manifest


def _read_months(views: list[GroupView], month: str | None, filters, columns=None) -> list[pa.Table]:
    """The rows of ``month`` (None: every month in each view's range) of each group's view;
    ``filters`` are applied to the months the view's range cuts (the others are read whole)."""
    jobs = [(v, m, None if v.inside(m) else filters)
            for v in views for m in ([month] if month is not None else v.months())]
    if len(jobs) <= 1:
        return [v.month(m, f, columns) for v, m, f in jobs]
    with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(jobs))) as pool:
        return list(pool.map(lambda job: job[0].month(job[1], job[2], columns), jobs))


def read_betas(out_dir: str | os.PathLike, date=None, term: str | None = None) -> pd.Series | pd.DataFrame:
    """The estimates of one date from a results directory (reads that month's files only).

    Parameters
    ----------
    out_dir : the ``--out`` directory of ``quantfit refresh`` (its ``LATEST`` result set is
        read), or one result set directory ``out/<key>``.
    date : the date to read: ISO text (``"2024-06-28"``) or another unambiguous form, a
        ``YYYYMMDD`` integer (``20240628``), a Timestamp/datetime/date (its local calendar
        date); ambiguous text such as ``"05.07.2024"`` is refused (the data layer's date
        rules). Default: the latest date with results.
    term : one term (a factor name, or ``"alpha"``). Default: every factor (not ``"alpha"``).

    Returns
    -------
    A Series indexed by asset (sorted) when one term is asked for or the fit has one factor
    (``name`` = the term), otherwise a DataFrame assets × factors. The date read is in
    ``.attrs["date"]``. Assets without an estimate on that date are absent (an asset dropped
    from the universe gets no rows after the last run that had it).

    Raises
    ------
    DataError when ``out_dir`` holds no results, the date has no results (the message gives
    the range that has), or ``term`` is not one of the fit's terms.
    """
    rs = open_results(out_dir)

    def read():
        manifest = committed(rs)
        terms = manifest["terms"]
        if term is not None and term not in terms:
            raise DataError(f"unknown term {term!r}; these results have {terms}")
        day = parse_date(manifest["results"]["last"] if date is None else date)
        month, iso = day.strftime("%Y-%m"), str(day.date())
        views = []
        for files in group_files(manifest).values():
            base = files.months.get(month)
            covered = base is not None and base["first"] <= iso <= base["last"]
            if covered or any(o["first"] is not None and o["first"] <= iso <= o["last"]
                              for o in applicable(files.overlays, month, base)):
                views.append(GroupView(rs, files, terms, iso, iso))
        cols = ["asset"] + [estimate_column(t) for t in terms]
        parts = _read_months(views, month, [("date", "=", day.date())], cols)
        return manifest, day, parts

    manifest, day, parts = retrying(read, str(rs.path))
    rows = sum(p.num_rows for p in parts)
    if rows == 0:
        res = manifest["results"]
        raise DataError(f"no results for {day.date()} in {rs.path} "
                        f"(results cover {res['first']} to {res['last']}, trading days only)")
    terms = manifest["terms"]
    factors = [t for t in terms if t != "alpha"]
    table = pa.concat_tables([p.cast(p.schema) for p in parts]) if len(parts) > 1 else parts[0]
    assets = pd.Index(np.asarray(table.column("asset").to_pandas().astype(str), dtype=object),
                      name="asset")
    pick = [term] if term is not None else (factors if len(factors) != 1 else factors[:1])
    wide = pd.DataFrame({t: table.column(estimate_column(t)).to_numpy() for t in pick},
                        index=assets)
    wide.columns.name = "term"
    out = wide[pick[0]].rename(pick[0]) if len(pick) == 1 and (term is not None or len(factors) == 1) \
        else wide
    out = out.sort_index()
    out.attrs["date"] = day
    return out


def _range(start, end) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    lo = None if start is None else parse_date(start, "start")
    hi = None if end is None else parse_date(end, "end")
    if lo is not None and hi is not None and lo > hi:
        raise DataError(f"start {lo.date()} is after end {hi.date()}")
    return lo, hi


def _asset_list(assets: Iterable[str] | str | None) -> list[str] | None:
    if assets is None:
        return None
    if isinstance(assets, str):
        assets = [assets]
    out = [str(a) for a in assets]
    if not out:
        raise DataError("empty asset list")
    return out


def read_table(out_dir: str | os.PathLike, start=None, end=None, assets=None) -> tuple[pa.Table, dict]:
    """The part-file rows between ``start`` and ``end`` (inclusive) of ``assets`` (default all),
    as one arrow table (see ``encoding``), and the manifest. Reads only the months overlapping
    the range, of the groups that hold the assets."""
    rs = open_results(out_dir)
    lo, hi = _range(start, end)
    wanted = _asset_list(assets)

    def read():
        manifest = committed(rs)
        groups: list[int] = list(range(len(manifest["groups"])))
        if wanted is not None:
            where = {a: g for g, grp in enumerate(manifest["groups"]) for a in grp["assets"]}
            unknown = [a for a in wanted if a not in where]
            if unknown:
                raise DataError(f"no results for asset{'s' if len(unknown) > 1 else ''} "
                                f"{', '.join(unknown[:10])} in {rs.path}")
            groups = sorted({where[a] for a in wanted})
        files = group_files(manifest)
        lo_iso = None if lo is None else str(lo.date())
        hi_iso = None if hi is None else str(hi.date())
        views = [GroupView(rs, files[g], manifest["terms"], lo_iso, hi_iso) for g in groups if g in files]
        filters = [f for f in (None if lo is None else ("date", ">=", lo.date()),
                               None if hi is None else ("date", "<=", hi.date())) if f is not None]
        return manifest, _read_months(views, None, filters or None)

    manifest, parts = retrying(read, str(rs.path))
    schema = file_schema(manifest["terms"])
    table = pa.concat_tables([p.cast(schema) for p in parts]) if parts else schema.empty_table()
    if wanted is not None and table.num_rows:
        table = table.filter(pc.is_in(table.column("asset").cast(pa.string()),
                                      value_set=pa.array(wanted, pa.string())))
    return table, manifest


def read_tidy(out_dir: str | os.PathLike, start=None, end=None, assets=None) -> tuple[pd.DataFrame, dict]:
    """The public tidy rows (``date, asset, term, estimate, std_error, t_stat, p_value, r2,
    resid_vol, nobs, converged, n_iter``, sorted by date, asset, term) between ``start`` and
    ``end`` (inclusive) of ``assets`` (default all), and the result set's manifest. ``t_stat``
    and ``p_value`` are formed from the stored estimates (nothing more is stored)."""
    from quantfit.results import FitMeta

    table, manifest = read_table(out_dir, start, end, assets)
    return to_tidy(table, manifest["terms"], FitMeta.from_dict(manifest["meta"])), manifest


def read_results(out_dir: str | os.PathLike, start=None, end=None, *, assets=None,
                 last_years: float | None = None):
    """A ``RollingFit`` of the results between ``start`` and ``end`` (of ``assets``).

    ``last_years=N`` reads only the N·365.25 days up to the last result date (instead of
    ``start``): what a report needs, without loading decades of results.

    The fit has the requested assets (default: the result set's current universe, sorted; an
    asset dropped from the universe is still readable by name) and the dates with at least one
    estimate; windows without an estimate are NaN with ``nobs`` 0. ``fit.meta`` is the run's
    fit metadata, with ``key`` and ``params`` of the result set in ``meta.origin``.
    """
    from quantfit.results import FitMeta, RollingFit

    if last_years is not None:
        if start is not None:
            raise DataError("read_results: give start or last_years, not both")
        if not (isinstance(last_years, (int, float)) and not isinstance(last_years, bool)
                and 0 < last_years <= 500):
            raise DataError(f"last_years must be a number of years in (0, 500], got {last_years!r}")
        last = committed(open_results(out_dir))["results"]["last"]
        start = pd.Timestamp(last) - pd.DateOffset(days=round(365.25 * last_years))
    table, manifest = read_table(out_dir, start, end, assets)
    if assets is None:  # assets dropped from the universe are read only when asked for
        names = pa.array(manifest["universe"], pa.string())
        table = table.filter(pc.is_in(table.column("asset").cast(pa.string()), value_set=names))
    if table.num_rows == 0:
        raise DataError(f"no results between {start or 'the start'} and {end or 'the end'} in {out_dir}")
    w = to_windows(table, manifest["terms"])
    wanted = sorted(_asset_list(assets) or manifest["universe"])
    if list(w.assets) != wanted:  # assets without any row in the range: all-NaN columns
        pos = pd.Index(wanted).get_indexer(w.assets)
        w = replace(w, assets=pd.Index(wanted, dtype=object, name="asset"),
                    asset_pos=pos[w.asset_pos].astype(np.int64))
    origin = {"key": manifest["key"], "params": manifest["params"]}
    meta = FitMeta.from_dict(dict(manifest["meta"], origin=origin))
    return RollingFit.from_windows(w, meta=meta)
