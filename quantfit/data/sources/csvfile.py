"""``qf.sources.csv``: prices from a CSV file -- long, wide, one ticker's history, or yfinance's.

The layout is decided from the header (``quantfit.data.sources.layouts``):

* **long** ``date,ticker,close[,volume]`` (any case; ``symbol`` for ticker, ``timestamp`` for
  date; stooq's ``<TICKER>,<PER>,<DATE>,...`` bulk files too): one row per (date, ticker);
* **one ticker's history** as vendors export it (Yahoo ``Date,Open,High,Low,Close,Adj
  Close,Volume``, stooq, Alpha Vantage, ``Date,Close``): the ticker is ``ticker=`` or, when
  not given, the file name's stem (``AAPL.csv`` -> AAPL; said in ``frame.attrs["notes"]``);
* **yfinance** ``download(...).to_csv()`` files (``Price``/``Ticker``/``Date`` header rows);
* **wide** ``date,T1,T2,...``: the first column holds dates, every other column is a ticker.

The adjusted close is used whenever the file has one (``Adj Close``, ``adjusted_close``).
Empty cells in wide, history and yfinance files mean "no price that day" and are dropped; in
a long file every row needs a close. Dates follow ``quantfit.data.dates`` (one format per
column; ``date_format=`` states it), tickers ``quantfit.data.tickers`` (upper-cased; ``NA``,
``NaN`` and ``null`` are tickers, never missing values).

Only regular files are read: a FIFO or a device (``/dev/zero``) is refused before it is
opened, and the header is read with a bound (``MAX_HEADER_BYTES``), so a file without line
breaks cannot exhaust memory. Parsing uses pyarrow's multi-threaded reader (a 12.6 M-row file
loads in seconds); a row longer than ``BLOCK_SIZE`` is refused as malformed.
"""

from __future__ import annotations

import csv as _csv
import io
import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from quantfit._files import check_regular, decode_text, read_head
from quantfit.data.dates import parse_dates
from quantfit.data.frames import to_long, validate_long
from quantfit.data.sources.layouts import Layout, detect
from quantfit.data.tickers import normalize_ticker, ticker_problem
from quantfit.errors import DataError

#: The most bytes read to find the header rows; a first line longer than this is refused.
MAX_HEADER_BYTES = 1 << 20
#: pyarrow's block size: also the longest row accepted.
BLOCK_SIZE = 1 << 24
_TEXT = pa.dictionary(pa.int32(), pa.string())


def _head_rows(path: Path) -> list[list[str]]:
    """The first three rows of the file, split as CSV, read with a bound."""
    blob = read_head(path, MAX_HEADER_BYTES)
    if len(blob) == MAX_HEADER_BYTES:
        cut = blob.rfind(b"\n")
        if cut < 0:
            raise DataError(f"{path}: no line break in the first {MAX_HEADER_BYTES:,} bytes: "
                            "not a CSV price file")
        blob = blob[:cut + 1]
    text = decode_text(blob, path, "CSV file")
    rows = list(itertools.islice(_csv.reader(io.StringIO(text)), 3))
    if not rows or not any(c.strip() for c in rows[0]):
        raise DataError(f"{path}: empty file (no header row)")
    return rows


def _read(path: Path, width: int, skip: int, text_columns: list[int], include: list[int] | None,
          null_text: bool) -> pa.Table:
    """The data rows (after ``skip`` header rows), columns named ``c0, c1, ...`` by position;
    ``text_columns`` stay text (dates, tickers: never inferred, ``NA`` stays ``NA``)."""
    names = [f"c{i}" for i in range(width)]
    try:
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=True, block_size=BLOCK_SIZE, skip_rows=skip,
                                           column_names=names),
            convert_options=pacsv.ConvertOptions(
                column_types={names[i]: _TEXT for i in text_columns},
                include_columns=None if include is None else [names[i] for i in include],
                strings_can_be_null=null_text),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"{path}: malformed CSV: {exc}") from None


def _to_float(col: pa.ChunkedArray, ticker: str, dates: pd.Series, path: Path) -> np.ndarray:
    """A price column as float64 (empty = NaN); text or booleans raise, naming ticker and date."""
    if pa.types.is_boolean(col.type):
        raise DataError(f"{path}: the prices of ticker {ticker} are true/false values, not numbers")
    if pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_null(col.type):
        return col.cast(pa.float64()).to_numpy(zero_copy_only=False)
    raw = col.to_pandas()
    num = pd.to_numeric(raw, errors="coerce")
    bad = num.isna() & raw.notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: non-numeric price {raw.iloc[i]!r} for ticker {ticker} on "
                        f"{dates.iloc[i].date().isoformat()} (data row {i + 1})")
    return num.to_numpy(dtype="float64", na_value=np.nan)


def _check_daily(table: pa.Table, layout: Layout, path: Path) -> None:
    """Stooq's ``<PER>`` column: only daily rows (``D``) are prices of a day."""
    if layout.period is None:
        return
    per = table.column(f"c{layout.period}").to_pandas().astype(str).str.strip().str.upper()
    bad = (per != "D").to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: period {per.iloc[i]!r} in data row {i + 1}: only daily data (D) "
                        "can be ingested")


