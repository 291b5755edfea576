"""Change tracking: which tickers changed since a generation, and from which date.

Every ingest that adds or replaces rows is one **generation** (``manifest.generation``). It
records, per ticker it changed, the earliest date it added or replaced, in a small parquet
file (``ticker``, ``date``) covering generations ``(g-1, g]``; and the ticker table keeps
each ticker's last changing generation. ``changes_since(g)``:

* **which tickers**: exactly those whose last changing generation is after ``g`` (from the
  ticker table, never approximated);
* **from which date**: the minimum date over the change-log files that cover a generation
  after ``g``. While ``g`` is among the recent ``KEEP_EXACT`` generations the files are exact,
  so the date is the earliest date changed by the ingests after ``g``. Older files are merged:
  a merged file covering ``(lo, hi]`` holds each ticker's minimum date over the whole range, so
  a reader with ``lo < g < hi`` gets a date that may be earlier than needed, never later
  (conservative: it recomputes a little more, never misses a change).

Merging works like a binary counter: a merged file always covers more generations than all
the newer merged files together, so there are O(log generations) files, and the one file a
reader's ``g`` falls in spans at most about the distance from ``g`` to the newest generation.
A nightly reader whose ``g`` is thousands of generations old (one ingest per ticker file, say)
therefore gets dates from about its own last night, never the first ingest's full history.
Compaction and migration change no rows and are not generations, except a migration that
renames tickers (``migrating``): it is one, in which each renamed ticker changed from its first
date (its old name is gone from the ticker table). A store migrated from v1
knows no history before its migration (``horizon``): asking about an older generation raises
``ChangesUnavailable``, and the caller recomputes in full.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from quantfit.data.frames import DATE_DTYPE
from quantfit.data.store.layout import encode_table, new_name, read_table, write_bytes
from quantfit.data.store.manifest import ChangesEntry, Manifest
from quantfit.errors import DataError

#: Keep this many change-log files exact (one per generation); merge older ones (module doc).
KEEP_EXACT = 32

_SCHEMA = pa.schema([("ticker", pa.string()), ("date", pa.date32())])


class ChangesUnavailable(DataError):
    """``changes_since`` cannot answer for a generation this old (or from another store):
    recompute everything."""


class ChangeSet(dict):
    """``{ticker: earliest date changed}`` (``pd.Timestamp``), plus ``generation``: the store
    generation the answer is complete up to. Record ``generation`` as your new checkpoint and
    read prices afterwards: rows committed in between are seen again next time (conservative)."""

    def __init__(self, items, generation: int):
        super().__init__(items)
        self.generation = generation


def write_log(root: Path, lo: int, hi: int, names: np.ndarray, days: np.ndarray) -> ChangesEntry:
    """Write a change-log file for generations ``(lo, hi]``: one row per ticker (sorted)."""
    table = pa.table({"ticker": pa.array(list(names), pa.string()),
                      "date": pa.array(np.asarray(days, np.int32), pa.int32()).cast(pa.date32())},
                     schema=_SCHEMA)
    name = new_name("changes", 0, f"g{hi}")
    size, sha = write_bytes(root, name, encode_table(table))
    return ChangesEntry(name=name, lo=lo, hi=hi, rows=len(names), bytes=size, sha256=sha)


_NONE = np.iinfo(np.int64).max


def earliest(root: Path, entries: Sequence[ChangesEntry], names: np.ndarray) -> np.ndarray:
    """Per name of ``names`` (sorted), the earliest day over the log files ``entries``
    (``_NONE`` where no file mentions it). Names are matched by hash (pyarrow), not sorted."""
    out = np.full(len(names), _NONE)
    if not len(names):
        return out
    value_set = pa.array(names.tolist(), pa.string())
    for e in entries:
        table = read_table(root, e.name, ["ticker", "date"], e.bytes)
        pos = pc.fill_null(pc.index_in(table.column("ticker"), value_set=value_set), -1)
        pos = pos.to_numpy().astype(np.int64)
        days = table.column("date").combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
        ok = pos >= 0
        np.minimum.at(out, pos[ok], days[ok].astype(np.int64))
    return out


def append(root: Path, m: Manifest, gen: int, names: np.ndarray, days: np.ndarray):
    """Log generation ``gen`` and keep the log bounded (see the module doc).

    Returns (new change entries, superseded entries). Merged files are written here too; like
    every data file they only count once the manifest naming them is committed.
    """
    entries = [*m.changes, write_log(root, gen - 1, gen, names, days)]
    if len(entries) <= KEEP_EXACT:
        return entries, []
    old, keep = entries[:len(entries) - KEEP_EXACT], entries[len(entries) - KEEP_EXACT:]
    # Group the older files, oldest first, so that each group spans more generations than
    # all newer groups together (a binary counter); then write one file per group of several.
    groups: list[list[ChangesEntry]] = []
    for e in old:
        groups.append([e])
        while len(groups) >= 2 and _span(groups[-1]) >= _span(groups[-2]):
            newer = groups.pop()
            groups[-1] = groups[-1] + newer
    merged, superseded = [], []
    all_names = None
    for grp in groups:
        if len(grp) == 1:
            merged.append(grp[0])
            continue
        if all_names is None:
            all_names = np.union1d(m.tickers.names.astype(str), np.asarray(names, dtype=str)).astype(object)
        days_all = earliest(root, grp, all_names)
        hit = days_all != _NONE
        merged.append(write_log(root, grp[0].lo, grp[-1].hi, all_names[hit], days_all[hit]))
        superseded += grp
    return [*merged, *keep], superseded


def _span(group: list[ChangesEntry]) -> int:
    return group[-1].hi - group[0].lo


def since(root: Path, m: Manifest, generation: int) -> ChangeSet:
    """``{ticker: earliest date changed}`` for generations after ``generation`` (module doc)."""
    if isinstance(generation, bool) or not isinstance(generation, (int, np.integer)):
        raise DataError(f"generation must be an integer, got {generation!r}")
    generation = int(generation)
    if generation < 0:
        raise DataError(f"generation must be >= 0, got {generation}")
    if generation > m.generation:
        raise ChangesUnavailable(f"generation {generation} is after this store's last generation "
                                 f"({m.generation}): a result from another store?")
    if generation == m.generation:
        return ChangeSet({}, m.generation)
    if generation < m.horizon:
        raise ChangesUnavailable(f"store changes are known from generation {m.horizon} on (the "
                                 f"store {'is' if m.version == 1 else 'was migrated from'} the v1 "
                                 f"format, which kept no change history); asked since {generation}: "
                                 f"recompute in full")
    t = m.tickers
    changed = t.gen > generation
    names = t.names[changed]
    days = earliest(root, [e for e in m.changes if e.hi > generation], names)
    # A ticker missing from the log cannot happen in a consistent store; answer safely anyway.
    days = np.where(days == _NONE, t.first[changed], days)
    stamps = pd.DatetimeIndex(days.astype("datetime64[D]")).astype(DATE_DTYPE)
    return ChangeSet(zip(names.tolist(), stamps), m.generation)
