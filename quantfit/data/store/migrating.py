"""Migration: a v1 store rewritten in the current format, and stored tickers renamed by the
ticker rule.

``PriceStore.migrate`` (and the first ``ingest`` or ``compact`` of a v1 store) fixes what
older versions of quantfit left behind:

* **format v1** (one file per bucket): every bucket is rewritten as year segments;
* **tickers stored before the ticker rule** (``quantfit.data.tickers``: upper-cased, checked
  characters): a stored ``aapl`` is renamed ``AAPL``.

**Which names.** Every stored name gets ``normalize_ticker(name)``, or the name the caller
chose for it (``rename={"aapl": "AAPL_OLD"}``; exact stored spelling -> any valid ticker). The
whole mapping is refused, before anything is written, when a stored name is not a valid
ticker at all or when two stored names would become one (``aapl`` and ``AAPL``): rows of two
tickers are never merged silently, and the message says how to choose names.

**Moving rows.** A renamed ticker hashes to another bucket, so its rows move there. One bucket
per worker is in memory at a time, as in any fold:

1. each bucket holding a renamed ticker is read (segments and deltas merged, deltas winning);
   the renamed tickers' rows, under their new names, go to one *staging* file per receiving
   bucket; the bucket's other rows become its new segments at once, unless it receives rows;
2. every bucket receiving rows (and, for a v1 store, every bucket not rewritten yet) is read,
   minus the renamed tickers' rows, merged with its staging files, and written as segments.

Only the buckets involved are rewritten (all of them for a v1 store). Staging files are never
listed in a manifest: the caller's commit (one manifest replace) makes the new segments live
and supersedes the old files and the staging files; a writer killed before it leaves the old
store and orphans the next writer deletes.

**Changes.** A rename is a change: the migration is then a generation of its own in which each
renamed ticker changed from its first date, so ``changes_since`` sends it to the nightly job
under its new name (the old name is gone from the store). A migration that renames nothing
changes no rows and is not a generation.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantfit.data.store import changes as changelog
from quantfit.data.store.layout import Rows, bucket_of, combine, partition_years
from quantfit.data.store.manifest import FileEntry, Manifest, TickerTable
from quantfit.data.store.summaries import MaintenanceSummary, Reporter
from quantfit.data.store.writing import read_rows, write_rows
from quantfit.data.tickers import normalize_ticker
from quantfit.errors import DataError

_WORKERS = 2  # one bucket in memory per worker
_SHOWN = 5    # problems named in a refusal


# ----------------------------------------------------------------------------- names
def plan_renames(m: Manifest, chosen: Mapping[str, str] | None, where: str) -> dict[str, str]:
    """``{stored name: new name}`` for every stored ticker whose name changes (module doc);
    ``DataError`` naming every invalid name and collision, before anything is written."""
    names = m.tickers.names.tolist()
    chosen = _check_chosen(chosen, names, where)
    target: dict[str, str] = {}
    problems: list[str] = []
    for name in names:
        if name in chosen:
            target[name] = chosen[name]
            continue
        try:
            target[name] = normalize_ticker(name)
        except DataError as exc:
            problems.append(str(exc))
    groups: dict[str, list[str]] = {}
    for old, new in target.items():
        groups.setdefault(new, []).append(old)
    clashes = [olds for olds in groups.values() if len(olds) > 1]
    problems += [f"{' and '.join(map(repr, olds))} would {'both' if len(olds) == 2 else 'all'} be "
                 f"{target[olds[0]]}" for olds in clashes]
    if problems:
        shown = "; ".join(problems[:_SHOWN]) + (f"; ... ({len(problems) - _SHOWN} more)"
                                                if len(problems) > _SHOWN else "")
        example = next((o for olds in clashes for o in olds if target[o] != o), None)
        example = example if example is not None else next(n for n in names if n not in target)
        raise DataError(f"{where}: cannot rename its tickers by the ticker rule (upper-cased, "
                        f"checked characters): {shown}; nothing was changed; choose a name for "
                        f"each with 'quantfit store migrate --rename OLD NEW' "
                        f"(e.g. --rename {shlex.quote(example)} NEW)")
    return {old: new for old, new in target.items() if old != new}


def _check_chosen(chosen: Mapping[str, str] | None, names: list[str], where: str) -> dict[str, str]:
    """The caller's names: stored spelling -> normalized valid ticker."""
    if chosen is None:
        return {}
    if not isinstance(chosen, Mapping):
        raise DataError(f"rename must be a mapping {{stored name: new name}}, got {type(chosen).__name__}")
    stored = set(names)
    out = {}
    for old, new in chosen.items():
        if old not in stored:
            raise DataError(f"{where} holds no ticker {old!r} to rename (give the name exactly as "
                            f"stored: see store.tickers())")
        out[old] = normalize_ticker(new, f"new name for {old!r}: ")
    return out


