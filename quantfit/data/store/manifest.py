"""The store's manifest: what is committed, checked completely before anyone trusts it.

``manifest.json`` (format ``quantfit-pricestore``, version 2)::

    {"format": "quantfit-pricestore", "version": 2,
     "store_id": "<32 hex>",          # fixed when the store is created
     "buckets": 64,                   # ticker buckets, fixed when the store is created
     "generation": 17,                # ingests that changed rows, migrations that renamed tickers
     "commit": 25,                    # every commit (ingest, compaction, migration)
     "horizon": 0,                    # changes_since answers for generations >= horizon
     "files": [{"name": "s007-2019-<id>.parquet", "kind": "segment" | "delta", "bucket": 7,
                "start": "2019-01-02", "end": "2019-12-31", "rows": 39312, "gen": 12,
                "bytes": 401234, "sha256": "<64 hex>"}, ...],
     "changes": [{"name": "c-g17-<id>.parquet", "lo": 16, "hi": 17, "rows": 10000,
                  "bytes": 51234, "sha256": "<64 hex>"}, ...],
     "tickers": {"name": [...], "first": [...], "last": [...], "rows": [...], "gen": [...]}}

``tickers`` is columnar (sorted names; first/last date, number of rows, and the last
generation that changed each ticker). ``parse`` checks every key, type and invariant (file
names, disjoint segment years per bucket, generations in range, ...) and raises ``DataError``
naming the manifest and the problem: a damaged manifest is reported, and no writer deletes or
writes anything on the strength of one.

Version 1 manifests (``files`` keyed by bucket, one file per bucket holding its whole history,
no checksums) are read as a version 2 view: each file is a segment, per-ticker dates are the
bucket's (rows unknown: -1), and ``horizon`` is the v1 generation (no change history).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace
from typing import NoReturn
from pathlib import Path

import numpy as np

from quantfit.data.store.layout import bucket_of, day_text, years_of
from quantfit.errors import DataError

MANIFEST = "manifest.json"
FORMAT = "quantfit-pricestore"
VERSION = 2
KINDS = ("segment", "delta")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.parquet$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class FileEntry:
    """One live data file. ``start``/``end``: day numbers of its first/last row; ``gen``: the
    generation that wrote it (deltas of a bucket apply in ``gen`` order); ``bytes``/``sha256``
    are None for files of a v1 store."""

    name: str
    kind: str
    bucket: int
    start: int
    end: int
    rows: int
    gen: int
    bytes: int | None = None
    sha256: str | None = None

    @property
    def years(self) -> tuple[int, int]:
        y = years_of(np.array([self.start, self.end]))
        return int(y[0]), int(y[1])

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "bucket": self.bucket,
                "start": day_text(self.start), "end": day_text(self.end), "rows": self.rows,
                "gen": self.gen, "bytes": self.bytes, "sha256": self.sha256}


@dataclass(frozen=True)
class ChangesEntry:
    """A change-log file covering generations ``(lo, hi]``: per ticker, the earliest date
    changed by any ingest in that range."""

    name: str
    lo: int
    hi: int
    rows: int
    bytes: int
    sha256: str

    def to_json(self) -> dict:
        return {"name": self.name, "lo": self.lo, "hi": self.hi, "rows": self.rows,
                "bytes": self.bytes, "sha256": self.sha256}


@dataclass(frozen=True)
class TickerTable:
    """Per ticker (sorted ``names``): first/last day, row count (-1: unknown, v1), and the last
    generation that added or replaced one of its rows."""

    names: np.ndarray
    first: np.ndarray
    last: np.ndarray
    rows: np.ndarray
    gen: np.ndarray

    @staticmethod
    def empty() -> TickerTable:
        e = np.empty(0, np.int64)
        return TickerTable(np.array([], dtype=object), e, e, e, e)

    @staticmethod
    def from_parts(parts, gen: int) -> TickerTable:
        """A table from per-file ``Rows.per_ticker`` results ``(names, first, last, count)``
        of files that share no ticker; every ticker's generation is ``gen``."""
        if not parts:
            return TickerTable.empty()
        names = np.concatenate([p[0] for p in parts]).astype(object)
        order = np.argsort(names, kind="stable")
        def col(i):
            return np.concatenate([p[i] for p in parts]).astype(np.int64)[order]

        return TickerTable(names[order], col(1), col(2), col(3), np.full(len(names), gen, np.int64))

    def positions(self, tickers: np.ndarray) -> np.ndarray:
        """Index of each ticker in ``names``, -1 where unknown."""
        if not len(self.names):
            return np.full(len(tickers), -1, np.int64)
        pos = np.minimum(np.searchsorted(self.names, tickers), len(self.names) - 1)
        return np.where(self.names[pos] == tickers, pos, -1)

    def to_json(self) -> dict:
        return {"name": list(self.names),
                "first": np.datetime_as_string(self.first.astype("datetime64[D]")).tolist(),
                "last": np.datetime_as_string(self.last.astype("datetime64[D]")).tolist(),
                "rows": self.rows.tolist(), "gen": self.gen.tolist()}


