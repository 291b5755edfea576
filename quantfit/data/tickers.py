"""Ticker names: one rule for every input (sources, the store, look-ups, the command line).

A ticker is **upper-cased** (as yfinance does: Yahoo symbols are case-insensitive, so
``aapl`` and ``AAPL`` are one security) after surrounding whitespace is stripped, and must
then be 1 to ``MAX_LEN`` characters drawn from ``A-Z``, ``0-9`` and ``. - / ^ = _ & : + @ $``
(``BRK.B``, ``BRK/B``, ``BRK-B``, ``^GSPC``, ``EURUSD=X``, ``M&M.NS``, ``AAPL.US``, ``.SPX``).
Anything else (a space or control character inside, a comma, quotes, non-ASCII letters) is
refused, never repaired. ``NA``, ``NaN``, ``null`` and ``None`` are ordinary tickers (``NA``
trades on the TSX): only a truly missing value (``None``/NaN in a frame, an empty cell) is a
missing ticker.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from quantfit.errors import DataError

MAX_LEN = 32
#: The characters a ticker may contain after upper-casing, as documented.
ALLOWED = "A-Z, 0-9 and . - / ^ = _ & : + @ $"
#: A ticker in its normal form (already stripped and upper-cased), as a regular expression.
TICKER_PATTERN = rf"[A-Z0-9.\-/^=_&:+@$]{{1,{MAX_LEN}}}"
_TICKER = re.compile(TICKER_PATTERN)


def ticker_problem(name: str, shown: str | None = None) -> str | None:
    """Why the (already stripped and upper-cased) ``name`` is not a valid ticker, or None.

    ``shown`` is the name as the user wrote it, for the message (default ``name``).
    """
    if _TICKER.fullmatch(name):
        return None
    shown = name if shown is None else shown
    if not name:
        return "empty ticker name"
    if len(name) > MAX_LEN:
        return f"ticker {shown[:MAX_LEN]!r}... is longer than {MAX_LEN} characters"
    bad = next(c for c in name if not _TICKER.fullmatch(c))
    what = ("a space" if bad == " " else "a control character" if (ord(bad) < 32 or ord(bad) == 127)
            else "whitespace" if bad.isspace() else f"{bad!r}")
    return f"ticker {shown!r} contains {what} (allowed: {ALLOWED})"


def normalize_ticker(name, where: str = "") -> str:
    """One ticker, stripped and upper-cased; ``DataError`` (prefixed by ``where``) if invalid.

    Accepts ``str`` and integers (``7203`` -> ``"7203"``); other types are refused.
    """
    if isinstance(name, bool) or not isinstance(name, (str, int)):
        raise DataError(f"{where}bad ticker {name!r}: tickers are text")
    text = str(name).strip()
    problem = ticker_problem(text.upper(), text)
    if problem:
        raise DataError(f"{where}{problem}")
    return text.upper()


def normalize_tickers(names: Iterable | str, where: str = "") -> list[str]:
    """Tickers normalized by ``normalize_ticker``; order kept, duplicates (after upper-casing)
    dropped. A single string is one ticker (``"BRK/B"``), never split.
    """
    if isinstance(names, str):
        names = [names]
    return list(dict.fromkeys(normalize_ticker(n, where) for n in names))


def unknown_tickers_error(unknown: list[str], stored: Iterable[str], where: str) -> DataError:
    """The error for look-ups of tickers a store does not hold.

    A store written before the ticker rule may hold ``aapl``: asking for ``aapl`` or ``AAPL``
    then names the stored spelling and ``quantfit store migrate`` (which renames such tickers)
    instead of calling the ticker unknown, so old data is never silently unreachable.
    """
    legacy = {str(t).strip().upper(): t for t in stored if str(t).strip().upper() != t}
    old = [legacy[t] for t in unknown if t in legacy]
    if old:
        return DataError(f"{where} holds {', '.join(map(repr, old))}, written before tickers were "
                         f"upper-cased; run 'quantfit store migrate' to rename "
                         f"{'them' if len(old) > 1 else 'it'} to {', '.join(t for t in unknown if t in legacy)}")
    return DataError(f"unknown ticker{'s' if len(unknown) > 1 else ''} in {where}: {', '.join(unknown)}")
