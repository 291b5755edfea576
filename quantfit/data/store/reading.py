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
from quantfit.data.store.manifest import FileEntry, Manifest

NO_LO = np.iinfo(np.int64).min // 4
NO_HI = np.iinfo(np.int64).max // 4
_WORKERS = 4


def _overlaps(f: FileEntry, lo: np.ndarray, hi: np.ndarray) -> bool:
    """Does file ``f`` meet any of the ranges ``[lo_i, hi_i]``?"""
    return bool(((f.start <= hi) & (f.end >= lo) & (lo <= hi)).any())


def _read_part(root: Path, f: FileEntry, field: str, col_of: dict, hi: int):
    """One file's rows of the wanted tickers up to ``hi``: (day, col, value)."""
    rows = table_rows(read_table(root, f.name, ["date", "ticker", field], f.bytes))
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
        seg_parts = [_read_part(root, f, field, col_of, hi_day) for f in base]
        if lookback:
            cols = np.flatnonzero(buckets == b)
            have = np.zeros(len(wanted), np.int64)
            for day, col, _ in seg_parts:
                have += np.bincount(col[day < lo[col]], minlength=len(wanted))
            for s in older:  # newest first
                need = cols[(have[cols] < lookback) & (first[cols] <= s.end)
                            & (s.start < np.minimum(lo[cols], last[cols] + 1))]
                if not len(need):
                    continue
                part = _read_part(root, s, field, col_of, hi_day)
                seg_parts.append(part)
                have += np.bincount(part[1][part[0] < lo[part[1]]], minlength=len(wanted))
        return seg_parts + [_read_part(root, f, field, col_of, hi_day) for f in d_sel]

    order = sorted(plans)
    with ThreadPoolExecutor(max_workers=max(1, min(_WORKERS, len(order)))) as pool:
        parts = [p for ps in pool.map(bucket_parts, order) for p in ps]
    if not lookback:  # apply the lower bounds now (with lookback: after assembling)
        parts = [(d[k], c[k], v[k]) for d, c, v in parts for k in [d >= lo[c]]]
    days = np.unique(np.concatenate([p[0] for p in parts])) if parts else np.empty(0, np.int64)
    out = np.full((len(days), len(wanted)), np.nan)
    present = np.zeros(out.shape, bool) if lookback else None
    for d, c, v in parts:  # precedence order within each bucket; buckets own distinct columns
        r = np.searchsorted(days, d)
        out[r, c] = v
        if present is not None:
            present[r, c] = True
    if lookback:
        out, days = _trim_lookback(out, present, days, lo, lookback)
    index = pd.DatetimeIndex(days.astype("datetime64[D]").astype(DATE_DTYPE), name="date")
    return pd.DataFrame(out, index=index, columns=pd.Index(wanted.tolist(), dtype=object))


def _trim_lookback(out: np.ndarray, present: np.ndarray, days: np.ndarray, lo: np.ndarray,
                   lookback: int):
    """Keep, per column, its rows from ``lo`` on and its last ``lookback`` rows before ``lo``."""
    before = days[:, None] < lo[None, :]
    mine = present & before
    # rows before the bound, counted from the bound backwards (1 = the row just before it)
    rank = np.cumsum(mine[::-1], axis=0)[::-1]
    drop = mine & (rank > lookback)
    out[drop] = np.nan
    present &= ~drop
    keep = present.any(axis=1)
    return out[keep], days[keep]
