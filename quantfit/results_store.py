"""Result sets on disk: the nightly output of ``quantfit refresh``, and the readers strategies use.

    >>> qf.read_betas("data/results")                  # latest date: Series asset -> beta
    >>> qf.read_betas("data/results", "2024-06-28")    # one date, reads one month's file
    >>> fit = qf.read_results("data/results", start="2024-01-01")   # a RollingFit

Layout under an output directory ``out``::

    out/LATEST                       the key of the result set written most recently
    out/<key>/manifest.json          the commit point: parameters, live files, counts, warnings
    out/<key>/.lock                  fcntl lock; a writer holds it exclusively
    out/<key>/month=YYYY-MM/part-g<generation>-<uuid>.parquet

``<key>`` is a short hash of the fit's parameters (regressors, window, half-life, solver, loss,
precision), so each parameter set has its own result set and changing a parameter never
touches another set's files. Every month with results has exactly one live file, named in the
manifest; it holds the tidy table ``date, asset, term, estimate, std_error, t_stat, r2,
resid_vol, nobs, converged, n_iter`` (date32, strings, float64, int32, bool, int32) sorted by
date, asset and term, with one row per (date, asset, term) that has an estimate. Estimates and
standard errors are in the units of the regression (daily decimal returns: α per day, β
unitless); ``resid_vol`` is per day; ``nobs`` counts the valid rows of the window.

Guarantees (the same recipe as ``PriceStore``): data files are immutable and get fresh names;
a writer fsyncs them, then replaces ``manifest.json`` atomically (temp + fsync + ``os.replace``)
and only then deletes superseded files. Readers trust only the manifest, so they see the old
result set or the new one, never a mix, and retry if a writer deletes a file under them.
Files left by a killed writer are deleted by the next writer (under the lock).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import time
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from quantfit._atomic import (exclusive_lock, fsync_dir, read_manifest, remove_temp_files,
                              write_json_atomic)
from quantfit.data.dates import parse_date
from quantfit.errors import DataError
from quantfit.results import FitMeta, RollingFit

FORMAT = "quantfit-results"
VERSION = 1
MANIFEST = "manifest.json"
LATEST = "LATEST"
LOCK_FILE = ".lock"
DATE_DTYPE = "datetime64[us]"  # the price store's date dtype, so indexes line up

SCHEMA = pa.schema([
    ("date", pa.date32()), ("asset", pa.string()), ("term", pa.string()),
    ("estimate", pa.float64()), ("std_error", pa.float64()), ("t_stat", pa.float64()),
    ("r2", pa.float64()), ("resid_vol", pa.float64()), ("nobs", pa.int32()),
    ("converged", pa.bool_()), ("n_iter", pa.int32()),
])


# ----------------------------------------------------------------------------- tidy tables
def tidy_table(fit: RollingFit) -> pa.Table:
    """The tidy rows of ``fit`` (windows with an estimate) as an arrow table in ``SCHEMA``.

    Row order is ``fit.to_frame()``'s (``RollingFit.tidy``, the one tidy conversion):
    date-major, then the fit's asset order, then its terms.
    """
    cols = fit.tidy("estimate")
    days = pd.DatetimeIndex(cols["date"]).values.astype("datetime64[D]")
    return pa.Table.from_arrays([
        pa.array(days, pa.date32()),
        pa.array(cols["asset"].astype(str), pa.string()),
        pa.array(cols["term"].astype(str), pa.string()),
        *(pa.array(cols[c].astype(np.float64), pa.float64())
          for c in ("estimate", "std_error", "t_stat", "r2", "resid_vol")),
        pa.array(cols["nobs"].astype(np.int32), pa.int32()),
        pa.array(cols["converged"].astype(bool), pa.bool_()),
        pa.array(cols["n_iter"].astype(np.int32), pa.int32()),
    ], schema=SCHEMA)


def split_by_month(table: pa.Table) -> dict[str, pa.Table]:
    """Cut a date-sorted tidy table into ``{"YYYY-MM": rows of that month}`` (zero-copy slices)."""
    if table.num_rows == 0:
        return {}
    months = table.column("date").to_numpy().astype("datetime64[M]")
    starts = np.flatnonzero(np.r_[True, months[1:] != months[:-1]])
    ends = np.r_[starts[1:], len(months)]
    return {str(months[s]): table.slice(int(s), int(e - s)) for s, e in zip(starts, ends)}


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    """A tidy arrow table -> pandas (dates as ``datetime64[us]``, assets and terms as str)."""
    frame = table.to_pandas()
    frame["date"] = pd.to_datetime(frame["date"]).astype(DATE_DTYPE)
    return frame


# ----------------------------------------------------------------------------- a result set
class ResultSet:
    """One result set directory (``out/<key>``): manifest, month files, lock (see module doc)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ResultSet({str(self.path)!r})"

    def read_manifest(self) -> dict | None:
        """The committed manifest, or None when nothing was committed here yet."""
        return read_manifest(self.path / MANIFEST, FORMAT, VERSION, "results")

    @contextlib.contextmanager
    def lock(self, on_wait=None) -> Iterator[None]:
        """Exclusive writer lock on this result set (created on first use)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.path / LOCK_FILE, on_wait=on_wait):
            yield

    def remove_orphans(self, manifest: dict | None) -> int:
        """Delete month files the manifest does not name (left by killed writers). Lock held.

        Returns the number of files removed.
        """
        live = {e["file"] for e in (manifest or {}).get("files", {}).values()}
        removed = 0
        for d in os.scandir(self.path):
            if not (d.is_dir() and d.name.startswith("month=")):
                continue
            for f in os.scandir(d.path):
                if f"{d.name}/{f.name}" not in live:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f.path)
                        removed += 1
            with contextlib.suppress(OSError):  # only succeeds when the month is now empty
                os.rmdir(d.path)
        remove_temp_files(self.path, MANIFEST)
        return removed

    def write_month(self, month: str, table: pa.Table, generation: int) -> dict:
        """Write one month's rows to a fresh, fsynced file; returns its manifest entry."""
        folder = self.path / f"month={month}"
        folder.mkdir(exist_ok=True)
        name = f"month={month}/part-g{generation}-{uuid.uuid4().hex[:12]}.parquet"
        with open(self.path / name, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        dates = table.column("date")
        return {"file": name, "rows": table.num_rows,
                "first": str(dates[0].as_py()), "last": str(dates[-1].as_py())}

    def read_month(self, entry: dict, date: _dt.date | None = None) -> pa.Table:
        """Rows of one month file (only those of ``date`` when given, via a pyarrow filter)."""
        filters = [("date", "=", date)] if date is not None else None
        return pq.read_table(self.path / entry["file"], filters=filters, use_threads=False)

    def commit(self, manifest: dict, superseded: list[str]) -> None:
        """Make ``manifest`` the committed state, then delete the superseded files. Lock held."""
        for d in {Path(e["file"]).parent for e in manifest["files"].values()}:
            fsync_dir(self.path / d)
        write_json_atomic(self.path / MANIFEST, manifest, indent=1)  # the commit point
        for name in superseded:  # after the commit: a crash here leaves orphans only
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path / name)
        for d in {Path(n).parent for n in superseded}:
            with contextlib.suppress(OSError):
                os.rmdir(self.path / d)


