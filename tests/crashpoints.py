"""Fault injection for crash tests: make a child process SIGKILL itself at a chosen moment.

Imported by the child scripts of test_store.py and test_refresh.py (which put this folder on
``sys.path``). ``arm(mode)`` patches the I/O calls the writers use; modes:

* ``write:k``       die half-way through writing the k-th parquet file (half the bytes flushed;
                    the price store encodes into memory first, so there it dies before the file);
* ``file:k``        die half-way through the k-th new data file of the price store (half its
                    bytes on disk, not fsynced: ``quantfit._atomic.write_new_file``);
* ``before_commit`` die just before ``manifest.json`` is replaced (the commit point);
* ``after_commit``  die just after it was replaced;
* ``unlink:k``      die at the k-th deletion of a superseded data file (after the commit);
* ``timed``         no patch: the parent kills the child after a delay.
"""

from __future__ import annotations

import io
import os
import signal

import pyarrow.parquet as pq


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(mode: str) -> str:
    """Install the hook for ``mode``; returns its kind (the part before ``:``)."""
    kind, _, arg = mode.partition(":")
    if kind == "write":
        k, real, count = int(arg), pq.write_table, [0]

        def write_table(table, where, **kw):
            count[0] += 1
            if count[0] < k:
                return real(table, where, **kw)
            buf = io.BytesIO()
            real(table, buf, **kw)
            where.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            where.flush()
            die()

        pq.write_table = write_table
    elif kind == "file":
        from quantfit import _atomic
        k, real_new, count = int(arg), _atomic.write_new_file, [0]

        def write_new_file(path, data):
            count[0] += 1
            if count[0] < k:
                return real_new(path, data)
            with open(path, "xb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
            die()

        _atomic.write_new_file = write_new_file
    elif kind in ("before_commit", "after_commit"):
        real_replace = os.replace

        def replace(a, b):
            if str(b).endswith("manifest.json"):
                if kind == "after_commit":
                    real_replace(a, b)
                die()
            return real_replace(a, b)

        os.replace = replace
    elif kind == "unlink":
        k, real_unlink, count = int(arg), os.unlink, [0]

        def unlink(p, *a, **kw):
            count[0] += 1
            if count[0] >= k and "/data/" in str(p):
                die()
            return real_unlink(p, *a, **kw)

        os.unlink = unlink
    elif kind != "timed":
        raise ValueError(f"unknown crash point {mode!r}")
    return kind
