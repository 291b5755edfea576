"""Reading prices: only the files a request needs, assembled into one wide frame.

A request is: tickers (columns), a lower bound per ticker (``lo``, day number; ``NO_LO`` for
none), an upper bound ``hi``, a field, and ``lookback`` (also each ticker's last N rows before
its lower bound). Files are chosen from the manifest alone:

* only the buckets of the requested tickers;
* within a bucket, only segments and deltas whose date range meets some requested ticker's
  range ``[max(lo, first), min(hi, last)]`` (its first/last dates come from the ticker table);
* with ``lookback``, the bucket's segments before the lower bound are read newest first, only
  until every ticker has ``lookback`` rows before its bound (or its history is exhausted):
  the tails of an incremental night read the latest one or two segments of each bucket.

Within a bucket, deltas override segments and newer deltas override older ones (they are
applied in that order).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from quantfit.data.frames import DATE_DTYPE
from quantfit.data.store.layout import bucket_of, read_table, table_rows
from quantfit.data.store.manifest import FileEntry, Manifest, TickerTable
from quantfit.data.dates import parse_date
from quantfit.errors import DataError

NO_LO = np.iinfo(np.int64).min // 4
NO_HI = np.iinfo(np.int64).max // 4
_WORKERS = 4


def _overlaps(f: FileEntry, lo: np.ndarray, hi: np.ndarray) -> bool:
    """Does file ``f`` meet any of the ranges ``[lo_i, hi_i]``?"""
    return bool(((f.start <= hi) & (f.end >= lo) & (lo <= hi)).any())


def _read_part(root: Path, f: FileEntry, field: str, col_of: dict, hi: int, names: np.ndarray):
    """One file's rows of the wanted tickers ``names`` (sorted) up to ``hi``: (day, col, value)."""
    rows = table_rows(read_table(root, f.name, ["date", "ticker", field], f.bytes, names))
    if not len(rows):
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    remap = np.array([col_of.get(t, -1) for t in rows.names], dtype=np.int64)
    col = remap[rows.code]
    keep = (col >= 0) & (rows.day <= hi)
    vals = rows.close if field == "close" else rows.volume
    return rows.day[keep].astype(np.int64), col[keep], vals[keep]


def _bucket_plan(m: Manifest, bucket: int, cols: np.ndarray, lo: np.ndarray, hi: int,
                 first: np.ndarray, last: np.ndarray, lookback: int):
    """Files of one bucket to read before any lookback: (segments, deltas, older segments)."""
    segs, deltas = m.bucket_files(bucket)
    r_lo, r_hi = np.maximum(lo[cols], first[cols]), np.minimum(hi, last[cols])
    base = [s for s in segs if _overlaps(s, r_lo, r_hi)]
    if lookback:
        # Any delta may hold rows before the bound that replace or add to the tail.
        d_sel = [d for d in deltas if _overlaps(d, first[cols], r_hi)]
        older = [s for s in reversed(segs) if s not in base]
    else:
        d_sel = [d for d in deltas if _overlaps(d, r_lo, r_hi)]
        older = []
    return base, d_sel, older


def read_wide(root: Path, m: Manifest, wanted: np.ndarray, lo: np.ndarray, hi: int | None,
              field: str, lookback: int = 0) -> pd.DataFrame:
    """Wide frame (DatetimeIndex ``date`` x ``wanted``) of a validated request (module doc).

    ``wanted``: sorted known tickers; ``lo``: per-ticker lower bounds (``NO_LO``: none).
    """
    hi_day = NO_HI if hi is None else hi
    col_of = {t: i for i, t in enumerate(wanted.tolist())}
    pos = m.tickers.positions(wanted)
    first, last = m.tickers.first[pos], m.tickers.last[pos]
    buckets = np.array([bucket_of(t, m.buckets) for t in wanted.tolist()], dtype=np.int64)
    plans = {int(b): _bucket_plan(m, int(b), np.flatnonzero(buckets == b), lo, hi_day, first, last,
                                  lookback) for b in np.unique(buckets)}

    def bucket_parts(b: int):
        base, d_sel, older = plans[b]
        cols = np.flatnonzero(buckets == b)
        names = wanted[cols]
        if not lookback:
            return [_read_part(root, f, field, col_of, hi_day, names) for f in [*base, *d_sel]]
        # Segments newest first; each keeps its rows from the bound on and, per ticker, only
        # as many rows before the bound as are still needed (``cut``: the oldest day kept once
        # enough are found). Deltas may add rows: they keep what is not older than ``cut``,
        # and the exact cut is made once everything is assembled.
        need = np.full(len(wanted), lookback, np.int64)
        cut = np.full(len(wanted), NO_LO, np.int64)
        parts = []
        for s in sorted(base, key=lambda f: -f.start) + older:
            if s not in base:
                want = cols[(need[cols] > 0) & (first[cols] <= s.end)
                            & (s.start < np.minimum(lo[cols], last[cols] + 1))]
                if not len(want):
                    continue
            parts.append(_keep_needed(_read_part(root, s, field, col_of, hi_day, names), lo, need, cut))
        for f in d_sel:
            d, c, v = _read_part(root, f, field, col_of, hi_day, names)
            k = d >= cut[c]
            parts.append((d[k], c[k], v[k]))
        return parts

    order = sorted(plans)
    with ThreadPoolExecutor(max_workers=max(1, min(_WORKERS, len(order)))) as pool:
        parts = [p for ps in pool.map(bucket_parts, order) for p in ps]
    if not lookback:  # apply the lower bounds now (with lookback: after assembling)
        parts = [(d[k], c[k], v[k]) for d, c, v in parts for k in [d >= lo[c]]]
    days, where = _union_days([p[0] for p in parts])
    out = np.full((len(days), len(wanted)), np.nan)
    present = np.zeros(out.shape, bool) if lookback else None
    for d, c, v in parts:  # precedence order within each bucket; buckets own distinct columns
        r = where(d)
        out[r, c] = v
        if present is not None:
            present[r, c] = True
    if lookback:
        out, days = _trim_lookback(out, present, days, lo, lookback)
    index = pd.DatetimeIndex(days.astype("datetime64[D]").astype(DATE_DTYPE), name="date")
    return pd.DataFrame(out, index=index, columns=pd.Index(wanted.tolist(), dtype=object))