@dataclass(frozen=True)
class Manifest:
    store_id: str
    buckets: int
    generation: int = 0
    commit: int = 0
    horizon: int = 0
    files: tuple[FileEntry, ...] = ()
    changes: tuple[ChangesEntry, ...] = ()
    tickers: TickerTable = field(default_factory=TickerTable.empty)
    version: int = VERSION

    @staticmethod
    def new(buckets: int) -> Manifest:
        return Manifest(store_id=uuid.uuid4().hex, buckets=buckets)

    def bucket_files(self, bucket: int) -> tuple[list[FileEntry], list[FileEntry]]:
        """(segments by start, deltas by generation) of one bucket."""
        segs = sorted((f for f in self.files if f.bucket == bucket and f.kind == "segment"),
                      key=lambda f: f.start)
        deltas = sorted((f for f in self.files if f.bucket == bucket and f.kind == "delta"),
                        key=lambda f: f.gen)
        return segs, deltas

    def all_files(self) -> list[FileEntry | ChangesEntry]:
        """Every listed file: data files, then change-log files."""
        return [*self.files, *self.changes]

    def live_names(self) -> set[str]:
        return {f.name for f in self.files} | {c.name for c in self.changes}

    def with_(self, **kw) -> Manifest:
        return replace(self, **kw)

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "store_id": self.store_id,
                "buckets": self.buckets, "generation": self.generation, "commit": self.commit,
                "horizon": self.horizon, "files": [f.to_json() for f in self.files],
                "changes": [c.to_json() for c in self.changes], "tickers": self.tickers.to_json()}


