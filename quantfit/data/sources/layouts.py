"""Which kind of price CSV a file is, decided from its header alone.

Header names are matched case-insensitively, ignoring spaces, ``_ . - * < >`` (so ``Adj
Close``, ``adjusted_close``, ``<CLOSE>`` and ``Close*`` all match). Kinds:

* ``long`` -- a ticker column (``ticker``/``symbol``) and a close: one row per (date, ticker).
  Stooq's bulk files (``<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,...,<CLOSE>,<VOL>,<OPENINT>``)
  are long; their ``<PER>`` must be ``D`` (daily).
* ``history`` -- no ticker column but a close: **one ticker's history** as data vendors export
  it: Yahoo's download (``Date,Open,High,Low,Close,Adj Close,Volume``), stooq
  (``Date,Open,High,Low,Close,Volume``, or Polish ``Data,Otwarcie,...,Zamkniecie,Wolumen``),
  Alpha Vantage (``timestamp,open,high,low,close[,adjusted_close],volume,...``), yfinance's
  ``history().to_csv()``, or just ``Date,Close``. Every other column must be a known field.
* ``yahoo`` -- ``yfinance.download(...).to_csv()``: two header rows (``Price,Close,...`` and
  ``Ticker,AAPL,...``, either order) and a ``Date,,,`` row; one or many tickers.
* ``wide`` -- anything else: the first column holds dates, every other column is a ticker.
  A header whose "tickers" are all price-field names (``Date,Open,High,Low,Volume``) is
  refused: that is a history without a close, not a file of tickers named Open...Volume.

In ``long``, ``history`` and ``yahoo`` files the **adjusted close is preferred** (``Adj
Close``, ``adjusted_close``) and the plain close is used only when there is none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from quantfit.data.tickers import normalize_ticker
from quantfit.errors import DataError

_ALIASES = {
    "date": ("date", "timestamp", "datetime", "data"),
    "ticker": ("ticker", "symbol"),
    "adjclose": ("adjclose", "adjustedclose"),
    "close": ("close", "zamkniecie"),
    "volume": ("volume", "vol", "wolumen"),
    "period": ("per",),
}
#: Other price-file fields: recognized (a file of them is not a file of tickers), not read.
_OTHER_FIELDS = {"open", "high", "low", "otwarcie", "najwyzszy", "najnizszy", "time", "dividends",
                 "dividend", "dividendamount", "stocksplits", "splits", "splitcoefficient",
                 "capitalgains", "openint", "openinterest", "price", "change", "change%", "vwap",
                 "trades", "adjopen", "adjhigh", "adjlow", "adjvolume"}
_CANONICAL = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}
_FIELDS = set(_CANONICAL) | _OTHER_FIELDS
_IGNORED = re.compile(r"[\s_.\-*<>]")


def key(name: str) -> str:
    """A header name reduced for matching: lower case, no spaces or ``_ . - * < >``."""
    return _IGNORED.sub("", name).lower()


@dataclass
class Layout:
    """A file's kind and the positions of the columns to read (see the module doc)."""

    kind: str
    header_rows: int = 1
    date: int = 0
    ticker: int | None = None
    close: int | None = None
    volume: int | None = None
    period: int | None = None
    #: wide/yahoo: output ticker (as written) -> close column and volume column positions.
    closes: dict[str, int] = field(default_factory=dict)
    volumes: dict[str, int] = field(default_factory=dict)
    #: the header name of the close column read (long, history).
    close_name: str = ""


def _fields(header: list[str], where: str) -> dict[str, int]:
    """Canonical field -> column position; two columns meaning one field are refused."""
    found: dict[str, int] = {}
    for i, name in enumerate(header):
        canon = _CANONICAL.get(key(name))
        if canon is None:
            continue
        if canon in found:
            raise DataError(f"{where}ambiguous columns {header[found[canon]]!r} and {name!r} "
                            f"(both mean {canon}); keep one")
        found[canon] = i
    return found


