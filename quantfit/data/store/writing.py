"""Writing: classify an upsert, then per bucket write a delta, merge deltas, or fold (compact).

Called by ``PriceStore`` with the write lock held and a validated manifest. Nothing here
commits: functions write new, fsynced files and return manifest entries; the caller commits
the manifest and then deletes what it superseded.

Per touched bucket, the rows to write (added or replaced keys) go to one of:

* **fold**: read the segments the pending rows fall into (by year) and the bucket's deltas,
  merge everything, and write those years again as segments. Chosen when the pending rows
  (deltas + new) are at least ``FOLD_RATIO`` of the segment rows they fall into (a new year's
  first rows, a fresh store, a large revision), within a budget of old rows rewritten per
  ingest (``FOLD_BUDGET_ROWS`` + ``FOLD_BUDGET_FACTOR`` x rows ingested, plus one fold beyond
  it, so that a bucket larger than the budget still gets folded), most overdue first; buckets
  not touched by the ingest compete for the same budget;
* **merge**: when the bucket would have more than ``MAX_DELTAS`` deltas, its deltas and the
  new rows become one delta (reads only deltas);
* **delta**: otherwise, the new rows alone become a new delta file.

So appending a day rewrites no history: it writes one small delta per bucket. A fold rewrites
at most 1/FOLD_RATIO segment rows per pending row, so the folding the appends eventually
trigger costs a bounded multiple of the rows appended (amortized O(new rows)); the budget only
spreads the folds of buckets that become due together over several ingests.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from quantfit.data.frames import day_numbers
from quantfit.data.store import layout
from quantfit.data.store.layout import (FIELDS, Rows, bucket_of, combine, encode_table, new_name,
                                        partition_years, read_table, rows_table, table_rows,
                                        write_bytes, years_of)
from quantfit.data.store.manifest import FileEntry, Manifest, TickerTable

FOLD_RATIO = 0.25
MAX_DELTAS = 8
FOLD_BUDGET_ROWS = 1_000_000
FOLD_BUDGET_FACTOR = 4
_WORKERS = 4

_ALL = ["date", "ticker", *FIELDS]


def read_rows(root: Path, f: FileEntry, tickers: np.ndarray | None = None) -> Rows:
    """A file's rows (``tickers``: at least those tickers' rows, see ``layout.read_table``)."""
    return table_rows(read_table(root, f.name, _ALL, f.bytes, tickers))


def write_rows(root: Path, rows: Rows, kind: str, bucket: int, gen: int) -> FileEntry:
    """Write rows (sorted by ticker, date) as one new segment or delta file of ``bucket``."""
    tag = f"{int(years_of(rows.day[:1])[0])}" if kind == "segment" else f"g{gen}"
    name = new_name(kind, bucket, tag)
    size, sha = write_bytes(root, name, encode_table(rows_table(rows)))
    return FileEntry(name=name, kind=kind, bucket=bucket, start=int(rows.day.min()),
                     end=int(rows.day.max()), rows=len(rows), gen=gen, bytes=size, sha256=sha)


# ----------------------------------------------------------------------------- input
def split_input(clean: pd.DataFrame, buckets: int) -> dict[int, Rows]:
    """A validated long frame -> Rows per bucket, each sorted by (ticker, date)."""
    cat = clean["ticker"].cat
    cats = np.asarray([str(c) for c in cat.categories], dtype=object)
    names, inverse = np.unique(cats, return_inverse=True)
    code = inverse.astype(np.int32)[cat.codes.to_numpy()]
    day = day_numbers(clean["date"]).astype(np.int32)
    name_bucket = np.array([bucket_of(t, buckets) for t in names.tolist()], dtype=np.int16)
    row_bucket = name_bucket[code]
    order = np.argsort(row_bucket, kind="stable")  # a radix sort on int16
    rows = Rows(names.astype(object), code[order], day[order], clean["close"].to_numpy()[order],
                clean["volume"].to_numpy()[order])
    sorted_b = row_bucket[order]
    cuts = np.flatnonzero(np.r_[True, sorted_b[1:] != sorted_b[:-1], True])
    out = {}
    for a, z in itertools.pairwise(cuts):
        part = rows.take(slice(a, z))
        keys = part.keys()
        if len(keys) > 1 and not (keys[1:] > keys[:-1]).all():  # inputs often come sorted
            part = part.take(np.argsort(keys, kind="stable"))
        # each bucket keeps only its own names: later lookups cost per bucket, not per universe
        out[int(sorted_b[a])] = part.compact_names()
    return out


@dataclass
class BucketChange:
    """The outcome of upserting one bucket's input rows: what to write, and the counts."""

    bucket: int
    rows: Rows            # added or replaced keys, sorted, with the volume to store
    added: np.ndarray     # bool per row of ``rows``: a new key
    n_added: int = 0
    n_replaced: int = 0
    n_unchanged: int = 0