def legacy_spellings(names: np.ndarray) -> dict[str, str]:
    """``{normalized name: stored name}`` of the stored names the ticker rule would change."""
    return {t.strip().upper(): t for t in names.tolist() if t.strip().upper() != t}


# ----------------------------------------------------------------------------- rows
def _bucket_rows(root: Path, m: Manifest, bucket: int) -> Rows:
    segs, deltas = m.bucket_files(bucket)
    return combine([read_rows(root, f) for f in [*segs, *deltas]])


def _renamed(rows: Rows, renames: Mapping[str, str]) -> Rows:
    """Rows under their new names, sorted by (new name, date)."""
    rows = rows.compact_names()
    names, inverse = np.unique(np.array([renames[n] for n in rows.names.tolist()], dtype=object),
                               return_inverse=True)
    out = Rows(names.astype(object), inverse.astype(np.int32)[rows.code], rows.day, rows.close, rows.volume)
    return out.take(np.argsort(out.keys(), kind="stable"))


def _segments(root: Path, rows: Rows, bucket: int, gen: int):
    """Write a bucket's rows (sorted) as its segments: (entries, per-ticker stats)."""
    files = [write_rows(root, seg, "segment", bucket, gen) for seg in partition_years(rows, [])]
    codes, first, last, count = rows.per_ticker()
    return files, (rows.names[codes], first, last, count)


def _buckets(m: Manifest, renames: Mapping[str, str]) -> tuple[set[int], set[int], set[int]]:
    """(buckets rows leave, buckets rows arrive in, every bucket rewritten)."""
    src = {bucket_of(t, m.buckets) for t in renames}
    dst = {bucket_of(t, m.buckets) for t in renames.values()}
    return src, dst, src | dst | ({f.bucket for f in m.files} if m.version == 1 else set())


@dataclass
class Rewrite:
    files: list[FileEntry]   # new segments
    staged: list[FileEntry]  # staging files: superseded by the commit
    stats: list[tuple]       # per rewritten bucket: (names, first, last, rows) of its tickers
    buckets: set[int]        # the buckets rewritten


def rewrite(root: Path, m: Manifest, renames: Mapping[str, str], gen: int,
            progress: Callable[[int], None]) -> Rewrite:
    """Rewrite the buckets a migration involves (module doc); nothing is committed here."""
    olds = np.array(sorted(renames), dtype=object)
    src, dst, todo = _buckets(m, renames)
    files: list[FileEntry] = []
    stats: list[tuple] = []
    staged: dict[int, list[FileEntry]] = {}

    def leave(b: int):
        rows = _bucket_rows(root, m, b)
        moving = np.isin(rows.names, olds)[rows.code]
        moved = _renamed(rows.take(moving), renames)
        to = np.array([bucket_of(t, m.buckets) for t in moved.names.tolist()], dtype=np.int64)[moved.code]
        out = [write_rows(root, moved.take(to == d).compact_names(), "delta", int(d), gen) for d in np.unique(to)]
        done = None if b in dst else _segments(root, rows.take(~moving), b, gen)
        progress(len(rows))
        return out, done

    def arrive(b: int):
        rows = _bucket_rows(root, m, b)
        progress(len(rows))
        if b in src:
            rows = rows.take(~np.isin(rows.names, olds)[rows.code])
        return _segments(root, combine([rows, *(read_rows(root, f) for f in staged.get(b, []))]), b, gen)

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        for out, done in pool.map(leave, sorted(src)):
            for f in out:
                staged.setdefault(f.bucket, []).append(f)
            if done is not None:
                files += done[0]
                stats.append(done[1])
        for entries, st in pool.map(arrive, sorted(todo - (src - dst))):
            files += entries
            stats.append(st)
    return Rewrite(files, [f for fs in staged.values() for f in fs], stats, todo)


