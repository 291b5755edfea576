"""``PriceStore``: the public face of the price store (see the package doc for the design)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from quantfit._atomic import TMP_INFIX, exclusive_lock, fsync_dir, write_json_atomic
from quantfit.data.frames import DATE_DTYPE, validate_long
from quantfit.data.store import changes as changelog
from quantfit.data.store import migrating, writing
from quantfit.data.store.layout import DATA_DIR, FIELDS, bucket_of
from quantfit.data.store.manifest import MANIFEST, Manifest, parse
from quantfit.data.store.reading import day_of, lower_bounds, parse_bound, read_wide, v1_ticker_table
from quantfit.data.store.summaries import IngestSummary, MaintenanceSummary, Reporter, VerifyReport
from quantfit.data.store.verify import check_store
from quantfit.data.tickers import normalize_tickers, unknown_tickers_error
from quantfit.errors import DataError

LOCK_FILE = ".lock"
DEFAULT_BUCKETS = 64
_READ_ATTEMPTS = 20

#: ``progress(done, total)``: how long operations report their progress (see quantfit.progress).
Progress = Callable[[float, float], None]


class PriceStore:
    """A directory of parquet files holding daily prices for many tickers (package doc).

    Parameters
    ----------
    path : store directory; created by the first ``ingest``. Opening or reading never writes.
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
    def _load(self) -> Manifest | None:
        """The committed manifest, validated completely; None when none was committed."""
        if self.path.exists() and not self.path.is_dir():
            raise DataError(f"store path {self.path} is not a directory")
        path = self.path / MANIFEST
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} is damaged: not JSON ({exc}); run 'quantfit store verify'") from None
        return parse(obj, path)

    def _manifest(self) -> Manifest:
        """For readers: the manifest of an existing store, else ``DataError``."""
        m = self._load()
        if m is None:
            if not self.path.exists():
                raise DataError(f"no store at {self.path} (create one with ingest)")
            m = Manifest.new(self._new_buckets)  # an empty directory reads as an empty store
        return m

    def _read(self, fn: Callable[[Manifest], object]):
        """Run ``fn`` on one committed manifest; if a writer removed a superseded file under
        us, start again on the new manifest. A file the current manifest still lists but that
        is gone is damage: ``DataError`` at once."""
        for attempt in range(_READ_ATTEMPTS):
            m = self._manifest()
            try:
                return fn(m)
            except FileNotFoundError as exc:
                name = Path(exc.filename or "").name
                if name in self._manifest().live_names():
                    raise DataError(f"data file {self.path / DATA_DIR / name} is missing "
                                    f"(listed in {MANIFEST}); run 'quantfit store verify'") from None
                time.sleep(0.01 * (attempt + 1))
        raise DataError(f"store {self.path} kept changing while reading; try again")

    # ----------------------------------------------------------------------------- metadata
    @property
    def generation(self) -> int:
        """The last committed generation: the number of ingests that changed rows (and of
        migrations that renamed tickers)."""
        return self._manifest().generation

    @property
    def store_id(self) -> str:
        """A stable id (32 hex digits) fixed when the store was created (for a v1 store: derived
        from its path, and kept by the migration)."""
        m = self._load()
        if m is None:
            raise DataError(f"no store at {self.path} (nothing committed yet): it has no id")
        return m.store_id

    def tickers(self) -> list[str]:
        """All tickers in the store, sorted ([] for an empty or missing store)."""
        m = self._load()
        return [] if m is None else m.tickers.names.tolist()

    def _resolve(self, m: Manifest, tickers) -> np.ndarray:
        """Requested tickers -> sorted unique known names (upper-cased by the ticker rule:
        ``"aapl"`` finds ``AAPL``); ``DataError`` naming unknown ones."""
        if tickers is None:
            return m.tickers.names
        wanted = np.array(sorted(normalize_tickers(tickers)), dtype=object)
        if not len(wanted):
            raise DataError("empty ticker list")
        unknown = wanted[m.tickers.positions(wanted) < 0]
        if len(unknown):
            raise unknown_tickers_error(unknown.tolist(), m.tickers.names.tolist(), f"store {self.path}")
        return wanted

    def ticker_info(self, tickers: Iterable[str] | str | None = None) -> pd.DataFrame:
        """Per ticker, from the manifest (no data file is read): ``first``/``last`` date,
        ``rows`` stored, and ``generation``, the last generation that added or replaced one of
        its rows. Index ``ticker`` (sorted). (A v1 store records none of this: its files are
        read to answer.)"""
        def info(m: Manifest) -> pd.DataFrame:
            names = self._resolve(m, tickers)
            t = m.tickers
            if m.version == 1:
                t = v1_ticker_table(self.path, m)
            pos = t.positions(names)
            def dates(a):
                return pd.DatetimeIndex(a[pos].astype("datetime64[D]")).astype(DATE_DTYPE)

            return pd.DataFrame({"first": dates(t.first), "last": dates(t.last), "rows": t.rows[pos],
                                 "generation": t.gen[pos]},
                                index=pd.Index(names.tolist(), name="ticker", dtype=object))
        return self._read(info)

    def ticker_groups(self, tickers: Iterable[str] | None = None, size: int = 1000) -> list[list[str]]:
        """Split tickers into groups of about ``size`` that share data files.

        Tickers of one bucket always land in the same group (unless a bucket alone holds more
        than ``size`` of them), so reading the groups one after the other reads each file once:
        a group's full history costs in proportion to the group, not the store. Groups come in
        bucket order, each sorted by name; with the default 64 buckets a group of ``size=1000``
        holds whole buckets of ~``n_tickers / 64`` tickers each.
        """
        if not (isinstance(size, int) and size >= 1):
            raise DataError(f"size must be a positive integer, got {size!r}")
        m = self._manifest()
        names = self._resolve(m, tickers).tolist()
        by_bucket: dict[int, list[str]] = {}
        for t in names:
            by_bucket.setdefault(bucket_of(t, m.buckets), []).append(t)
        groups: list[list[str]] = []
        current: list[str] = []
        for b in sorted(by_bucket):
            members = by_bucket[b]
            if current and len(current) + len(members) > size:
                groups.append(current)
                current = []
            while len(members) > size:
                groups.append(members[:size])
                members = members[size:]
            current += members
        return [sorted(g) for g in groups + ([current] if current else [])]

    def changes_since(self, generation: int) -> changelog.ChangeSet:
        """``{ticker: earliest date changed}`` for every ticker with rows added or replaced by
        ingests after ``generation`` (see ``quantfit.data.store.changes``).

        Exact tickers; dates exact for recent generations and never later than the truth for
        older ones. The result's ``.generation`` is the store generation it is complete up to.
        Raises ``ChangesUnavailable`` (a ``DataError``) for a generation the store cannot answer
        for (before a v1 migration, or after its last generation): recompute in full.
        """
        return self._read(lambda m: changelog.since(self.path, m, generation))

    # ----------------------------------------------------------------------------- reading
    def prices(self, tickers: Iterable[str] | str | None = None,
               start=None, end=None, field: str = "close", *, lookback: int = 0) -> pd.DataFrame:
        """Wide prices: DatetimeIndex ``date`` (sorted) x tickers (sorted), float64.

        Parameters
        ----------
        tickers : tickers to return (all when None; the keys of ``start`` when it is a
            mapping); an unknown ticker raises ``DataError`` naming it. A ticker with no rows
            in the range comes back as an all-NaN column.
        start, end : inclusive date bounds (anything ``pd.Timestamp`` parses), optional.
            ``start`` may be a mapping ``{ticker: date}``: a lower bound per ticker (every
            requested ticker needs one).
        field : ``"close"`` (adjusted close) or ``"volume"``.
        lookback : also return each ticker's last ``lookback`` rows before its start (needs
            ``start``): ``prices(t, start=first_new_day, lookback=window)`` is what an
            incremental night reads, and only the newest files are touched.

        Rows are the dates on which at least one returned ticker has a row; cells with no row
        are NaN (nothing is filled). Only the files overlapping the request are read.
        """
        if field not in FIELDS:
            raise DataError(f"field must be one of {', '.join(FIELDS)}, got {field!r}")
        if isinstance(lookback, bool) or not isinstance(lookback, (int, np.integer)) or lookback < 0:
            raise DataError(f"lookback must be a non-negative integer, got {lookback!r}")
        hi = parse_bound(end, "end")
        bounds: dict[str, pd.Timestamp | None] | pd.Timestamp | None
        if isinstance(start, Mapping):
            bounds = {str(t): parse_bound(d, f"start for {t}") for t, d in start.items()}
            if tickers is None:
                tickers = list(bounds)
        else:
            bounds = one = parse_bound(start, "start")
            if one is not None and hi is not None and one > hi:
                raise DataError(f"start {one.date()} is after end {hi.date()}")
        if lookback and (bounds is None or (isinstance(bounds, dict) and not bounds)):
            raise DataError("lookback needs start (the rows before it are the look-back)")

        def read(m: Manifest) -> pd.DataFrame:
            if not len(m.tickers.names):
                raise DataError(f"store {self.path} is empty: ingest prices first")
            wanted = self._resolve(m, tickers)
            lo = lower_bounds(wanted, bounds, hi)
            return read_wide(self.path, m, wanted, lo, day_of(hi), field, int(lookback))
        return self._read(read)

    # ----------------------------------------------------------------------------- writing
    @contextlib.contextmanager
    def _writing(self, create: bool = False) -> Iterator[Manifest]:
        """Lock, load and check the manifest and every file it lists, remove what killed
        writers left; yields the manifest (``create``: a new store's empty one is committed
        first; otherwise a missing store is a ``DataError``)."""
        if self.path.exists() and not self.path.is_dir():
            raise DataError(f"store path {self.path} is not a directory")
        if not create and not (self.path / MANIFEST).exists():
            self._load()  # a v1/v2 manifest or nothing: say which
            raise DataError(f"no store at {self.path} (create one with ingest)")
        (self.path / DATA_DIR).mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.path / LOCK_FILE):
            m = self._load()
            if m is None:
                stray = [e.name for e in os.scandir(self.path / DATA_DIR) if e.name.endswith(".parquet")]
                if stray:
                    raise DataError(f"store {self.path} has {len(stray)} data file(s) but no {MANIFEST}: "
                                    f"damaged (or left by an interrupted first ingest: then delete "
                                    f"the directory); nothing was changed")
                m = Manifest.new(self._new_buckets)
                self._commit(m, [])
            self._check_files(m)
            self._remove_orphans(m)
            yield m

    def _check_files(self, m: Manifest) -> None:
        """Every listed file exists with its recorded size (cheap: one stat per file)."""
        for f in m.all_files():
            path = self.path / DATA_DIR / f.name
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise DataError(f"data file {path} is missing (listed in {MANIFEST}); "
                                f"run 'quantfit store verify'; nothing was changed") from None
            if f.bytes is not None and size != f.bytes:
                raise DataError(f"data file {path} is {'truncated' if size < f.bytes else 'damaged'} "
                                f"({size:,} bytes, the manifest says {f.bytes:,}); "
                                f"run 'quantfit store verify'; nothing was changed")

    def _remove_orphans(self, m: Manifest) -> None:
        """Delete data files no committed manifest names (left by killed writers). Lock held."""
        live = m.live_names()
        for entry in os.scandir(self.path / DATA_DIR):
            if entry.name.endswith(".parquet") and entry.name not in live:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        for entry in os.scandir(self.path):
            if entry.name.startswith(f"{MANIFEST}{TMP_INFIX}"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    def _commit(self, m: Manifest, superseded: list[str]) -> None:
        """Commit ``m`` (checked by the reader's own validation first), then delete the files
        it superseded (a crash after the commit leaves orphans only)."""
        obj = m.to_json()
        parse(json.loads(json.dumps(obj)), self.path / MANIFEST)  # never commit what we would refuse
        fsync_dir(self.path / DATA_DIR)
        write_json_atomic(self.path / MANIFEST, obj)
        for name in superseded:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path / DATA_DIR / name)

    def ingest(self, frame: pd.DataFrame, source: str | None = None, *,
               progress: Progress | None = None) -> IngestSummary:
        """Upsert a long frame (``date, ticker, close[, volume]``) by (date, ticker).

        The frame is validated completely first (``DataError`` on any problem, store
        untouched). Then, under the write lock: a v1 store is migrated (``migrate``; its
        tickers renamed by the ticker rule); a new ticker whose old spelling the store holds
        (``AAPL`` next to a stored ``aapl``) is refused: run ``migrate`` first; rows whose ticker
        already has rows on or around their date are compared with the stored ones (a pure
        append reads no stored rows); the added or replaced rows are written as new files
        (module doc: delta, merge or fold), the change is logged as a new generation, and the
        manifest is committed atomically. ``source`` only labels error messages; ``progress``
        is called as ``progress(done, total)``.
        """
        clean = validate_long(frame, source=source)
        has_volume = clean.attrs["has_volume"]
        counts = clean["ticker"].value_counts()
        input_tickers = tuple(sorted(str(t) for t in counts.index[counts.to_numpy() > 0]))
        start, end = clean["date"].min(), clean["date"].max()
        n_in = len(clean)
        with self._writing(create=True) as m:
            renamed: tuple[tuple[str, str], ...] = ()
            if m.version == 1:
                mig = self._migrate_locked(m, None)
                assert mig is not None  # a v1 store is always rewritten
                m, renamed = mig.manifest, mig.renamed
            known = m.tickers.positions(np.array(input_tickers, dtype=object)) >= 0
            new_tickers = tuple(t for t, k in zip(input_tickers, known) if not k)
            self._refuse_legacy_twins(m, new_tickers)
            parts = writing.split_input(clean, m.buckets)
            del clean
            report = Reporter(progress, 2 * n_in)  # refined once the writes are planned
            with ThreadPoolExecutor(max_workers=min(writing._WORKERS, len(parts))) as pool:
                changes = []
                for c in pool.map(lambda b: writing.classify(self.path, m, b, parts[b], has_volume), sorted(parts)):
                    changes.append(c)
                    report.advance(len(parts[c.bucket]))
            summary = {"rows_added": sum(c.n_added for c in changes),
                       "rows_replaced": sum(c.n_replaced for c in changes),
                       "rows_unchanged": sum(c.n_unchanged for c in changes),
                       "tickers": input_tickers, "new_tickers": new_tickers, "start": start, "end": end,
                       "renamed": renamed}
            new = {c.bucket: c.rows for c in changes if len(c.rows)}
            if not new:
                report.done()
                return IngestSummary(**summary, files_written=0, generation=m.generation)
            gen = m.generation + 1
            actions = writing.plan(m, new, sum(len(r) for r in new.values()))
            report.total = n_in + sum(a.old_rows + (len(a.new) if a.new is not None else 0) for a in actions)
            written, superseded = writing.run_actions(self.path, actions, gen, report.advance)
            table, ch_names, ch_days = writing.update_tickers(m.tickers, changes, gen)
            log, log_old = changelog.append(self.path, m, gen, ch_names, ch_days)
            gone = {f.name for f in superseded}
            self._commit(m.with_(generation=gen, commit=m.commit + 1, changes=tuple(log), tickers=table,
                                 files=tuple(f for f in m.files if f.name not in gone) + tuple(written)),
                         sorted(gone | {e.name for e in log_old}))
            report.done()
        return IngestSummary(**summary, files_written=len(written), generation=gen,
                             rows_rewritten=sum(a.old_rows for a in actions))

    # ----------------------------------------------------------------------------- maintenance
    def compact(self, *, full: bool = False, progress: Progress | None = None) -> MaintenanceSummary:
        """Fold every bucket's deltas into its segments (``full=True``: rewrite every segment
        with the canonical year partition). Changes no data, so it is not a generation; ingest
        already compacts when worthwhile. A v1 store is migrated instead (same effect)."""
        with self._writing() as m:
            if m.version == 1:
                mig = self._migrate_locked(m, progress)
                assert mig is not None  # a v1 store is always rewritten
                return mig.summary("compact")
            buckets = sorted({f.bucket for f in m.files if full or f.kind == "delta"})
            actions = [writing.fold_action(m, b, None, full=full)[0] for b in buckets]
            if not actions:
                return MaintenanceSummary("compact", done=False, files_before=len(m.files),
                                          files_after=len(m.files))
            report = Reporter(progress, sum(a.old_rows for a in actions))
            written, superseded = writing.run_actions(self.path, actions, m.generation, report.advance)
            gone = {f.name for f in superseded}
            files = tuple(f for f in m.files if f.name not in gone) + tuple(written)
            self._commit(m.with_(commit=m.commit + 1, files=files), sorted(gone))
            report.done()
            return MaintenanceSummary("compact", True, len(actions), len(m.files), len(files),
                                      sum(a.old_rows for a in actions))

    def migrate(self, *, rename: Mapping[str, str] | None = None,
                progress: Progress | None = None) -> MaintenanceSummary:
        """Bring a store written by an older quantfit up to date (``migrating``): rewrite a v1
        store in the current format, and rename every stored ticker the ticker rule changes
        (``aapl`` -> ``AAPL``), moving its rows to its new bucket. A rename is a change: the
        migration is then a new generation in which each renamed ticker changed from its
        first date. Nothing to do for a v2 store whose names follow the rule.

        ``rename``: ``{stored name: new name}`` chosen by the caller, for names the rule cannot
        rename: a stored name that is not a valid ticker, or two stored names that would
        become one (``aapl`` and ``AAPL``), which are refused (``DataError`` naming them, store
        untouched) unless one of them is given another name here.

        Crash-safe like any write, under the writer lock; ``ingest`` and ``compact`` migrate a
        v1 store on their own (by the rule, without ``rename``).
        """
        with self._writing() as m:
            mig = self._migrate_locked(m, progress, rename)
            if mig is None:
                return MaintenanceSummary("migrate", done=False, files_before=len(m.files),
                                          files_after=len(m.files))
            return mig.summary("migrate")

    def _migrate_locked(self, m: Manifest, progress: Progress | None,
                        rename: Mapping[str, str] | None = None) -> migrating.Migration | None:
        mig = migrating.migrate(self.path, m, rename, f"store {self.path}", progress)
        if mig is not None:
            self._commit(mig.manifest, mig.superseded)
        return mig

    def _refuse_legacy_twins(self, m: Manifest, new_tickers: tuple[str, ...]) -> None:
        """An ingest must not add ``AAPL`` next to a stored ``aapl`` (written before the ticker
        rule): that would make the two a collision ``migrate`` cannot resolve by the rule."""
        if not new_tickers:
            return
        legacy = migrating.legacy_spellings(m.tickers.names)
        twins = [t for t in new_tickers if t in legacy]
        if twins:
            raise unknown_tickers_error(twins, m.tickers.names.tolist(), f"store {self.path}")

    def verify(self, *, progress: Progress | None = None) -> VerifyReport:
        """Check every file the manifest lists: present, of its recorded size, and with its
        recorded SHA-256 (v1 files, which have none, are decoded instead). Reads everything;
        takes no lock and changes nothing. A damaged manifest is reported as a problem."""
        try:
            m = self._load()
        except DataError as exc:
            return VerifyReport(problems=[str(exc)])
        return check_store(self.path, m, self._load, progress)
