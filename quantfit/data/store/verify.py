"""``PriceStore.verify``: every listed file present, of its recorded size and SHA-256."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from quantfit._atomic import sha256_file
from quantfit.data.store.layout import DATA_DIR, FIELDS, read_table
from quantfit.data.store.manifest import MANIFEST, ChangesEntry, FileEntry, Manifest
from quantfit.data.store.summaries import Reporter, VerifyReport
from quantfit.errors import DataError


def check_store(root: Path, m: Manifest | None, reload: Callable[[], Manifest | None],
                progress=None) -> VerifyReport:
    """Check the files of the committed manifest ``m`` (``reload`` re-reads it: a file a
    writer superseded meanwhile is not damage)."""
    data = root / DATA_DIR
    on_disk = {e.name for e in os.scandir(data)} if data.is_dir() else set()
    stray = sorted(n for n in on_disk if n.endswith(".parquet"))
    if m is None and not stray:
        raise DataError(f"no store at {root}")
    if m is None:
        return VerifyReport(problems=[f"{root / MANIFEST} is missing but {data} holds "
                                      f"{len(stray)} data files"])
    entries = m.all_files()
    report = Reporter(progress, sum(f.bytes or 0 for f in entries) or len(entries))
    problems, checked, nbytes = [], 0, 0
    for f in entries:
        path = data / f.name
        problem = _check_file(path, f)
        if problem and "missing" in problem and f.name not in (reload() or m).live_names():
            continue  # superseded by a writer meanwhile, not damage
        if problem:
            problems.append(problem)
        checked += 1
        nbytes += f.bytes or 0
        report.advance(f.bytes or 1)
    report.done()
    notes = []
    leftovers = sorted(n for n in on_disk - m.live_names() if n.endswith(".parquet"))
    if leftovers:
        notes.append(f"note: {len(leftovers)} leftover file(s) of interrupted writes in {data} "
                     f"(harmless; the next write removes them)")
    if m.version == 1:
        notes.append("note: format v1 records no checksums (files were decoded instead); "
                     "'quantfit store migrate' upgrades it")
    return VerifyReport(files=checked, bytes=nbytes, problems=problems, notes=notes)


def _check_file(path: Path, f: FileEntry | ChangesEntry) -> str | None:
    """One line describing what is wrong with a listed file, or None."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"{path}: missing"
    if f.bytes is not None and size != f.bytes:
        return f"{path}: {'truncated' if size < f.bytes else 'wrong size'} ({size:,} bytes, expected {f.bytes:,})"
    if f.sha256 is None:
        try:
            read_table(path.parent.parent, f.name, ["date", "ticker", *FIELDS], None)
        except (DataError, OSError) as exc:
            return f"{path}: cannot be decoded ({exc})"
        return None
    if sha256_file(path) != f.sha256:
        return f"{path}: checksum mismatch (content changed since it was written)"
    return None