def _yahoo(rows: list[list[str]], where: str) -> Layout | None:
    """``yfinance.download(...).to_csv()``: Price/Ticker header rows, then a Date row."""
    if len(rows) < 3 or not rows[0] or not rows[1] or not rows[2]:
        return None
    first = {key(rows[0][0]), key(rows[1][0])}
    if first != {"price", "ticker"} or key(rows[2][0]) not in ("date", "datetime") \
            or any(c.strip() for c in rows[2][1:]):
        return None
    fields, names = (rows[0], rows[1]) if key(rows[0][0]) == "price" else (rows[1], rows[0])
    if len(fields) != len(names):
        raise DataError(f"{where}the Price and Ticker header rows have different lengths")
    by_field: dict[str, dict[str, int]] = {}
    for j in range(1, len(fields)):
        canon = _CANONICAL.get(key(fields[j]))
        if canon in ("close", "adjclose", "volume"):
            per = by_field.setdefault(canon, {})
            t = names[j].strip()
            if t.upper() in {n.upper() for n in per}:
                raise DataError(f"{where}ticker {t} has two {fields[j]!r} columns")
            per[t] = j
    price = "adjclose" if "adjclose" in by_field else "close"
    if price not in by_field:
        raise DataError(f"{where}a yfinance file without a Close or Adj Close column")
    return Layout("yahoo", header_rows=3, closes=by_field[price], volumes=by_field.get("volume", {}),
                  close_name=fields[next(iter(by_field[price].values()))].strip())


def detect(rows: list[list[str]], where: str) -> Layout:
    """The layout of a CSV from its first rows (header first); ``where`` prefixes errors."""
    header = [c.strip() for c in rows[0]]
    yahoo = _yahoo(rows, where)
    if yahoo is not None:
        return yahoo
    found = _fields(header, where)
    price = found.get("adjclose", found.get("close"))
    if "ticker" in found and price is not None:
        if "date" not in found:
            raise DataError(f"{where}a long CSV needs a date column (date or timestamp) next to "
                            f"{header[found['ticker']]!r} and {header[price]!r}")
        return Layout("long", date=found["date"], ticker=found["ticker"], close=price,
                      volume=found.get("volume"), period=found.get("period"), close_name=header[price])
    if price is not None:
        date = found.get("date", 0)
        others = [h for i, h in enumerate(header) if i != date and key(h) not in _FIELDS]
        if others:
            raise DataError(f"{where}the header mixes price fields ({header[price]!r}) with other "
                            f"columns ({', '.join(map(repr, others[:5]))}): neither one ticker's "
                            f"history (Date,Open,High,Low,Close,Volume) nor a wide file (date,T1,T2,...)")
        return Layout("history", date=date, close=price, volume=found.get("volume"),
                      period=found.get("period"), close_name=header[price])
    if len(header) < 2:
        sep = next((s for s in (";", "\t", "|") if s in header[0]), None)
        if sep is not None:
            raise DataError(f"{where}the header is separated by {sep!r}: quantfit reads comma-separated "
                            "files (with '.' as the decimal point)")
        raise DataError(f"{where}a wide CSV needs a date column and at least one ticker column "
                        "(or use a long CSV with date,ticker,close columns)")
    names = header[1:]
    if all(key(h) in _FIELDS for h in names):
        raise DataError(f"{where}the columns {', '.join(map(repr, names[:6]))} are price fields, not "
                        f"tickers: one ticker's history needs a Close (or Adj Close) column; a wide "
                        f"file of tickers named like fields must be written long (date,ticker,close)")
    seen: dict[str, str] = {}
    for j, t in enumerate(names):
        norm = normalize_ticker(t, f"{where}header column {j + 2}: ")
        if norm in seen:
            spelled = f" ({seen[norm]!r} and {t!r})" if seen[norm] != t else ""
            raise DataError(f"{where}ticker {norm} appears twice in the header{spelled}")
        seen[norm] = t
    return Layout("wide", closes={t: j + 1 for j, t in enumerate(names)})