def classify(root: Path, m: Manifest, bucket: int, part: Rows, has_volume: bool) -> BucketChange:
    """Compare input rows with the stored ones; only rows inside a ticker's stored date range
    can exist already, so a pure append reads nothing."""
    t = m.tickers
    pos = t.positions(part.names)[part.code]
    known = pos >= 0
    if not known.any():
        return BucketChange(bucket, part, np.ones(len(part), bool), n_added=len(part))
    p = np.where(known, pos, 0)
    overlap = known & (part.day >= t.first[p]) & (part.day <= t.last[p])
    if not overlap.any():
        return BucketChange(bucket, part, np.ones(len(part), bool), n_added=len(part))
    idx = np.flatnonzero(overlap)
    segs, deltas = m.bucket_files(bucket)
    names = part.names[np.unique(part.code[idx])]  # the tickers whose stored rows we need
    keys = part.keys()[idx]                        # sorted: the part is sorted by (ticker, day)
    old_close, old_volume = np.full(len(idx), np.nan), np.full(len(idx), np.nan)
    found = np.zeros(len(idx), bool)
    days = part.day[idx]
    for f in [*segs, *deltas]:  # precedence order: a later file's value wins
        sel = np.flatnonzero((days >= f.start) & (days <= f.end))  # only keys the file can hold
        if len(sel):
            j, hit = _lookup(read_rows(root, f, names), part.names, keys[sel])
            at = sel[hit]
            old_close[at], old_volume[at], found[at] = j[0], j[1], True
    rows_at = idx[found]
    volume = part.volume.copy()
    if not has_volume:  # input without volumes keeps the stored volumes of the keys it touches
        volume[rows_at] = old_volume[found]
    ov, nv = old_volume[found], volume[rows_at]
    same = (part.close[rows_at] == old_close[found]) & ((nv == ov) | (np.isnan(nv) & np.isnan(ov)))
    write = np.ones(len(part), bool)
    write[rows_at[same]] = False
    added = np.ones(len(part), bool)
    added[rows_at] = False
    rows = Rows(part.names, part.code, part.day, part.close, volume).take(write)
    return BucketChange(bucket, rows, added[write], n_added=int(added.sum()),
                        n_replaced=int(len(rows_at) - same.sum()), n_unchanged=int(same.sum()))


def _lookup(rows: Rows, names: np.ndarray, keys: np.ndarray):
    """Find sorted ``keys`` (codes into ``names``) among a file's rows: ((close, volume) of the
    keys found, found mask)."""
    pos = np.searchsorted(names, rows.names)
    pos = np.where(names[np.minimum(pos, len(names) - 1)] == rows.names, pos, -1)
    code = pos[rows.code]
    keep = np.flatnonzero(code >= 0)
    fk = (code[keep].astype(np.int64) << 32) + (rows.day[keep].astype(np.int64) + (1 << 31))
    if len(fk) > 1 and not (fk[1:] > fk[:-1]).all():  # files are written sorted; never assume
        order = np.argsort(fk, kind="stable")
        fk, keep = fk[order], keep[order]
    if not len(fk):
        return (np.empty(0), np.empty(0)), np.zeros(len(keys), bool)
    j = np.minimum(np.searchsorted(fk, keys), len(fk) - 1)
    hit = fk[j] == keys
    at = keep[j[hit]]
    return (rows.close[at], rows.volume[at]), hit


def update_tickers(t: TickerTable, changes: Sequence[BucketChange], generation: int):
    """The ticker table after writing ``changes``, and (names, earliest changed day) of the
    tickers changed, sorted by name, for the change log."""
    touched = [c for c in changes if len(c.rows)]
    changed = [(c.rows.names, c.rows.per_ticker()) for c in touched]
    added = [(c.rows.names, c.rows.take(c.added).per_ticker()) for c in touched if c.added.any()]
    ch_names = _cat([n[s[0]] for n, s in changed], object)
    ch_days = _cat([s[1] for _, s in changed], np.int64)
    ad_names = _cat([n[s[0]] for n, s in added], object)
    names = np.unique(np.concatenate([t.names, ad_names]).astype(object))
    first = np.full(len(names), np.iinfo(np.int64).max)
    last = np.full(len(names), np.iinfo(np.int64).min)
    rows = np.zeros(len(names), np.int64)
    gen = np.zeros(len(names), np.int64)
    at = np.searchsorted(names, t.names)
    first[at], last[at], rows[at], gen[at] = t.first, t.last, t.rows, t.gen
    if added:
        at = np.searchsorted(names, ad_names)
        first[at] = np.minimum(first[at], _cat([s[1] for _, s in added], np.int64))
        last[at] = np.maximum(last[at], _cat([s[2] for _, s in added], np.int64))
        rows[at] += _cat([s[3] for _, s in added], np.int64)
    gen[np.searchsorted(names, ch_names)] = generation
    order = np.argsort(ch_names, kind="stable")
    return TickerTable(names, first, last, rows, gen), ch_names[order], ch_days[order]