def _keep_needed(part, lo: np.ndarray, need: np.ndarray, cut: np.ndarray):
    """A segment's rows (sorted by column, then day) from each column's bound on, plus its last
    ``need[c]`` rows before the bound. Updates ``need`` (rows still wanted before the bound) and
    ``cut`` (for columns now complete: the oldest day kept)."""
    day, col, val = part
    if not len(day):
        return part
    before = day < lo[col]
    n_before = np.bincount(col[before], minlength=len(need))
    start = np.searchsorted(col, np.arange(len(need)))           # each column's first row
    first_kept = start + np.maximum(n_before - need, 0)          # skip the oldest surplus
    keep = np.arange(len(day)) >= first_kept[col]
    done = (need > 0) & (n_before >= need)
    cut[done] = day[np.minimum(first_kept[done], len(day) - 1)]
    need -= np.minimum(need, n_before)
    return day[keep], col[keep], val[keep]


def _union_days(day_arrays):
    """Sorted distinct days of all parts, and a function mapping days to their row."""
    if not day_arrays or not sum(len(d) for d in day_arrays):
        return np.empty(0, np.int64), (lambda d: np.zeros(len(d), np.int64))
    lo = min(int(d.min()) for d in day_arrays if len(d))
    hi = max(int(d.max()) for d in day_arrays if len(d))
    seen = np.zeros(hi - lo + 1, bool)  # a bitmap over the day range: no sort needed
    for d in day_arrays:
        seen[d - lo] = True
    row = np.cumsum(seen) - 1
    return np.flatnonzero(seen) + lo, (lambda d: row[d - lo])


def _trim_lookback(out: np.ndarray, present: np.ndarray, days: np.ndarray, lo: np.ndarray,
                   lookback: int):
    """Keep, per column, its rows from ``lo`` on and its last ``lookback`` rows before ``lo``."""
    before = days[:, None] < lo[None, :]
    mine = present & before
    over = np.flatnonzero(mine.sum(axis=0) > lookback)  # segments were cut already: only
    if len(over):                                       # rows that deltas added can be extra
        sub = mine[:, over]
        rank = np.cumsum(sub[::-1], axis=0, dtype=np.int32)[::-1]  # 1 = the row just before lo
        drop = sub & (rank > lookback)
        out[:, over] = np.where(drop, np.nan, out[:, over])
        present[:, over] &= ~drop
    keep = present.any(axis=1)
    return out[keep], days[keep]


# ----------------------------------------------------------------------------- requests
def day_of(ts: pd.Timestamp | None) -> int | None:
    return None if ts is None else int(np.datetime64(ts.date(), "D").astype(np.int64))


def lower_bounds(wanted: np.ndarray, bounds, hi: pd.Timestamp | None) -> np.ndarray:
    """Per requested ticker, its lower bound as a day number (``NO_LO``: none)."""
    if not isinstance(bounds, dict):
        return np.full(len(wanted), NO_LO if bounds is None else day_of(bounds), np.int64)
    missing = [t for t in wanted.tolist() if t not in bounds]
    if missing:
        raise DataError(f"start has no date for {', '.join(missing[:10])}"
                        + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
    late = [t for t in wanted.tolist() if hi is not None and bounds[t] is not None and bounds[t] > hi]
    if late:
        raise DataError(f"start {bounds[late[0]].date()} for {late[0]} is after end {hi.date()}")
    return np.array([NO_LO if bounds[t] is None else day_of(bounds[t]) for t in wanted.tolist()], np.int64)


def parse_bound(value, what: str) -> pd.Timestamp | None:
    """A user-supplied date bound -> tz-naive midnight Timestamp (the data layer's date rules,
    ``quantfit.data.dates.parse_date``), or None."""
    return None if value is None else parse_date(value, f"{what} date")


def v1_ticker_table(root: Path, m: Manifest) -> TickerTable:
    """Exact per-ticker first/last/rows of a v1 store (whose manifest has none), from its files."""
    parts = []
    for f in m.files:
        rows = table_rows(read_table(root, f.name, ["date", "ticker"], None))
        rows = rows.take(np.lexsort((rows.day, rows.code)))
        codes, first, last, count = rows.per_ticker()
        parts.append((rows.names[codes], first, last, count))
    return TickerTable.from_parts(parts, m.generation)
