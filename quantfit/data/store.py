"""``PriceStore``: a crash-safe, upserting parquet store of daily prices.

    >>> store = qf.PriceStore("data/store")
    >>> store.ingest(qf.sources.sample())          # long frame: date, ticker, close[, volume]
    >>> store.prices(["AAPL", "SPY"], start="2015-01-01")   # wide: date x ticker, float64

Layout on disk (``path`` is the store directory)::

    manifest.json            the list of live data files (the only thing readers trust)
    .lock                    fcntl lock file; writers hold it exclusively
    data/b007-<uuid>.parquet one immutable file per hash bucket of tickers

Every ticker lives in exactly one bucket, ``crc32(ticker) % buckets`` (64 by default, fixed
when the store is created); a bucket file holds all rows of its tickers sorted by (ticker,
date), with columns ``date`` (date32), ``ticker`` (dictionary string), ``close`` (float64) and
``volume`` (float64, NaN = unknown). An ingest rewrites only the buckets whose content changed,
so adding a few tickers to a 10,000-ticker store rewrites a few files, never everything.

Guarantees:

* **Upsert by (date, ticker).** A new key is added; an existing key with a different value is
  replaced; an identical key is left alone. Re-ingesting the same data writes nothing.
  Columns absent from the input (``volume``) keep their stored values.
* **Validate first.** The whole input is checked (``validate_long``) before the store is
  touched; any problem raises ``DataError`` and leaves every file as it was.
* **Atomic commits.** New bucket files get fresh names and are fsynced; the commit point is an
  ``os.replace`` of ``manifest.json`` (written to a temp file and fsynced first). A process
  killed at any moment leaves the old manifest (old content) or the new one (all new content),
  never a mix. Files left behind by a killed writer are deleted by the next writer.
* **Serialized writers.** ``ingest`` holds an exclusive ``fcntl.flock`` on ``.lock`` from
  reading the manifest to committing it, so concurrent ingests (threads or processes) all land.
  Readers take no lock: they read the manifest, then the files it names, and retry if a
  concurrent writer removed a superseded file in between.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from quantfit._atomic import (exclusive_lock, fsync_dir, read_manifest, remove_temp_files,
                              write_json_atomic)
from quantfit.data.dates import parse_date
from quantfit.data.frames import DATE_DTYPE, day_numbers, row_keys, validate_long
from quantfit.data.tickers import normalize_tickers, unknown_tickers_error
from quantfit.errors import DataError

MANIFEST = "manifest.json"
LOCK_FILE = ".lock"
DATA_DIR = "data"
FORMAT = "quantfit-pricestore"
VERSION = 1
DEFAULT_BUCKETS = 64
FIELDS = ("close", "volume")

_SCHEMA = pa.schema([
    ("date", pa.date32()),
    ("ticker", pa.dictionary(pa.int32(), pa.string())),
    ("close", pa.float64()),
    ("volume", pa.float64()),
])


@dataclass(frozen=True)
class IngestSummary:
    """What one ``PriceStore.ingest`` call did.

    ``rows_added`` keys that were new, ``rows_replaced`` keys whose value changed,
    ``rows_unchanged`` keys already stored with the same value; ``tickers`` all tickers in the
    input (sorted), ``new_tickers`` those the store did not have; ``start``/``end`` the input's
    date range; ``files_written`` bucket files rewritten (0 when nothing changed).
    """

    rows_added: int
    rows_replaced: int
    rows_unchanged: int
    tickers: tuple[str, ...]
    new_tickers: tuple[str, ...]
    start: pd.Timestamp
    end: pd.Timestamp
    files_written: int

    @property
    def changed(self) -> bool:
        return bool(self.rows_added or self.rows_replaced)

    def __str__(self) -> str:
        names = ", ".join(self.tickers[:5]) + (f", ... ({len(self.tickers) - 5} more)" if len(self.tickers) > 5 else "")
        return (f"{len(self.tickers)} ticker{'s' if len(self.tickers) != 1 else ''} ({names}), "
                f"{self.start.date()} to {self.end.date()}: {self.rows_added:,} rows added, "
                f"{self.rows_replaced:,} replaced, {self.rows_unchanged:,} unchanged"
                + (f"; {len(self.new_tickers)} new ticker{'s' if len(self.new_tickers) != 1 else ''}"
                   if self.new_tickers else ""))


def bucket_of(ticker: str, buckets: int) -> int:
    """Stable bucket number of a ticker (crc32, so it never depends on Python's hash seed)."""
    return zlib.crc32(ticker.encode("utf-8")) % buckets


class PriceStore:
    """A directory of parquet files holding daily prices for many tickers (see module doc).

    Parameters
    ----------
    path : store directory; created by the first ``ingest``. Opening a store never writes.
    buckets : number of ticker hash buckets, used only when the store is created; an existing
        store keeps the number recorded in its manifest.
    """

    def __init__(self, path: str | os.PathLike = "data/store", buckets: int = DEFAULT_BUCKETS):
        if not (isinstance(buckets, int) and 1 <= buckets <= 4096):
            raise DataError(f"buckets must be an integer in 1..4096, got {buckets!r}")
        self.path = Path(path)
        self._new_buckets = buckets

    def __repr__(self) -> str:
        return f"PriceStore({str(self.path)!r})"

    # ----------------------------------------------------------------------------- manifest
    def _read_manifest(self) -> dict | None:
        """The committed manifest, or None when nothing was ever committed here."""
        if self.path.exists() and not self.path.is_dir():
            raise DataError(f"store path {self.path} is not a directory")
        return read_manifest(self.path / MANIFEST, FORMAT, VERSION, "store")

    def _commit_manifest(self, manifest: dict) -> None:
        """Atomically replace the manifest: temp file, fsync, rename, fsync directory."""
        write_json_atomic(self.path / MANIFEST, manifest)

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        (self.path / DATA_DIR).mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.path / LOCK_FILE):
            yield

    def _remove_orphans(self, manifest: dict | None) -> None:
        """Delete files no committed manifest names (left by killed writers). Lock held."""
        live = {e["file"] for e in (manifest or {}).get("files", {}).values()}
        for entry in os.scandir(self.path / DATA_DIR):
            if entry.name not in live:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        remove_temp_files(self.path, MANIFEST)

    # ----------------------------------------------------------------------------- reading
    def tickers(self) -> list[str]:
        """All tickers in the store, sorted ([] for an empty or missing store)."""
        manifest = self._read_manifest()
        if manifest is None:
            return []
        return sorted(t for e in manifest["files"].values() for t in e["tickers"])

    def _read_bucket(self, entry: dict, columns: Sequence[str]) -> pa.Table:
        return pq.read_table(self.path / DATA_DIR / entry["file"], columns=list(columns),
                             read_dictionary=["ticker"], use_threads=False)

    def _read_bucket_frame(self, entry: dict) -> pd.DataFrame:
        """One bucket as a long frame (date, ticker categorical, close, volume)."""
        table = self._read_bucket(entry, ["date", "ticker", "close", "volume"])
        tick = table.column("ticker").combine_chunks()
        return pd.DataFrame({
            "date": np.asarray(table.column("date").to_numpy(), dtype="datetime64[D]").astype(DATE_DTYPE),
            "ticker": pd.Categorical.from_codes(tick.indices.to_numpy(zero_copy_only=False).astype(np.int32),
                                                categories=pd.Index(tick.dictionary.to_pylist())),
            "close": table.column("close").to_numpy(),
            "volume": table.column("volume").to_numpy(),
        })

    def prices(self, tickers: Iterable[str] | str | None = None, start=None, end=None,
               field: str = "close") -> pd.DataFrame:
        """Wide prices: DatetimeIndex ``date`` (sorted) x tickers (sorted), float64.

        Parameters
        ----------
        tickers : tickers to return (all when None); an unknown ticker raises ``DataError``
            naming it; names are case-insensitive (``"aapl"`` finds ``AAPL``). A ticker with no
            rows in the date range comes back as an all-NaN column.
        start, end : inclusive date bounds (``quantfit.data.dates.parse_date``: ISO text, a
            Timestamp, a YYYYMMDD integer, ...), optional.
        field : ``"close"`` (adjusted close) or ``"volume"``.

        Rows are the dates on which at least one returned ticker has a row; cells with no row
        are NaN (nothing is filled).
        """
        if field not in FIELDS:
            raise DataError(f"field must be one of {', '.join(FIELDS)}, got {field!r}")
        lo, hi = _parse_bound(start, "start"), _parse_bound(end, "end")
        if lo is not None and hi is not None and lo > hi:
            raise DataError(f"start {lo.date()} is after end {hi.date()}")
        for attempt in range(20):
            manifest = self._read_manifest()
            if manifest is None and not self.path.exists():
                raise DataError(f"no store at {self.path} (create one with ingest)")
            if manifest is None or not manifest["files"]:
                raise DataError(f"store {self.path} is empty: ingest prices first")
            try:
                return self._prices(manifest, tickers, lo, hi, field)
            except FileNotFoundError:
                # A writer replaced a bucket after we read the manifest: read the new one.
                time.sleep(0.01 * (attempt + 1))
        raise DataError(f"store {self.path} kept changing while reading; try again")

    def _prices(self, manifest, tickers, lo, hi, field) -> pd.DataFrame:
        entries = manifest["files"]
        known = {t: b for b, e in entries.items() for t in e["tickers"]}
        if tickers is None:
            wanted = sorted(known)
            want_set = None
        else:
            wanted = sorted(normalize_tickers(tickers))  # upper-cased: "aapl" finds AAPL
            if not wanted:
                raise DataError("empty ticker list")
            unknown = [t for t in wanted if t not in known]
            if unknown:
                raise unknown_tickers_error(unknown, known, f"store {self.path}")
            want_set = set(wanted)
        needed = sorted({known[t] for t in wanted}, key=int)
        lo_d = None if lo is None else int(day_numbers(pd.DatetimeIndex([lo]))[0])
        hi_d = None if hi is None else int(day_numbers(pd.DatetimeIndex([hi]))[0])

        col_of = {t: i for i, t in enumerate(wanted)}

        def load(b: str):
            table = self._read_bucket(entries[b], ["date", "ticker", field])
            days = table.column("date").combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
            tick = table.column("ticker").combine_chunks()
            codes = tick.indices.to_numpy(zero_copy_only=False)
            # Map this file's dictionary to output columns (-1 = not wanted).
            remap = np.array([col_of.get(t, -1) if (want_set is None or t in want_set) else -1
                              for t in tick.dictionary.to_pylist()], dtype=np.int64)
            cols = remap[codes] if len(remap) else np.empty(0, np.int64)
            keep = cols >= 0
            if lo_d is not None:
                keep &= days >= lo_d
            if hi_d is not None:
                keep &= days <= hi_d
            vals = table.column(field).to_numpy()
            return days[keep], cols[keep], vals[keep]

        with ThreadPoolExecutor(max_workers=min(8, max(1, len(needed)))) as pool:
            parts = list(pool.map(load, needed))
        days = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int32)
        cols = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
        vals = np.concatenate([p[2] for p in parts]) if parts else np.empty(0)
        uniq = np.unique(days)
        out = np.full((len(uniq), len(wanted)), np.nan)
        out[np.searchsorted(uniq, days), cols] = vals
        index = pd.DatetimeIndex(uniq.astype("datetime64[D]").astype(DATE_DTYPE), name="date")
        return pd.DataFrame(out, index=index, columns=pd.Index(wanted, dtype=object))

    # ----------------------------------------------------------------------------- writing
    def ingest(self, frame: pd.DataFrame, source: str | None = None) -> IngestSummary:
        """Upsert a long frame (``date, ticker, close[, volume]``) by (date, ticker).

        The frame is validated completely first (``DataError`` on any problem, store
        untouched); then, under the store's write lock, each affected bucket is merged and
        written to a new file, and the manifest is swapped atomically. See the module doc for
        the guarantees. ``source`` only labels error messages.
        """
        clean = validate_long(frame, source=source)
        has_volume = clean.attrs["has_volume"]
        codes = clean["ticker"].cat.codes.to_numpy()
        cats = [str(c) for c in clean["ticker"].cat.categories]
        present = np.bincount(codes, minlength=len(cats)) > 0
        input_tickers = tuple(sorted(c for c, p in zip(cats, present) if p))
        start, end = clean["date"].min(), clean["date"].max()

        with self._write_lock():
            manifest = self._read_manifest() or {
                "format": FORMAT, "version": VERSION, "buckets": self._new_buckets,
                "generation": 0, "files": {}}
            self._remove_orphans(manifest)
            nb = int(manifest["buckets"])
            known = {t for e in manifest["files"].values() for t in e["tickers"]}
            cat_bucket = np.array([bucket_of(c, nb) for c in cats], dtype=np.int64)
            row_bucket = cat_bucket[codes]
            order = np.argsort(row_bucket, kind="stable")
            bounds = np.searchsorted(row_bucket[order], np.arange(nb + 1))

            generation = int(manifest["generation"]) + 1

            def upsert_bucket(b: int):
                part = clean.iloc[order[bounds[b]:bounds[b + 1]]]
                entry = manifest["files"].get(str(b))
                old = self._read_bucket_frame(entry) if entry else None
                merged, a, r, u = _merge(old, part, has_volume)
                return b, (self._write_bucket(b, generation, merged) if a or r else None), a, r, u

            touched = [b for b in range(nb) if bounds[b + 1] > bounds[b]]
            # Buckets are independent; parquet encoding releases the GIL, so threads overlap.
            with ThreadPoolExecutor(max_workers=min(4, len(touched))) as pool:
                results = list(pool.map(upsert_bucket, touched))
            added = sum(r[2] for r in results)
            replaced = sum(r[3] for r in results)
            unchanged = sum(r[4] for r in results)
            new_files: dict[str, dict] = {str(b): e for b, e, *_ in results if e is not None}

            if new_files:
                fsync_dir(self.path / DATA_DIR)
                superseded = [manifest["files"][b]["file"] for b in new_files if b in manifest["files"]]
                manifest = dict(manifest, generation=generation,
                                files={**manifest["files"], **new_files})
                self._commit_manifest(manifest)
                for name in superseded:  # after the commit; a crash here leaves orphans only
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path / DATA_DIR / name)

        return IngestSummary(
            rows_added=added, rows_replaced=replaced, rows_unchanged=unchanged,
            tickers=input_tickers, new_tickers=tuple(t for t in input_tickers if t not in known),
            start=start, end=end, files_written=len(new_files))

    def _write_bucket(self, bucket: int, generation: int, long: pd.DataFrame) -> dict:
        """Write one bucket's rows (sorted by ticker, date) to a fresh, fsynced file."""
        name = f"b{bucket:03d}-g{generation}-{uuid.uuid4().hex[:12]}.parquet"
        tick = long["ticker"].cat.remove_unused_categories()
        days = day_numbers(long["date"]).astype(np.int32)
        table = pa.Table.from_arrays([
            pa.array(days, pa.int32()).cast(pa.date32()),
            pa.DictionaryArray.from_arrays(pa.array(tick.cat.codes.to_numpy().astype(np.int32)),
                                           pa.array([str(c) for c in tick.cat.categories], pa.string())),
            pa.array(long["close"].to_numpy(), pa.float64()),
            pa.array(long["volume"].to_numpy(), pa.float64()),
        ], schema=_SCHEMA)
        with open(self.path / DATA_DIR / name, "wb") as fh:
            pq.write_table(table, fh, compression="zstd", row_group_size=1 << 20)
            fh.flush()
            os.fsync(fh.fileno())
        return {"file": name, "rows": len(long), "tickers": [str(c) for c in tick.cat.categories],
                "start": str(long["date"].min().date()), "end": str(long["date"].max().date())}


