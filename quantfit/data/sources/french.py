"""``qf.sources.french``: factor returns from the Ken French data library.

    >>> ff = qf.sources.french("F-F_Research_Data_Factors_daily")      # downloads the zip
    >>> ff = qf.sources.french("F-F_Research_Data_Factors_daily.zip")  # or a local .zip/.csv
    >>> ff[["Mkt-RF", "SMB", "HML"]]; ff["RF"]

Unlike the price sources this returns a **wide** frame of **returns**, because factors are
regressors, not prices: DatetimeIndex ``date`` x factor columns (``Mkt-RF, SMB, HML, RF`` ...),
float64, in **decimals** (the library publishes percent: 0.25 there is 0.0025 here).

The library's CSV format: a few lines of description, a header row starting with a comma
(``,Mkt-RF,SMB,HML,RF``), data rows keyed ``YYYYMMDD`` (daily, weekly) or ``YYYYMM``
(monthly), then for monthly files an "Annual Factors" section keyed by year, and a copyright
line. Only the first block of data rows is returned: the annual section, further sections
(portfolio files have several) and the footer are dropped. Monthly dates are the **last
calendar day** of the month (what ``resample("ME")`` labels month-end prices with).
The library's missing-value codes -99.99 and -999 become NaN.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from quantfit._files import check_regular
from quantfit.data.dates import DATE_DTYPE, parse_dates
from quantfit.errors import DataError

FTP_URL = "https://mba.tuck.dartmouth.edu/pages/faculty/ken.french/ftp/{name}_CSV.zip"
_MISSING = (-99.99, -999.0)
_DATE_KEY = re.compile(r"^\s*(\d{6}|\d{8})\s*$")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _download(url: str) -> bytes:
    """Fetch a URL's bytes (the default ``fetch``); HTTP and network errors -> DataError."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        raise DataError(f"could not download {url}: HTTP {exc.code} (is the dataset name right?)") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"could not download {url}: {exc}") from None


def _csv_text_from_zip(blob: bytes, origin: str) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            members = [m for m in zf.namelist() if m.lower().endswith(".csv")]
            if not members:
                raise DataError(f"{origin}: zip holds no .csv file (has {zf.namelist()})")
            return zf.read(members[0]).decode("latin-1")
    except zipfile.BadZipFile:
        raise DataError(f"{origin}: not a zip file") from None


def _is_data_row(fields: list[str]) -> bool:
    if len(fields) < 2 or not _DATE_KEY.match(fields[0]):
        return False
    try:
        [float(f) for f in fields[1:] if f.strip()]
    except ValueError:
        return False
    return True


def parse_french_csv(text: str, origin: str = "Ken French CSV") -> pd.DataFrame:
    """Parse the text of a Ken French data-library CSV into wide decimal returns.

    Returns a DataFrame with a DatetimeIndex ``date`` (sorted) and one float64 column per
    factor/portfolio, in decimals; ``attrs["date_key"]`` says whether the rows were keyed
    ``"YYYYMMDD"`` (daily or weekly files) or ``"YYYYMM"`` (monthly). Raises ``DataError`` naming ``origin`` when no data block
    is found or a row is malformed.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    rows = [[f.strip() for f in line.split(",")] for line in lines]
    first = next((i for i, r in enumerate(rows) if _is_data_row(r)), None)
    if first is None:
        raise DataError(f"{origin}: no data rows (expected lines like '19260701,0.10,-0.25,...')")
    # The column row is the last non-blank line above the first data row.
    head = next((i for i in range(first - 1, -1, -1) if any(rows[i])), None)
    if head is None or len(rows[head]) < 2:
        raise DataError(f"{origin}: no column header row above the data")
    columns = rows[head][1:]
    if any(not c for c in columns):
        raise DataError(f"{origin}: empty column name in header {lines[head]!r}")
    width = len(rows[first][0])
    keys, values = [], []
    for i in range(first, len(rows)):
        r = rows[i]
        if not _is_data_row(r) or len(r[0]) != width:
            break  # blank line, "Annual Factors:", copyright, or a different frequency
        if len(r) - 1 != len(columns):
            raise DataError(f"{origin}: line {i + 1} has {len(r) - 1} values, header has {len(columns)}")
        keys.append(r[0])
        values.append([float(f) if f else np.nan for f in r[1:]])
    data = np.array(values, dtype="float64")
    data[np.isin(data, _MISSING)] = np.nan
    # Keys are YYYYMMDD or YYYYMM: the data layer's date rules with the format stated
    # (invalid days and dates outside the supported range are DataErrors naming the key).
    dates = pd.DatetimeIndex(parse_dates(pd.Series(keys), source=f"{origin}: date key",
                                         date_format="%Y%m%d" if width == 8 else "%Y%m"))
    if width == 6:
        dates = dates + pd.offsets.MonthEnd(0)
    index = pd.DatetimeIndex(dates.astype(DATE_DTYPE), name="date")
    if index.has_duplicates:
        raise DataError(f"{origin}: date {index[index.duplicated()][0].date()} appears twice")
    frame = pd.DataFrame(data / 100.0, index=index, columns=columns).sort_index()
    frame.attrs["date_key"] = "YYYYMMDD" if width == 8 else "YYYYMM"  # daily/weekly vs monthly
    return frame


def french(name_or_path: str | os.PathLike,
           fetch: Callable[[str], bytes] | None = None) -> pd.DataFrame:
    """Factor returns from the Ken French data library, wide and in decimals.

    Parameters
    ----------
    name_or_path : a local ``.csv`` or ``.zip`` file in the library's format, or a dataset
        name as on the library's site, e.g. ``"F-F_Research_Data_Factors_daily"``,
        ``"F-F_Research_Data_Factors"`` (monthly), ``"F-F_Momentum_Factor_daily"``; a name is
        downloaded from ``FTP_URL``.
    fetch : ``url -> bytes`` used to download (default: ``urllib``); inject your own for
        proxies, caching or tests.

    Returns
    -------
    DataFrame, DatetimeIndex ``date`` x factors (e.g. ``Mkt-RF, SMB, HML, RF``), float64
    decimals; ``RF`` is the per-period risk-free rate, ready for ``qf.returns(..., rf=ff["RF"])``.
    """
    text_path = str(name_or_path)
    path = Path(text_path)
    is_file_like = path.suffix.lower() in (".csv", ".zip") or path.exists() or os.sep in text_path
    if is_file_like:
        blob = check_regular(path, "factors file").read_bytes()  # a FIFO or device is refused
        if blob[:2] == b"PK":
            return parse_french_csv(_csv_text_from_zip(blob, str(path)), str(path))
        return parse_french_csv(blob.decode("latin-1"), str(path))
    name = text_path
    if not _NAME.match(name):
        raise DataError(f"bad Ken French dataset name {name!r}")
    url = FTP_URL.format(name=name)
    blob = (fetch or _download)(url)
    return parse_french_csv(_csv_text_from_zip(blob, url), url)
