"""Crash-safe file primitives shared by the price store, the result sets and the report.

* ``fsync_dir(path)``: make a directory's entries (new names, renames) durable;
* ``atomic_open(path)``: write through a temp file in the same directory renamed over
  ``path`` (optionally fsynced): readers see the old file or the new one, never half of one;
* ``write_json_atomic(path, obj)``: ``atomic_open`` with fsync, for JSON commit points;
* ``read_manifest(path, fmt, version, what)``: a committed JSON manifest, checked, or None;
* ``exclusive_lock(lock_path)``: an ``fcntl.flock`` held for the ``with`` block, so writers
  (threads or processes) on the same directory are serialized;
* ``write_new_file(path, data)``: create a file that must not exist yet, write it, fsync it
  (immutable data files whose names a manifest commits later);
* ``sha256_bytes(data)`` / ``sha256_file(path)``: the checksums manifests record per file.

Temp files are named ``<name>.tmp-<hex>`` so that a writer can delete those left by a killed
predecessor (see ``TMP_INFIX``). POSIX only (``fcntl``), like the rest of quantfit's storage.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from quantfit.errors import DataError

#: Temp files of ``atomic_open`` are ``<target name><TMP_INFIX><hex>``.
TMP_INFIX = ".tmp-"


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory, so the names created or renamed in it survive a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, durable: bool = False,
                **open_kwargs) -> Iterator[IO]:
    """Write ``path`` through a temp file beside it, renamed over ``path`` when the block ends.

    Readers see the old file or the new one, never half of one; if the block raises, the temp
    file is removed and ``path`` is untouched. ``durable=True`` also fsyncs the file before the
    rename and the directory after it (for commit points that must survive a power loss).
    The file gets the usual umask permissions (a web server can read a report).
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}{TMP_INFIX}{uuid.uuid4().hex}")
    try:
        with open(tmp, mode.replace("w", "x"), **open_kwargs) as fh:
            yield fh
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)  # the commit point
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def write_json_atomic(path: str | os.PathLike, obj: Any, **dump_kwargs) -> None:
    """Atomically and durably replace ``path`` with ``obj`` as JSON (see ``atomic_open``).

    ``dump_kwargs`` go to ``json.dumps`` (default: compact separators); encoding the whole
    text at once takes the C encoder, several times faster than ``json.dump``'s chunks for a
    manifest of thousands of entries.
    """
    dump_kwargs.setdefault("separators", (",", ":"))
    text = json.dumps(obj, **dump_kwargs)
    with atomic_open(path, "w", durable=True) as fh:
        fh.write(text)


@contextlib.contextmanager
def exclusive_lock(lock_path: str | os.PathLike,
                   on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if needed) for the block.

    ``on_wait`` is called once if another holder makes us wait (e.g. to log it); the lock is
    then awaited without a timeout, like a second cron run queueing behind the first.
    """
    with open(lock_path, "a+") as fh:
        if on_wait is None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        else:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                on_wait()
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def read_manifest(path: str | os.PathLike, fmt: str, version: int, what: str) -> dict | None:
    """Read the JSON manifest at ``path``: None when none was committed yet.

    A file that is not JSON, not of format ``fmt``, or of another ``version`` raises
    ``DataError`` naming ``what`` (e.g. "store", "results"): a foreign file, never ours half-written.
    """
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise DataError(f"{path.parent} is not a directory") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a quantfit {what} manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        raise DataError(f"{path} is not a quantfit {what} manifest")
    if manifest.get("version") != version:
        raise DataError(f"{path.parent}: unsupported {what} version {manifest.get('version')!r}")
    return manifest


def remove_temp_files(directory: str | os.PathLike, target_name: str) -> None:
    """Delete temp files of ``atomic_open(directory / target_name)`` left by killed writers."""
    prefix = f"{target_name}{TMP_INFIX}"
    for entry in os.scandir(directory):
        if entry.name.startswith(prefix):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)


def write_new_file(path: str | os.PathLike, data: bytes) -> None:
    """Create ``path`` (it must not exist), write ``data`` and fsync it.

    For immutable data files with fresh names: nothing refers to them until a manifest that
    names them is committed, so no rename is needed; a writer killed half-way leaves an orphan
    that the next writer deletes. Fsync the directory (``fsync_dir``) before that commit.
    """
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data`` (about 1.3 GB/s here: cheap next to writing the bytes)."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in ``chunk``-sized pieces (bounded memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