# ----------------------------------------------------------------------------- parsing
class _Checker:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, what: str) -> NoReturn:
        raise DataError(f"{self.path} is damaged: {what}; run 'quantfit store verify'")

    def get(self, obj: dict, key: str, kind, where: str = ""):
        if key not in obj:
            self.fail(f"missing key {key!r}{where}")
        value = obj[key]
        if kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            self.fail(f"{key!r}{where} should be {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
        return value

    def count(self, obj: dict, key: str, where: str = "", minimum: int = 0) -> int:
        value = self.get(obj, key, int, where)
        if value < minimum:
            self.fail(f"{key!r}{where} is {value} (must be >= {minimum})")
        return value

    def day(self, obj: dict, key: str, where: str) -> int:
        text = self.get(obj, key, str, where)
        try:
            return int(np.datetime64(text, "D").astype(np.int64))
        except ValueError:
            self.fail(f"{key!r}{where} is not a date: {text!r}")

    def name(self, obj: dict, where: str) -> str:
        name = self.get(obj, "name", str, where)
        if not _NAME.match(name):
            self.fail(f"bad file name {name!r}{where}")
        return name

    def sha(self, obj: dict, where: str) -> str:
        value = self.get(obj, "sha256", str, where)
        if not _HEX64.match(value):
            self.fail(f"bad sha256{where}")
        return value


def parse(obj, path: Path) -> Manifest:
    """Validate a manifest (any supported version) completely; ``DataError`` if anything is off."""
    c = _Checker(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise DataError(f"{path} is not a quantfit store manifest")
    version = obj.get("version")
    if version == 1:
        return _parse_v1(obj, c)
    if version != VERSION:
        raise DataError(f"{path}: unsupported store version {version!r} "
                        f"(this quantfit reads versions 1 and {VERSION}; a newer quantfit wrote it?)")
    store_id = c.get(obj, "store_id", str)
    if not _HEX32.match(store_id):
        c.fail(f"bad store_id {store_id!r}")
    buckets = c.count(obj, "buckets", minimum=1)
    if buckets > 4096:
        c.fail(f"'buckets' is {buckets} (at most 4096)")
    generation = c.count(obj, "generation")
    commit = c.count(obj, "commit")
    horizon = c.count(obj, "horizon")
    if horizon > generation:
        c.fail(f"horizon {horizon} is after generation {generation}")
    files = []
    for i, f in enumerate(c.get(obj, "files", list)):
        where = f" in files[{i}]"
        if not isinstance(f, dict):
            c.fail(f"files[{i}] is not an object")
        kind = c.get(f, "kind", str, where)
        if kind not in KINDS:
            c.fail(f"unknown kind {kind!r}{where}")
        entry = FileEntry(name=c.name(f, where), kind=kind, bucket=c.count(f, "bucket", where),
                          start=c.day(f, "start", where), end=c.day(f, "end", where),
                          rows=c.count(f, "rows", where, 1), gen=c.count(f, "gen", where),
                          bytes=c.count(f, "bytes", where, 1), sha256=c.sha(f, where))
        if entry.bucket >= buckets or entry.start > entry.end or entry.gen > generation:
            c.fail(f"bucket, dates or generation out of range{where}")
        files.append(entry)
    changes: list[ChangesEntry] = []
    for i, f in enumerate(c.get(obj, "changes", list)):
        where = f" in changes[{i}]"
        if not isinstance(f, dict):
            c.fail(f"changes[{i}] is not an object")
        log = ChangesEntry(name=c.name(f, where), lo=c.count(f, "lo", where), hi=c.count(f, "hi", where),
                           rows=c.count(f, "rows", where, 1), bytes=c.count(f, "bytes", where, 1),
                           sha256=c.sha(f, where))
        if not (horizon <= log.lo < log.hi <= generation):
            c.fail(f"generations ({log.lo}, {log.hi}] out of range{where}")
        changes.append(log)
    m = Manifest(store_id=store_id, buckets=buckets, generation=generation, commit=commit,
                 horizon=horizon, files=tuple(files),
                 changes=tuple(sorted(changes, key=lambda e: e.hi)),
                 tickers=_parse_tickers(c.get(obj, "tickers", dict), c, generation))
    _check_invariants(m, c)
    return m


def _parse_tickers(obj: dict, c: _Checker, generation: int) -> TickerTable:
    cols = {k: c.get(obj, k, list, " in tickers") for k in ("name", "first", "last", "rows", "gen")}
    n = len(cols["name"])
    if any(len(v) != n for v in cols.values()):
        c.fail("tickers columns differ in length")
    if not all(isinstance(t, str) and t for t in cols["name"]):
        c.fail("a ticker name is not a non-empty string")
    names = np.array(cols["name"], dtype=object)
    if n > 1 and not (names[1:] > names[:-1]).all():
        c.fail("ticker names are not sorted and unique")
    try:
        first = np.array(cols["first"], dtype="datetime64[D]").astype(np.int64)
        last = np.array(cols["last"], dtype="datetime64[D]").astype(np.int64)
    except (ValueError, TypeError):
        c.fail("a ticker's first or last date is not a date")
    ints = []
    for k in ("rows", "gen"):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in cols[k]):
            c.fail(f"tickers {k!r} holds a non-integer")
        ints.append(np.array(cols[k], dtype=np.int64))
    rows, gen = ints
    if n and ((first > last).any() or (rows < 1).any() or (gen < 0).any() or (gen > generation).any()):
        c.fail("a ticker's dates, row count or generation is out of range")
    return TickerTable(names, first, last, rows, gen)


def _check_invariants(m: Manifest, c: _Checker) -> None:
    names = [f.name for f in m.files] + [e.name for e in m.changes]
    if len(set(names)) != len(names):
        c.fail("a file is listed twice")
    for b in {f.bucket for f in m.files}:
        segs, deltas = m.bucket_files(b)
        years = [s.years for s in segs]
        if any(years[i][1] >= years[i + 1][0] for i in range(len(years) - 1)):
            c.fail(f"segments of bucket {b} share a year")
        if len({d.gen for d in deltas}) != len(deltas):  # their order must be unambiguous
            c.fail(f"two deltas of bucket {b} have the same generation")
    for prev, nxt in zip(m.changes, m.changes[1:]):
        if prev.hi > nxt.lo:
            c.fail("change-log files overlap")
    if m.files and not len(m.tickers.names):
        c.fail("data files but no tickers")


def _parse_v1(obj: dict, c: _Checker) -> Manifest:
    """A v1 manifest (quantfit <= 0.1: one file per bucket) as a read-only v2 view."""
    buckets = c.count(obj, "buckets", minimum=1)
    generation = c.count(obj, "generation")
    raw = c.get(obj, "files", dict)
    files, names, first, last = [], [], [], []
    for key, e in raw.items():
        where = f" in files[{key!r}]"
        if not (isinstance(e, dict) and key.isdigit() and int(key) < buckets):
            c.fail(f"bad bucket entry{where}")
        name = c.get(e, "file", str, where)
        if not _NAME.match(name):
            c.fail(f"bad file name {name!r}{where}")
        start, end = c.day(e, "start", where), c.day(e, "end", where)
        tickers = c.get(e, "tickers", list, where)
        if not tickers or not all(isinstance(t, str) and t and bucket_of(t, buckets) == int(key)
                                  for t in tickers):
            c.fail(f"bad ticker list{where}")
        files.append(FileEntry(name=name, kind="segment", bucket=int(key), start=start, end=end,
                               rows=c.count(e, "rows", where, 1), gen=generation))
        names += tickers
        first += [start] * len(tickers)
        last += [end] * len(tickers)
    order = np.argsort(np.array(names, dtype=object), kind="stable")
    arr = np.array(names, dtype=object)[order]
    if len(arr) > 1 and not (arr[1:] > arr[:-1]).all():
        c.fail("a ticker is listed in two buckets")
    n = len(arr)
    table = TickerTable(arr, np.array(first, np.int64)[order], np.array(last, np.int64)[order],
                        np.full(n, -1, np.int64), np.full(n, generation, np.int64))
    store_id = uuid.uuid5(uuid.NAMESPACE_URL, f"quantfit-pricestore:{c.path.parent.resolve()}").hex
    return Manifest(store_id=store_id, buckets=buckets, generation=generation, commit=0,
                    horizon=generation, files=tuple(files), tickers=table, version=1)
