"""Reading user-named text files safely: regular files only, bounded reads, clear errors.

Every file a user names (a price CSV, a config file, a universe file) goes through
``check_regular`` before it is opened: a FIFO would block ``open`` forever and a device such
as ``/dev/zero`` never ends, so anything that is not a regular file is refused up front.
What is read before validation is bounded (``read_head``, ``read_text``), so a huge file
without line breaks costs at most the bound, never all of memory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from quantfit.errors import DataError


def check_regular(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a Path if it is an existing regular file (symlinks followed); else DataError."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{what} {path}: no such file") from None
    except NotADirectoryError:
        raise DataError(f"{what} {path}: no such file (a parent is not a directory)") from None
    except PermissionError:
        raise DataError(f"{what} {path}: permission denied") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{what} {path}: is a directory, not a file")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a device" if
                (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        raise DataError(f"{what} {path}: is {kind}; give a regular file")
    return path


def read_head(path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes`` bytes from the start of a (checked) regular file."""
    try:
        with open(path, "rb") as fh:
            return fh.read(max_bytes)
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None


def decode_text(blob: bytes, path: Path, what: str) -> str:
    """UTF-8 text (a leading BOM dropped); anything else is a DataError naming the byte."""
    if blob[:2] == b"\x1f\x8b":
        raise DataError(f"{what} {path}: gzip-compressed; decompress it first")
    if blob[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(f"{what} {path}: UTF-16 text; save the file as UTF-8")
    if b"\x00" in blob:
        raise DataError(f"{what} {path}: binary data (NUL bytes), not a text file")
    try:
        return blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = blob[:exc.start].count(b"\n") + 1
        raise DataError(f"{what} {path}: not UTF-8 text (byte 0x{blob[exc.start]:02x} on line {line}); "
                        "save the file as UTF-8") from None


def read_text(path: str | os.PathLike, what: str, max_bytes: int) -> str:
    """The whole UTF-8 text of a regular file of at most ``max_bytes`` bytes, or DataError."""
    path = check_regular(path, what)
    size = path.stat().st_size
    if size > max_bytes:
        raise DataError(f"{what} {path}: {size:,} bytes, larger than the {max_bytes:,} allowed")
    blob = read_head(path, max_bytes + 1)
    if len(blob) > max_bytes:  # grew between stat and read
        raise DataError(f"{what} {path}: larger than the {max_bytes:,} bytes allowed")
    return decode_text(blob, path, what)
