"""One result set directory: its manifest (the commit point), part files, lock and clean-up.

Layout under an output directory ``out``::

    out/LATEST                                   key of the result set written most recently
    out/<key>/manifest.json                      the commit point (validated on every read)
    out/<key>/.lock                              fcntl lock; a writer holds it exclusively
    out/<key>/month=YYYY-MM/part-<group>-<generation>-<uuid>.parquet
    out/<key>/overlays/part-<group>-<generation>-<uuid>.parquet   (see ``overlays``)

``<key>`` is a short hash of the parameters that change the numbers, so each parameter set
has its own result set. Assets are kept in **groups** (a group is the unit of work of the
nightly job: a few hundred to a few thousand assets read, fitted and written together); each
(group, month) with estimates has exactly one live part file, named in the manifest (see
``encoding`` for its columns). Part files are immutable: a writer writes new, fsynced files,
then replaces ``manifest.json`` atomically, then deletes what the new manifest no longer names.
Readers trust only the manifest, so they see the old result set or the new one, never a mix,
and retry when a writer deletes a file under them. Files left by a killed writer are deleted
by the next writer (under the lock).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from quantfit._atomic import (
    exclusive_lock,
    fsync_dir,
    read_manifest,
    remove_temp_files,
    write_json_atomic,
)
from quantfit.errors import DataError

FORMAT = "quantfit-results"
VERSION = 2
MANIFEST = "manifest.json"
LATEST = "LATEST"
LOCK_FILE = ".lock"
#: Parquet codec of part files: lz4 is about as fast as no compression and a fifth smaller.
COMPRESSION = "lz4"

#: Top-level manifest keys and their JSON types (validated before anything trusts them).
_MANIFEST_TYPES: dict[str, type | tuple[type, ...]] = {
    "key": str, "generation": int, "params": dict, "meta": dict, "terms": list, "universe": list,
    "groups": list, "files": dict, "inputs": dict, "data": dict, "results": dict,
}


class ResultSet:
    """One result set directory ``out/<key>`` (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ResultSet({str(self.path)!r})"

    # ----------------------------------------------------------------------------- manifest
    def read_manifest(self) -> dict | None:
        """The committed manifest, checked, or None when nothing was committed here yet.

        A manifest of another format or version, or one with a missing or mistyped entry,
        raises ``DataError`` naming the file (it is never half-written: see ``commit``).
        """
        try:
            manifest = read_manifest(self.path / MANIFEST, FORMAT, VERSION, "results")
        except DataError:
            _raise_if_older(self.path / MANIFEST)
            raise
        if manifest is not None:
            check_manifest(manifest, self.path / MANIFEST)
        return manifest

    @contextlib.contextmanager
    def lock(self, on_wait=None) -> Iterator[None]:
        """Exclusive writer lock on this result set (created on first use)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.path / LOCK_FILE, on_wait=on_wait):
            yield

    # ----------------------------------------------------------------------------- files
    def part_name(self, group: int, month: str, generation: int) -> str:
        return f"month={month}/part-{group:04d}-{generation}-{uuid.uuid4().hex[:12]}.parquet"

    def write_part(self, group: int, month: str, table: pa.Table, generation: int) -> dict:
        """Write one (group, month) part to a fresh, fsynced file; returns its manifest entry."""
        return self._write(self.part_name(group, month, generation), table)

    def write_overlay(self, group: int, table: pa.Table, generation: int, codes: list[int],
                      through: str) -> dict:
        """Write a group's overlay (``overlays``: every window of the assets ``codes``, dated
        up to ``through``, sorted by date) to a fresh, fsynced file; returns its entry."""
        name = f"{OVERLAY_DIR}/part-{group:04d}-{generation}-{uuid.uuid4().hex[:12]}.parquet"
        # Row groups of about a month of a few dozen assets: readers of one month skip the rest.
        entry = self._write(name, table, row_group_size=OVERLAY_ROW_GROUP)
        return {**entry, "through": through, "assets": sorted(int(c) for c in codes)}

    def _write(self, name: str, table: pa.Table, row_group_size: int | None = None) -> dict:
        (self.path / name).parent.mkdir(exist_ok=True)
        with open(self.path / name, "wb") as fh:
            pq.write_table(table, fh, compression=COMPRESSION, use_dictionary=["asset"],
                           write_statistics=["date"], write_page_checksum=True,
                           row_group_size=row_group_size)
            fh.flush()
            os.fsync(fh.fileno())
        span = pc.min_max(table.column("date"))
        first, last = span["min"].as_py(), span["max"].as_py()
        return {"file": name, "rows": table.num_rows, "bytes": (self.path / name).stat().st_size,
                "first": None if first is None else str(first),
                "last": None if last is None else str(last)}

    def read_part(self, entry: dict, filters=None, columns=None) -> pa.Table:
        """Rows of one part file (``filters``: pyarrow filters on its columns).

        ``FileNotFoundError`` passes through (a concurrent writer may have replaced the file:
        readers retry with the new manifest); a damaged file raises ``DataError`` naming it.
        """
        path = self.path / entry["file"]
        try:
            table = pq.read_table(path, filters=filters, columns=columns, use_threads=False,
                                  page_checksum_verification=True)
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "no such result file", str(path)) from None
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"damaged result file {path}: {exc}") from None
        if filters is None and table.num_rows != entry["rows"]:
            raise DataError(f"damaged result file {path}: {table.num_rows} rows, "
                            f"the manifest says {entry['rows']}")
        return table

    def remove_orphans(self, manifest: dict | None) -> int:
        """Delete part files the manifest does not name (left by killed writers). Lock held."""
        live = set(live_files(manifest or {}))
        removed = 0
        if not self.path.exists():
            return 0
        for d in os.scandir(self.path):
            if not (d.is_dir() and (d.name.startswith("month=") or d.name == OVERLAY_DIR)):
                continue
            for f in os.scandir(d.path):
                if f"{d.name}/{f.name}" not in live:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f.path)
                        removed += 1
            with contextlib.suppress(OSError):  # succeeds only when the month is empty now
                os.rmdir(d.path)
        remove_temp_files(self.path, MANIFEST)
        return removed

    def commit(self, manifest: dict, superseded: list[str]) -> None:
        """Make ``manifest`` the committed state, then delete superseded files. Lock held."""
        check_manifest(manifest, self.path / MANIFEST)
        dirs = {Path(name).parent for name in live_files(manifest)}
        for d in dirs:
            fsync_dir(self.path / d)
        write_json_atomic(self.path / MANIFEST, manifest, indent=None)  # the commit point
        for name in superseded:  # after the commit: a crash here leaves orphans only
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path / name)
        for d in {Path(n).parent for n in superseded}:
            with contextlib.suppress(OSError):
                os.rmdir(self.path / d)


def live_files(manifest: dict) -> Iterator[str]:
    """Every file a manifest names: part files and overlays."""
    for months in manifest.get("files", {}).values():
        for e in months.values():
            yield e["file"]
    for overlays in manifest.get("overlays", {}).values():
        for e in overlays:
            yield e["file"]


def _raise_if_older(path: Path) -> None:
    """A manifest of an earlier results version gets a message that says what to do."""
    try:
        version = json.loads(path.read_text()).get("version")
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(version, int) and version < VERSION:
        raise DataError(f"{path.parent} was written by an older quantfit (results version "
                        f"{version}); run 'quantfit refresh' to rebuild it in a new result set")


#: What a live part file is called (a manifest naming anything else is damaged: never read
#: or delete a path it names outside the result set).
PART_NAME = re.compile(r"^month=(\d{4}-\d{2})/part-\d{4,}-\d+-[0-9a-f]{12}\.parquet$")
OVERLAY_DIR = "overlays"
OVERLAY_NAME = re.compile(r"^overlays/part-(\d{4,})-\d+-[0-9a-f]{12}\.parquet$")
#: Rows per row group of an overlay file.
OVERLAY_ROW_GROUP = 16384
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def check_manifest(m: dict, path: Path) -> None:
    """Raise ``DataError`` naming ``path`` unless ``m`` has every entry, of the right type,
    that a reader or the next run relies on (so a damaged manifest is reported, never half
    trusted)."""
    def bad(what: str) -> DataError:
        return DataError(f"damaged results manifest {path}: {what}")

    def check(ok: bool, what: str) -> None:
        if not ok:
            raise bad(what)

    def date_or_none(v) -> bool:
        return v is None or (isinstance(v, str) and bool(_DATE.match(v)))

    for k, typ in _MANIFEST_TYPES.items():
        check(isinstance(m.get(k), typ), f"missing or malformed {k!r}")
    check(bool(m["terms"]) and all(isinstance(t, str) for t in m["terms"]),
          "'terms' must be a non-empty list of names")
    check(all(isinstance(a, str) for a in m["universe"]), "'universe' must be a list of names")
    for g in m["groups"]:
        check(isinstance(g, dict) and isinstance(g.get("assets"), list)
              and all(isinstance(a, str) for a in g["assets"]), "a group without an asset list")
    for g, months in m["files"].items():
        check(g.isdigit() and int(g) < len(m["groups"]) and isinstance(months, dict),
              f"files of unknown group {g!r}")
        for month, e in months.items():
            name = e.get("file") if isinstance(e, dict) else None
            match = PART_NAME.match(name) if isinstance(name, str) else None
            check(match is not None and match.group(1) == month and isinstance(e.get("rows"), int)
                  and _DATE.match(str(e.get("first"))) is not None
                  and _DATE.match(str(e.get("last"))) is not None,
                  f"malformed entry for group {g}, month {month}")
    check(isinstance(m.get("overlays", {}), dict), "malformed 'overlays'")
    for g, overlays in m.get("overlays", {}).items():
        check(g.isdigit() and int(g) < len(m["groups"]) and isinstance(overlays, list),
              f"overlays of unknown group {g!r}")
        n_assets = len(m["groups"][int(g)]["assets"])
        for e in overlays:
            name = e.get("file") if isinstance(e, dict) else None
            match = OVERLAY_NAME.match(name) if isinstance(name, str) else None
            check(match is not None and int(match.group(1)) == int(g)
                  and isinstance(e.get("rows"), int) and date_or_none(e.get("first"))
                  and date_or_none(e.get("last")) and _DATE.match(str(e.get("through"))) is not None
                  and isinstance(e.get("assets"), list)
                  and all(isinstance(c, int) and 0 <= c < n_assets for c in e["assets"]),
                  f"malformed overlay of group {g}")
    inputs, data, res = m["inputs"], m["data"], m["results"]
    check(isinstance(inputs.get("store_id"), str) and isinstance(inputs.get("store_generation"), int),
          "'inputs' lacks the store's id and generation")
    check(date_or_none(data.get("last")) and date_or_none(data.get("first"))
          and isinstance(data.get("dates"), int) and isinstance(data.get("x_months"), dict),
          "'data' lacks first/last/dates/x_months")
    check(all(k in res for k in ("first", "last", "rows")) and date_or_none(res["first"])
          and date_or_none(res["last"]) and isinstance(res["rows"], int),
          "'results' lacks first/last/rows")
    check(isinstance(m.get("asset_rows", {}), dict)
          and all(isinstance(n, int) for n in m.get("asset_rows", {}).values()),
          "'asset_rows' must map assets to counts")


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
    except (UnicodeDecodeError, IsADirectoryError):
        raise DataError(f"{out / LATEST} is not a quantfit LATEST file") from None
    rs = ResultSet(out / key)
    if not key or not (rs.path / MANIFEST).exists():
        raise DataError(f"{out / LATEST} names result set {key!r}, which has no {MANIFEST}")
    return rs


def retrying(read, what: str, attempts: int = 20):
    """Run ``read()``; retry when a concurrent writer deleted a file we were about to read.

    A file that stays missing after the retries is damage: ``DataError`` naming it.
    """
    last: FileNotFoundError | None = None
    for attempt in range(attempts):
        try:
            return read()
        except FileNotFoundError as exc:
            last = exc
            time.sleep(0.005 * (attempt + 1))
    raise DataError(f"{what}: result file {getattr(last, 'filename', '?')} is missing "
                    f"(the manifest names it; run 'quantfit refresh' to rebuild)")
