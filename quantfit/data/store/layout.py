"""Rows in memory and in files: the price store's data files and how history is cut into them.

A store's rows are split twice:

* by **bucket** of tickers, ``crc32(ticker) % buckets`` (fixed when the store is created): a
  file only ever holds tickers of one bucket, so a chunk of tickers reads only its buckets;
* by **calendar years** within a bucket: a *segment* owns whole years ``[year(start),
  year(end)]`` of its bucket (segments of a bucket never share a year), and grows over
  consecutive years until it holds ``SEGMENT_ROWS`` rows; a *delta* holds rows written since
  (any dates; it overrides segments and older deltas of its bucket).

Every file is parquet: ``date`` (date32), ``ticker`` (dictionary string), ``close``,
``volume`` (float64, NaN = unknown), sorted by (ticker, date), lz4, with page CRCs (a reader
notices a damaged page) and row groups of ``ROW_GROUP_ROWS``. In memory the same data is ``Rows``: numpy arrays with days
since 1970-01-01 and ticker codes into a sorted array of names.
"""

from __future__ import annotations

import io
import os
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quantfit import _atomic
from quantfit.errors import DataError

DATA_DIR = "data"
FIELDS = ("close", "volume")

#: A segment grows over consecutive years until it has at least this many rows: one year per
#: segment for a bucket of ~100+ tickers, several years for small stores (few, larger files).
SEGMENT_ROWS = 25_000
#: Rows per parquet row group (sorted by ticker, so ~32 tickers' year each): reading a few
#: tickers skips the row groups whose ticker range (parquet statistics) cannot hold them.
#: (Smaller groups skip more but write and read slower; see README, Benchmarks.)
ROW_GROUP_ROWS = 8192

SCHEMA = pa.schema([
    ("date", pa.date32()),
    ("ticker", pa.dictionary(pa.int32(), pa.string())),
    ("close", pa.float64()),
    ("volume", pa.float64()),
])

_NO_NAMES = np.array([], dtype=object)


def bucket_of(ticker: str, buckets: int) -> int:
    """Stable bucket number of a ticker (crc32, so it never depends on Python's hash seed)."""
    return zlib.crc32(ticker.encode("utf-8")) % buckets