def _history_ticker(path: Path, ticker: str | None) -> tuple[str, bool]:
    """The ticker of a one-ticker file: ``ticker`` or the file name's stem (and whether defaulted)."""
    if ticker is not None:
        return normalize_ticker(ticker, f"{path}: ticker= "), False
    problem = ticker_problem(path.stem.strip().upper(), path.stem)
    if problem:
        raise DataError(f"{path}: holds one ticker's history and its file name cannot be the ticker "
                        f"({problem}); give it: --ticker T (ticker='T' in Python)")
    return path.stem.strip().upper(), True


def csv(path: str | os.PathLike, *, ticker: str | None = None,
        date_format: str | None = None) -> pd.DataFrame:
    """Read prices from a CSV file: long, wide, one ticker's history, or a yfinance export.

    Parameters
    ----------
    path : a regular file (FIFOs and devices are refused).
    ticker : the ticker of a file holding one ticker's history (``Date,Open,...,Close,...``);
        default: the file name's stem, upper-cased. Refused for long and wide files, which
        name their tickers themselves.
    date_format : strptime format of the date column (``"%d.%m.%Y"``); needed only when the
        dates are ambiguous or in a form not recognized (see ``quantfit.data.dates``).

    Returns
    -------
    The validated long frame (``date, ticker, close, volume``). ``attrs["layout"]`` is
    ``"long"``, ``"wide"``, ``"history"`` or ``"yahoo"``; ``attrs["notes"]`` holds one-line
    remarks worth showing a user (the ticker taken from the file name, the close column used).

    Raises
    ------
    DataError naming the file and the bad ticker/date/row for anything unusable.
    """
    path = check_regular(path, "CSV file")
    where = f"{path}: "
    rows = _head_rows(path)
    layout = detect(rows, where)
    width = len(rows[0]) if layout.kind != "yahoo" else max(len(r) for r in rows)
    if ticker is not None and layout.kind in ("long", "wide"):
        raise DataError(f"{where}ticker= (--ticker) is for a file holding one ticker's history; this "
                        f"is a {layout.kind} file that names its tickers itself")
    notes: list[str] = []
    if layout.kind == "long":
        texts = [c for c in (layout.date, layout.ticker, layout.period) if c is not None]
        include = [c for c in (layout.date, layout.ticker, layout.close, layout.volume, layout.period)
                   if c is not None]
        table = _read(path, width, 1, texts, include, null_text=False)
        _check_daily(table, layout, path)
        frame = pd.DataFrame({name: table.column(f"c{col}").to_pandas()
                              for name, col in (("date", layout.date), ("ticker", layout.ticker),
                                                ("close", layout.close), ("volume", layout.volume))
                              if col is not None})
        out = validate_long(frame, source=str(path), date_format=date_format)
    else:
        table = _read(path, width, layout.header_rows, [layout.date] +
                      ([layout.period] if layout.period is not None else []), None, null_text=True)
        if table.num_rows == 0:
            raise DataError(f"{where}no rows to ingest (header only)")
        _check_daily(table, layout, path)
        dates = parse_dates(table.column(f"c{layout.date}").to_pandas(), source=str(path),
                            date_format=date_format, rows=("data row", 1))
        if layout.kind == "history":
            name, defaulted = _history_ticker(path, ticker)
            layout.closes = {name: layout.close}
            layout.volumes = {name: layout.volume} if layout.volume is not None else {}
            notes.append(f"{path}: one ticker's history: ticker {name}"
                         + (" from the file name (--ticker sets it)" if defaulted else "")
                         + f", prices from column {layout.close_name!r}"
                         + ("" if "adj" in layout.close_name.lower() else " (the file has no adjusted close)"))
        elif layout.kind == "yahoo" and ticker is not None:
            given = normalize_ticker(ticker, f"{where}ticker= ")
            if [t.upper() for t in layout.closes] != [given]:
                raise DataError(f"{where}the file names its ticker{'s' if len(layout.closes) > 1 else ''} "
                                f"({', '.join(layout.closes)}); ticker= {ticker!r} does not match")
        dup = dates.duplicated().to_numpy()
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            j = int(np.flatnonzero((dates == dates.iloc[i]).to_numpy())[0])
            raise DataError(f"{where}date {dates.iloc[i].date()} appears twice (data rows {j + 1} "
                            f"and {i + 1})")
        wide = _wide(table, layout.closes, dates, path)
        if np.isnan(wide.to_numpy()).all():
            raise DataError(f"{where}no prices in the file (every cell is empty)")
        volume = (_wide(table, {t: layout.volumes.get(t) for t in layout.closes}, dates, path)
                  if layout.volumes else None)
        out = validate_long(to_long(wide, volume), source=str(path))
    out.attrs["layout"] = layout.kind
    out.attrs["notes"] = notes
    return out


def _wide(table: pa.Table, columns: dict[str, int | None], dates: pd.Series, path: Path) -> pd.DataFrame:
    """Columns of ``table`` (ticker -> position; None: all NaN) as a wide float frame by ``dates``."""
    values = np.full((table.num_rows, len(columns)), np.nan)
    for j, (t, col) in enumerate(columns.items()):
        if col is not None:
            values[:, j] = _to_float(table.column(f"c{col}"), t, dates, path)
    return pd.DataFrame(values, index=pd.DatetimeIndex(dates, name="date"), columns=list(columns))