def _cat(arrays: list, dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype) if arrays else np.empty(0, dtype)


# ----------------------------------------------------------------------------- planning
@dataclass
class BucketAction:
    """What to do with one bucket: ``kind`` in fold / merge / delta."""

    bucket: int
    kind: str
    new: Rows | None = None
    segments: list[FileEntry] = field(default_factory=list)   # rewritten by a fold
    deltas: list[FileEntry] = field(default_factory=list)     # folded or merged
    kept: list[tuple[int, int]] = field(default_factory=list)  # years of the segments kept

    @property
    def old_rows(self) -> int:
        return sum(f.rows for f in self.segments) + sum(f.rows for f in self.deltas)


def fold_action(m: Manifest, bucket: int, new: Rows | None, full: bool = False) -> tuple[BucketAction, float]:
    """The fold of a bucket's deltas (+ new rows), and its ratio pending rows / segment rows."""
    segs, deltas = m.bucket_files(bucket)
    ranges = [f.years for f in deltas]
    if new is not None and len(new):
        ranges.append((int(years_of(new.day.min())), int(years_of(new.day.max()))))
    if full:
        hit = list(segs)
    else:
        hit = [s for s in segs if any(s.years[0] <= r1 and s.years[1] >= r0 for r0, r1 in ranges)]
        if ranges:
            earliest = min(r0 for r0, _ in ranges)
            before = [s for s in segs if s.years[1] < earliest and s not in hit]
            owned = any(s.years[0] <= earliest <= s.years[1] for s in hit)
            if before and not owned and before[-1].rows < layout.SEGMENT_ROWS:
                hit.append(before[-1])  # the small "open" segment grows instead of a new one
    pending = sum(f.rows for f in deltas) + (len(new) if new is not None else 0)
    seg_rows = sum(s.rows for s in hit)
    ratio = pending / seg_rows if seg_rows else float("inf")
    kept = [s.years for s in segs if s not in hit]
    return BucketAction(bucket, "fold", new, sorted(hit, key=lambda s: s.start), deltas, kept), ratio


def plan(m: Manifest, new: dict[int, Rows], rows_ingested: int) -> list[BucketAction]:
    """Choose fold / merge / delta for every bucket with new rows, and budgeted folds for the
    other buckets with deltas (module doc)."""
    with_deltas = {f.bucket for f in m.files if f.kind == "delta"}
    candidates = []
    for b in sorted(set(new) | with_deltas):
        action, ratio = fold_action(m, b, new.get(b))
        if ratio >= FOLD_RATIO:
            candidates.append((ratio, action))
    budget = FOLD_BUDGET_ROWS + FOLD_BUDGET_FACTOR * rows_ingested
    actions: dict[int, BucketAction] = {}
    over = False  # one fold larger than what is left of the budget is allowed per ingest
    for _, action in sorted(candidates, key=lambda c: -c[0]):
        cost = action.old_rows
        if cost <= budget or not over:
            over |= cost > budget
            actions[action.bucket] = action
            budget = max(0, budget - cost)
    for b, rows in new.items():
        if b in actions:
            continue
        _, deltas = m.bucket_files(b)
        if len(deltas) + 1 > MAX_DELTAS:
            actions[b] = BucketAction(b, "merge", rows, deltas=deltas)
        else:
            actions[b] = BucketAction(b, "delta", rows)
    return [actions[b] for b in sorted(actions)]


def run_action(root: Path, a: BucketAction, gen: int) -> list[FileEntry]:
    """Write the files of one action; returns their entries."""
    if a.kind == "delta":
        return [write_rows(root, a.new, "delta", a.bucket, gen)]
    parts = [read_rows(root, f) for f in [*a.segments, *a.deltas]]
    if a.new is not None:
        parts.append(a.new)
    rows = combine(parts)
    if a.kind == "merge":
        return [write_rows(root, rows, "delta", a.bucket, gen)]
    return [write_rows(root, seg, "segment", a.bucket, gen) for seg in partition_years(rows, a.kept)]


def run_actions(root: Path, actions: list[BucketAction], gen: int,
                progress: Callable[[int], None] | None = None) -> tuple[list[FileEntry], list[FileEntry]]:
    """Run actions in threads (parquet encoding releases the GIL); (new entries, superseded)."""
    written: list[FileEntry] = []
    superseded: list[FileEntry] = []
    with ThreadPoolExecutor(max_workers=max(1, min(_WORKERS, len(actions)))) as pool:
        for a, entries in zip(actions, pool.map(lambda a: run_action(root, a, gen), actions)):
            written += entries
            superseded += a.segments + a.deltas
            if progress is not None:
                progress(a.old_rows + (len(a.new) if a.new is not None else 0))
    return written, superseded