def years_of(days: np.ndarray) -> np.ndarray:
    """Calendar year of each day number."""
    return np.asarray(days, dtype="datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


def day_text(day: int) -> str:
    return str(np.datetime64(int(day), "D"))


@dataclass
class Rows:
    """Price rows of some tickers: parallel arrays, ``code`` indexing ``names`` (sorted, unique).

    ``close``/``volume`` may be None when a reader asked for one field only.
    """

    names: np.ndarray          # (n_names,) object: sorted unique tickers
    code: np.ndarray           # (n,) int32
    day: np.ndarray            # (n,) int32, days since 1970-01-01
    close: np.ndarray | None   # (n,) float64
    volume: np.ndarray | None  # (n,) float64

    def __len__(self) -> int:
        return len(self.code)

    @staticmethod
    def empty() -> Rows:
        return Rows(_NO_NAMES, np.empty(0, np.int32), np.empty(0, np.int32),
                    np.empty(0), np.empty(0))

    def take(self, idx) -> Rows:
        def pick(a):
            return None if a is None else a[idx]

        return Rows(self.names, self.code[idx], self.day[idx], pick(self.close), pick(self.volume))

    def keys(self) -> np.ndarray:
        """One int64 per row, ordered like (ticker, date): ``code * 2**32 + day + 2**31``."""
        return (self.code.astype(np.int64) << 32) + (self.day.astype(np.int64) + (1 << 31))

    def with_names(self, names: np.ndarray) -> Rows:
        """The same rows with codes into ``names`` (a sorted superset of ``self.names``)."""
        if names is self.names or (len(names) == len(self.names) and (names == self.names).all()):
            return Rows(names, self.code, self.day, self.close, self.volume)
        remap = np.searchsorted(names, self.names).astype(np.int32)
        return Rows(names, remap[self.code] if len(self.code) else self.code, self.day,
                    self.close, self.volume)

    def compact_names(self) -> Rows:
        """Drop names no row uses (before writing a file)."""
        used = np.flatnonzero(np.bincount(self.code, minlength=len(self.names)))
        if len(used) == len(self.names):
            return self
        remap = np.full(len(self.names), -1, np.int32)
        remap[used] = np.arange(len(used), dtype=np.int32)
        return Rows(self.names[used], remap[self.code], self.day, self.close, self.volume)

    def per_ticker(self):
        """For rows sorted by (code, day): (codes, first day, last day, count) per present code."""
        if not len(self):
            e = np.empty(0, np.int64)
            return e, e, e, e
        starts = np.flatnonzero(np.r_[True, self.code[1:] != self.code[:-1]])
        ends = np.r_[starts[1:], len(self)] - 1
        return (self.code[starts].astype(np.int64), self.day[starts].astype(np.int64),
                self.day[ends].astype(np.int64), (ends - starts + 1).astype(np.int64))


def union_names(parts: Sequence[Rows]) -> np.ndarray:
    first = parts[0].names
    if all(p.names is first for p in parts):
        return first
    return np.unique(np.concatenate([p.names for p in parts]).astype(object))


def combine(parts: Sequence[Rows]) -> Rows:
    """Merge row sets by (ticker, date); where a key repeats, the **last** part wins.

    Returns rows sorted by (ticker, date) with unique keys. Parts are in precedence order
    (segments, then deltas from oldest to newest, then the rows being written).
    """
    parts = [p for p in parts if len(p)]
    if not parts:
        return Rows.empty()
    if len(parts) == 1:  # one file or one input: sorted with unique keys already, unless not
        keys = parts[0].keys()
        if len(keys) < 2 or (keys[1:] > keys[:-1]).all():
            return parts[0]
    names = union_names(parts)
    parts = [p.with_names(names) for p in parts]
    def cat(attr):
        if any(getattr(p, attr) is None for p in parts):
            return None
        return np.concatenate([getattr(p, attr) for p in parts])

    rows = Rows(names, np.concatenate([p.code for p in parts]), np.concatenate([p.day for p in parts]),
                cat("close"), cat("volume"))
    keys = rows.keys()
    order = np.argsort(keys, kind="stable")
    ks = keys[order]
    last = np.r_[ks[1:] != ks[:-1], True] if len(ks) else np.empty(0, bool)
    return rows.take(order[last])


# ----------------------------------------------------------------------------- files
def new_name(kind: str, bucket: int, tag: str) -> str:
    """A fresh file name: ``s007-2019-<id>.parquet`` (segment from 2019), ``d007-g42-<id>``
    (delta of generation 42), ``c-g42-<id>`` (change log)."""
    prefix = {"segment": "s", "delta": "d"}.get(kind)
    head = f"c-{tag}" if prefix is None else f"{prefix}{bucket:03d}-{tag}"
    return f"{head}-{uuid.uuid4().hex[:12]}.parquet"


def encode_table(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    # lz4 rather than zstd: faster to decode for slightly larger files (reads dominate nightly)
    pq.write_table(table, buf, compression="lz4", row_group_size=ROW_GROUP_ROWS, write_page_checksum=True)
    return buf.getvalue()


def write_bytes(root: Path, name: str, data: bytes) -> tuple[int, str]:
    """Write a new data file under ``root/data``; returns (bytes, sha256)."""
    _atomic.write_new_file(root / DATA_DIR / name, data)
    return len(data), _atomic.sha256_bytes(data)


def rows_table(rows: Rows) -> pa.Table:
    rows = rows.compact_names()
    return pa.Table.from_arrays([
        pa.array(rows.day, pa.int32()).cast(pa.date32()),
        pa.DictionaryArray.from_arrays(pa.array(rows.code.astype(np.int32)),
                                       pa.array(list(rows.names), pa.string())),
        pa.array(rows.close, pa.float64()),
        pa.array(rows.volume, pa.float64()),
    ], schema=SCHEMA)


def read_table(root: Path, name: str, columns: Sequence[str], size: int | None,
               tickers: np.ndarray | None = None) -> pa.Table:
    """Read a data file, or raise ``DataError`` naming it when it is truncated or damaged.

    ``tickers`` (sorted): read only the row groups whose ticker range (parquet statistics)
    may hold one of them; rows of other tickers can still come back. ``FileNotFoundError``
    passes through: the caller decides whether a writer removed a superseded file (read the
    manifest again) or the file is missing (damage).
    """
    path = root / DATA_DIR / name
    try:
        actual = os.stat(path).st_size
        if size is not None and actual != size:
            raise DataError(f"data file {path} is {'truncated' if actual < size else 'damaged'} "
                            f"({actual:,} bytes, the manifest says {size:,}); "
                            f"run 'quantfit store verify'")
        # ParquetFile.read: ~0.3 ms less per file than pq.read_table (no dataset discovery)
        pf = pq.ParquetFile(path, read_dictionary=["ticker"], page_checksum_verification=True)
        groups = None if tickers is None else _row_groups(pf, tickers)
        if groups is None:
            return pf.read(columns=list(columns), use_threads=False)
        return pf.read_row_groups(groups, columns=list(columns), use_threads=False)
    except (FileNotFoundError, DataError):
        raise
    except (OSError, pa.ArrowException, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"data file {path} is damaged ({reason}); run 'quantfit store verify'") from None


def _row_groups(pf: pq.ParquetFile, tickers: np.ndarray) -> list[int] | None:
    """Row groups whose [min, max] ticker may hold one of ``tickers``; None: read them all."""
    meta = pf.metadata
    if meta.num_row_groups <= 1:
        return None
    col = pf.schema_arrow.get_field_index("ticker")
    keep = []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(col).statistics
        if stats is None or not stats.has_min_max:
            return None
        lo = np.searchsorted(tickers, stats.min, side="left")
        if lo < len(tickers) and tickers[lo] <= stats.max:
            keep.append(i)
    return keep


def table_rows(table: pa.Table) -> Rows:
    """A file's table -> Rows (close/volume None when not read)."""
    if table.num_rows == 0:
        return Rows.empty()
    tick = table.column("ticker")
    if tick.num_chunks != 1:
        tick = table.unify_dictionaries().column("ticker")
    tick = tick.combine_chunks()
    names = np.asarray(tick.dictionary.to_pylist(), dtype=object)
    code = tick.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    if len(names) > 1 and not (names[1:] > names[:-1]).all():  # not sorted: sort the names
        uniq, inverse = np.unique(names, return_inverse=True)
        names, code = uniq.astype(object), inverse.astype(np.int32)[code]
    day = table.column("date").combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
    def get(f):
        return table.column(f).to_numpy() if f in table.column_names else None

    return Rows(names, code, day.astype(np.int32), get("close"), get("volume"))


# ----------------------------------------------------------------------------- partition
def partition_years(rows: Rows, kept: Sequence[tuple[int, int]],
                    target: int | None = None) -> list[Rows]:
    """Cut a bucket's rows (sorted by ticker, date) into segments of whole calendar years.

    Consecutive years are grouped until a group holds ``target`` rows (``SEGMENT_ROWS``); a
    group never spans a year range in ``kept`` (segments of the bucket that stay as they are).
    Every returned part is sorted by (ticker, date).
    """
    if not len(rows):
        return []
    target = SEGMENT_ROWS if target is None else target
    year = years_of(rows.day)
    y0 = int(year.min())
    counts = np.bincount(year - y0)
    present = np.flatnonzero(counts) + y0
    counts = counts[counts > 0]
    groups: list[tuple[int, int]] = []
    lo, n = int(present[0]), 0
    for i, (y, c) in enumerate(zip(present.tolist(), counts.tolist())):
        n += c
        nxt = int(present[i + 1]) if i + 1 < len(present) else None
        blocked = nxt is not None and any(y < k0 and k1 < nxt for k0, k1 in kept)
        if nxt is None or n >= target or blocked:
            groups.append((lo, y))
            lo, n = (nxt if nxt is not None else 0), 0
    if len(groups) == 1:
        return [rows]
    return [rows.take(np.flatnonzero((year >= g0) & (year <= g1))) for g0, g1 in groups]