# ----------------------------------------------------------------------------- migration
@dataclass(frozen=True)
class Migration:
    """A migration written but not committed: the manifest to commit, the files it supersedes."""

    manifest: Manifest
    superseded: list[str]
    before: Manifest
    buckets: int  # rewritten
    rows: int     # written
    renamed: tuple[tuple[str, str], ...]

    def summary(self, action: str) -> MaintenanceSummary:
        return MaintenanceSummary(action, True, self.buckets, len(self.before.files),
                                  len(self.manifest.files), self.rows, renamed=self.renamed,
                                  upgraded=self.before.version == 1)


def migrate(root: Path, m: Manifest, chosen: Mapping[str, str] | None, where: str,
            progress: Callable[[float, float], None] | None = None) -> Migration | None:
    """Write the files of a migration of ``m`` (lock held, manifest and files checked), or
    None when there is nothing to do (v2, every name as the rule has it)."""
    renames = plan_renames(m, chosen, where)
    if m.version != 1 and not renames:
        return None
    src, dst, todo = _buckets(m, renames)
    read = src | (todo - (src - dst))  # src buckets that also receive rows are read twice
    report = Reporter(progress, sum(f.rows for f in m.files if f.bucket in read)
                      + sum(f.rows for f in m.files if f.bucket in src & dst))
    gen = m.generation + (1 if renames else 0)
    r = rewrite(root, m, renames, gen, report.advance)
    if m.version == 1:  # built from the rewritten rows: under the new names already
        table = _changed_in(TickerTable.from_parts(r.stats, m.generation), renames, gen)
    else:
        table = _renamed_table(m.tickers, renames, gen)
    log, log_old = list(m.changes), []
    if renames:
        new = np.array(sorted(renames.values()), dtype=object)
        log, log_old = changelog.append(root, m.with_(tickers=table), gen, new,
                                        table.first[table.positions(new)])
    kept = [f for f in m.files if f.bucket not in r.buckets]
    m2 = Manifest(store_id=m.store_id, buckets=m.buckets, generation=gen, commit=m.commit + 1,
                  horizon=m.generation if m.version == 1 else m.horizon,
                  files=tuple(kept + r.files), changes=tuple(log), tickers=table)
    superseded = ([f.name for f in m.files if f.bucket in r.buckets] + [f.name for f in r.staged]
                  + [e.name for e in log_old])
    report.done()
    return Migration(m2, superseded, m, len(r.buckets), sum(f.rows for f in r.files),
                     tuple(sorted(renames.items())))


def _renamed_table(t: TickerTable, renames: Mapping[str, str], gen: int) -> TickerTable:
    """The ticker table with renamed tickers under their new names, changed in ``gen``."""
    names = np.array([renames.get(n, n) for n in t.names.tolist()], dtype=object)
    order = np.argsort(names, kind="stable")
    return _changed_in(TickerTable(names[order], t.first[order], t.last[order], t.rows[order],
                                   t.gen[order]), renames, gen)


def _changed_in(t: TickerTable, renames: Mapping[str, str], gen: int) -> TickerTable:
    """``t`` with the renamed tickers' (new names') last changing generation set to ``gen``."""
    changed = np.isin(t.names, np.array(list(renames.values()), dtype=object))
    return TickerTable(t.names, t.first, t.last, t.rows, np.where(changed, gen, t.gen))
