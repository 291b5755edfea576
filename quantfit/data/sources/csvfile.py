"""``qf.sources.csv``: prices from a CSV file, wide or long, detected from the header.

* **long**: the header has ``ticker`` and ``close`` columns (any case), plus ``date`` and an
  optional ``volume``: one row per (date, ticker).
* **wide**: anything else; the first column holds dates, every other column is one ticker's
  closes (the header cell is the ticker). Empty cells mean "no price that day" and are dropped.

Parsing uses pyarrow's multi-threaded CSV reader, so a 12.6 M-row file loads in seconds.
Dates are ISO (``YYYY-MM-DD``) ideally; other formats pandas understands also work, slower.
"""

from __future__ import annotations

import csv as _csv
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from quantfit.data.frames import parse_dates, to_long, validate_long
from quantfit.errors import DataError


def _header(path: Path) -> list[str]:
    """The first line of the file, split as CSV (names stripped)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            row = next(_csv.reader(fh), None)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a CSV file") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file") from None
    if not row or not any(c.strip() for c in row):
        raise DataError(f"{path}: empty file (no header row)")
    return [c.strip() for c in row]


def _read(path: Path, column_types: dict) -> pa.Table:
    try:
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=True, block_size=1 << 24),
            convert_options=pacsv.ConvertOptions(column_types=column_types, strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"{path}: malformed CSV: {exc}") from None


def _to_float(col: pa.ChunkedArray, ticker: str, dates: pd.Series, path: Path) -> np.ndarray:
    """A price column as float64; non-numeric text raises, naming ticker and date."""
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


def csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read prices from a wide (``date,T1,T2,...``) or long (``date,ticker,close[,volume]``) CSV.

    Returns the validated long frame (``date, ticker, close, volume``); raises ``DataError``
    naming the file and the bad ticker/date/row for anything unusable (missing file, no
    header, duplicate tickers or keys, unparsable dates, non-numeric or non-positive prices).
    """
    path = Path(path)
    header = _header(path)
    lower = [h.lower() for h in header]
    if "ticker" in lower and "close" in lower:
        types = {header[lower.index("ticker")]: pa.dictionary(pa.int32(), pa.string())}
        table = _read(path, types)
        frame = table.to_pandas(date_as_object=False)
        return validate_long(frame, source=str(path))

    # Wide: first column dates, the rest tickers.
    tickers = header[1:]
    if not tickers:
        raise DataError(f"{path}: a wide CSV needs a date column and at least one ticker column "
                        "(or use a long CSV with date,ticker,close columns)")
    seen: set[str] = set()
    for t in tickers:
        if not t:
            raise DataError(f"{path}: empty ticker name in the header")
        if t in seen:
            raise DataError(f"{path}: ticker {t} appears twice in the header")
        seen.add(t)
    table = _read(path, {})
    if table.num_rows == 0:
        raise DataError(f"{path}: no rows to ingest (header only)")
    dates = parse_dates(table.column(0).to_pandas(date_as_object=False), source=str(path))
    values = np.empty((table.num_rows, len(tickers)), dtype="float64")
    for j, t in enumerate(tickers):
        values[:, j] = _to_float(table.column(j + 1), t, dates, path)
    wide = pd.DataFrame(values, index=pd.DatetimeIndex(dates, name="date"), columns=tickers)
    if np.isnan(values).all():
        raise DataError(f"{path}: no prices in the file (every cell is empty)")
    return validate_long(to_long(wide), source=str(path))