def write_latest(out_dir: str | os.PathLike, key: str) -> bool:
    """Point ``out/LATEST`` at ``key`` (atomically); returns False when it already did."""
    path = Path(out_dir) / LATEST
    with contextlib.suppress(FileNotFoundError):
        if path.read_text().strip() == key:
            return False
    tmp = path.with_name(f"{LATEST}.tmp-{uuid.uuid4().hex}")
    with open(tmp, "w") as fh:
        fh.write(key + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return True


# ----------------------------------------------------------------------------- readers
def open_results(out_dir: str | os.PathLike) -> ResultSet:
    """The result set of ``out_dir``: the one ``out_dir/LATEST`` names, or ``out_dir`` itself
    when it is a result set directory. ``DataError`` when there are no results there."""
    out = Path(out_dir)
    if (out / MANIFEST).exists():
        return ResultSet(out)
    try:
        key = (out / LATEST).read_text().strip()
    except FileNotFoundError:
        if not out.exists():
            raise DataError(f"no results at {out} (run 'quantfit refresh --out {out}' first)") from None
        raise DataError(f"{out} holds no quantfit results (no {LATEST} or {MANIFEST})") from None
    except NotADirectoryError:
        raise DataError(f"results path {out} is not a directory") from None
    rs = ResultSet(out / key)
    if not (rs.path / MANIFEST).exists():
        raise DataError(f"{out / LATEST} names result set {key!r}, which has no {MANIFEST}")
    return rs


def _committed(rs: ResultSet) -> dict:
    manifest = rs.read_manifest()
    if manifest is None:
        raise DataError(f"{rs.path} holds no committed results")
    if not manifest["files"]:
        raise DataError(f"{rs.path} holds no estimates (every window had too few observations)")
    return manifest


def _parse_date(value, what: str = "date") -> pd.Timestamp:
    """A date given by the user: the data layer's rules (ISO or another unambiguous text form,
    a ``YYYYMMDD`` integer, a Timestamp/datetime/date as its local calendar date)."""
    return parse_date(value, what)


def _retrying(read, what: str):
    """Run ``read()``; retry when a concurrent writer deleted a file we were about to read."""
    for attempt in range(20):
        try:
            return read()
        except FileNotFoundError:
            time.sleep(0.01 * (attempt + 1))
    raise DataError(f"{what} kept changing while reading; try again")


def read_betas(out_dir: str | os.PathLike, date=None, term: str | None = None) -> pd.Series | pd.DataFrame:
    """The estimates of one date from a results directory, in one call (reads one month file).

    Parameters
    ----------
    out_dir : the ``--out`` directory of ``quantfit refresh`` (its ``LATEST`` result set is
        read), or one result set directory ``out/<key>``.
    date : the date to read: ISO text (``"2024-06-28"``) or another unambiguous form, a
        ``YYYYMMDD`` integer (``20240628``), a Timestamp/datetime/date (its local calendar
        date); ambiguous text such as ``"05.07.2024"`` is refused. Default: the latest date
        with results.
    term : one term (a factor name, or ``"alpha"``). Default: every factor (not ``"alpha"``).

    Returns
    -------
    A Series indexed by asset (sorted) when one term is asked for or the fit has one factor
    (``name`` = the term), otherwise a DataFrame assets × factors. The date read is in
    ``.attrs["date"]``. Assets without an estimate on that date are absent.

    Raises
    ------
    DataError when ``out_dir`` holds no results, the date has no results (the message gives
    the range that has), or ``term`` is not one of the fit's terms.
    """
    rs = open_results(out_dir)

    def read():
        manifest = _committed(rs)
        first, last = manifest["results"]["first"], manifest["results"]["last"]
        day = _parse_date(last if date is None else date)
        entry = manifest["files"].get(day.strftime("%Y-%m"))
        table = rs.read_month(entry, day.date()) if entry is not None else None
        if table is None or table.num_rows == 0:
            raise DataError(f"no results for {day.date()} in {rs.path} "
                            f"(results cover {first} to {last}, trading days only)")
        return manifest, day, table

    manifest, day, table = _retrying(read, str(rs.path))
    terms = manifest["terms"]
    factors = [t for t in terms if t != "alpha"]
    if term is not None and term not in terms:
        raise DataError(f"unknown term {term!r}; these results have {terms}")
    frame = table.to_pandas()
    wide = frame.pivot(index="asset", columns="term", values="estimate")
    wide.index = pd.Index(wide.index.astype(str), dtype=object, name="asset")
    wide.columns.name = "term"
    if term is not None or len(factors) == 1:
        out = wide[term or factors[0]].rename(term or factors[0])
    else:
        out = wide[factors]
    out = out.sort_index()
    out.attrs["date"] = day
    return out


def read_tidy(out_dir: str | os.PathLike, start=None, end=None) -> tuple[pd.DataFrame, dict]:
    """The tidy rows between ``start`` and ``end`` (inclusive) and the result set's manifest.

    Only the month files overlapping the range are read.
    """
    rs = open_results(out_dir)
    lo = None if start is None else _parse_date(start, "start")
    hi = None if end is None else _parse_date(end, "end")
    if lo is not None and hi is not None and lo > hi:
        raise DataError(f"start {lo.date()} is after end {hi.date()}")

    def read():
        manifest = _committed(rs)
        parts = []
        for month in sorted(manifest["files"]):
            entry = manifest["files"][month]
            if (lo is not None and entry["last"] < str(lo.date())) or \
               (hi is not None and entry["first"] > str(hi.date())):
                continue
            filters = []
            if lo is not None:
                filters.append(("date", ">=", lo.date()))
            if hi is not None:
                filters.append(("date", "<=", hi.date()))
            parts.append(pq.read_table(rs.path / entry["file"], filters=filters or None,
                                       use_threads=False))
        return manifest, parts

    manifest, parts = _retrying(read, str(rs.path))
    table = pa.concat_tables(parts) if parts else SCHEMA.empty_table()
    return table_to_frame(table), manifest


def read_results(out_dir: str | os.PathLike, start=None, end=None, *,
                 last_years: float | None = None) -> RollingFit:
    """Rebuild a ``RollingFit`` from a results directory (optionally only ``start``..``end``).

    ``last_years=N`` reads only the N·365.25 days up to the last result date (instead of ``start``):
    what a report needs, without loading decades of results for thousands of assets.

    The fit has the result set's assets (its universe, sorted) and terms, and the dates that
    have at least one estimate (warm-up dates where no asset has an estimate are not stored);
    windows without an estimate are NaN with ``nobs`` 0. ``settings`` are the fit settings of
    the run (``fit.meta``), with ``key`` and ``params`` of the result set in ``meta.origin``.
    """
    if last_years is not None:
        if start is not None:
            raise DataError("read_results: give start or last_years, not both")
        last = _committed(open_results(out_dir))["results"]["last"]
        if last is not None:
            start = pd.Timestamp(last) - pd.DateOffset(days=round(365.25 * last_years))
    tidy, manifest = read_tidy(out_dir, start, end)
    if tidy.empty:
        raise DataError(f"no results between {start or 'the start'} and {end or 'the end'} in {out_dir}")
    index = pd.DatetimeIndex(pd.unique(tidy["date"]), name="date")  # files are date-sorted
    origin = {"key": manifest["key"], "params": manifest["params"]}
    meta = settings = None
    if "meta" in manifest:
        meta = FitMeta.from_dict(dict(manifest["meta"], origin=origin))
    else:  # a result set written before the typed metadata
        settings = dict(manifest.get("settings", {}), **origin)
    return RollingFit.from_frame(tidy, index=index, assets=pd.Index(manifest["universe"], dtype=object),
                                 terms=list(manifest["terms"]), meta=meta, settings=settings)