def _merge(old: pd.DataFrame | None, new: pd.DataFrame, has_volume: bool):
    """Upsert ``new`` into ``old`` (both long, unique keys). Returns (merged, added, replaced, unchanged).

    ``merged`` is sorted by (ticker, date) with alphabetically ordered ticker categories.
    """
    if old is None:
        old = new.iloc[:0]
    cats = pd.Index(sorted(set(old["ticker"].cat.categories).union(new["ticker"].cat.categories)))
    old = old.assign(ticker=old["ticker"].cat.set_categories(cats))
    new = new.assign(ticker=new["ticker"].cat.set_categories(cats))
    k_old, k_new = row_keys(old), row_keys(new)
    _, i_new, i_old = np.intersect1d(k_new, k_old, assume_unique=True, return_indices=True)
    new_close = new["close"].to_numpy()
    new_vol = new["volume"].to_numpy().copy()
    old_vol = old["volume"].to_numpy()
    if not has_volume:
        # Input without volume keeps the stored volumes of the keys it touches.
        new_vol[i_new] = old_vol[i_old]
    same_close = new_close[i_new] == old["close"].to_numpy()[i_old]
    nv, ov = new_vol[i_new], old_vol[i_old]
    same_vol = (nv == ov) | (np.isnan(nv) & np.isnan(ov))
    unchanged = int((same_close & same_vol).sum())
    replaced = len(i_new) - unchanged
    added = len(new) - len(i_new)
    if added == 0 and replaced == 0:
        return old, 0, 0, unchanged
    keep_old = np.ones(len(old), dtype=bool)
    keep_old[i_old] = False
    new = new.assign(volume=new_vol)
    merged = pd.concat([old[keep_old], new], ignore_index=True)
    merged = merged.iloc[np.argsort(row_keys(merged), kind="stable")].reset_index(drop=True)
    return merged, added, replaced, unchanged


def _parse_bound(value, what: str) -> pd.Timestamp | None:
    """A user-supplied date bound -> tz-naive midnight Timestamp (``parse_date``'s rules)."""
    return None if value is None else parse_date(value, f"{what} date")
