"""Long/wide price frames: validation and conversion.

Conventions used by every source and by ``PriceStore``:

* a **long** frame has one row per (date, ticker) with columns ``date, ticker, close`` and,
  where known, ``volume``; prices are positive finite floats (adjusted closes, any currency),
  volume is a non-negative float with NaN for "unknown";
* a **wide** frame has a DatetimeIndex named ``date`` (daily, tz-naive, midnight) and one
  float64 column per ticker; NaN means "no price that day".

``validate_long`` is the single gate in front of the store: it is fully vectorized (a 12.6 M
row frame validates in a few seconds) and raises ``DataError`` naming the first bad
ticker/date/row, plus how many more rows share the problem.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from quantfit.errors import DataError

#: dtype of every date index/column this layer returns (pandas' own default resolution).
DATE_DTYPE = "datetime64[us]"

REQUIRED_COLUMNS = ("date", "ticker", "close")


def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


def _show(value) -> str:
    """repr of a cell value without numpy's type wrapper (``-1.0``, not ``np.float64(-1.0)``)."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _first_bad(mask: np.ndarray, frame: pd.DataFrame, what: str, raw: pd.Series,
               source: str | None) -> DataError:
    """Build a DataError that names the first offending row (ticker, date, value, position)."""
    idx = np.flatnonzero(mask)
    i = int(idx[0])
    ticker = frame["ticker"].iloc[i]
    date = frame["date"].iloc[i]
    date_txt = date.date().isoformat() if isinstance(date, pd.Timestamp) and not pd.isna(date) else repr(date)
    more = f" (and {len(idx) - 1} more bad rows)" if len(idx) > 1 else ""
    return DataError(f"{_where(source)}{what}: ticker {ticker!s} on {date_txt} "
                     f"(row {i}) has {_show(raw.iloc[i])}{more}")


def parse_dates(raw: pd.Series, source: str | None = None, tickers: pd.Series | None = None) -> pd.Series:
    """Parse a date column to tz-naive midnight timestamps (``DATE_DTYPE``); unparsable values raise.

    ``tickers`` (aligned with ``raw``) only serves to name the ticker in the error message.
    """
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        parsed = raw.dt.tz_localize(None)
    elif pd.api.types.is_datetime64_any_dtype(raw.dtype):
        parsed = raw
    else:
        # ISO first (fast, exact); anything else falls back to pandas' own inference.
        parsed = pd.to_datetime(raw, errors="coerce", format="ISO8601")
        bad = parsed.isna() & raw.notna()
        if bad.any():
            parsed = parsed.where(~bad, pd.to_datetime(raw.where(bad), errors="coerce", format="mixed"))
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        n = int(bad.sum())
        more = f" (and {n - 1} more)" if n > 1 else ""
        who = f" for ticker {tickers.iloc[i]!s}" if tickers is not None else ""
        raise DataError(f"{_where(source)}unparsable or missing date {_show(raw.iloc[i])}{who} (row {i}){more}")
    return parsed.dt.normalize().astype(DATE_DTYPE)


def _parse_tickers(raw: pd.Series, source: str | None) -> pd.Series:
    """Tickers as a categorical of stripped, non-empty strings."""
    cat = raw if isinstance(raw.dtype, pd.CategoricalDtype) else raw.astype("category")
    missing = (cat.cat.codes.to_numpy() < 0)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(f"{_where(source)}missing ticker in row {i} ({int(missing.sum())} rows in all)")
    cats = pd.Index([str(c).strip() for c in cat.cat.categories])
    if (cats == "").any():
        rows = np.flatnonzero(cats[cat.cat.codes.to_numpy()] == "")
        raise DataError(f"{_where(source)}empty ticker name in row {int(rows[0])}")
    # Stripping may merge categories (" AAPL" and "AAPL"): rebuild the categorical.
    if cats.has_duplicates or not cats.equals(cat.cat.categories):
        return pd.Series(pd.Categorical(cats[cat.cat.codes.to_numpy()]), index=raw.index)
    return cat


def validate_long(frame: pd.DataFrame, source: str | None = None) -> pd.DataFrame:
    """Check a long price frame and return a clean copy, or raise ``DataError``.

    Parameters
    ----------
    frame : DataFrame with columns ``date, ticker, close`` and optionally ``volume``
        (column names are matched case-insensitively). Extra columns are ignored.
    source : name for error messages (a file path, "yfinance", ...).

    Returns
    -------
    DataFrame with a RangeIndex and columns ``date`` (datetime64, tz-naive midnight),
    ``ticker`` (categorical of str), ``close`` (float64, > 0, finite) and ``volume`` (float64,
    >= 0 or NaN; all NaN when the input had none). Row order is kept. ``frame.attrs
    ["has_volume"]`` says whether the input carried a volume column.

    Raises
    ------
    DataError for: not a DataFrame, missing columns, no rows, missing/empty tickers,
    unparsable dates, non-numeric/non-positive/non-finite closes, negative volumes, and a
    (date, ticker) pair that occurs twice.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{_where(source)}expected a DataFrame, got {type(frame).__name__}")
    lower = {str(c).strip().lower(): c for c in frame.columns}
    missing = [c for c in REQUIRED_COLUMNS if c not in lower]
    if missing:
        raise DataError(f"{_where(source)}missing column(s) {', '.join(missing)}; "
                        f"a long frame needs date, ticker, close (got {', '.join(map(str, frame.columns))})")
    if len(frame) == 0:
        raise DataError(f"{_where(source)}no rows to ingest (empty input)")

    raw = {c: frame[lower[c]].reset_index(drop=True) for c in (*REQUIRED_COLUMNS, "volume") if c in lower}
    out = pd.DataFrame({"ticker": _parse_tickers(raw["ticker"], source)})
    out.insert(0, "date", parse_dates(raw["date"], source, out["ticker"]))

    close = pd.to_numeric(raw["close"], errors="coerce").astype("float64")
    cv = close.to_numpy()
    bad = ~(np.isfinite(cv) & (cv > 0))
    if bad.any():
        raise _first_bad(bad, out, "close must be a positive finite number", raw["close"], source)
    out["close"] = cv

    has_volume = "volume" in raw
    if has_volume:
        vol = pd.to_numeric(raw["volume"], errors="coerce").astype("float64").to_numpy()
        bad = (np.isnan(vol) & raw["volume"].notna().to_numpy()) | (vol < 0) | np.isinf(vol)
        if bad.any():
            raise _first_bad(bad, out, "volume must be a non-negative number", raw["volume"], source)
        out["volume"] = vol
    else:
        out["volume"] = np.full(len(out), np.nan)

    keys = row_keys(out)
    order = np.argsort(keys, kind="stable")
    dup = keys[order][1:] == keys[order][:-1]
    if dup.any():
        i = int(order[1:][dup][0])
        raise DataError(f"{_where(source)}duplicate (date, ticker): ticker {out['ticker'].iloc[i]} "
                        f"on {out['date'].iloc[i].date().isoformat()} occurs more than once "
                        f"(row {i}; {int(dup.sum())} duplicate rows in all)")
    out.attrs["has_volume"] = has_volume
    return out


def day_numbers(dates: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Days since 1970-01-01 as int64 (the store's on-disk date unit)."""
    return np.asarray(dates, dtype="datetime64[D]").astype(np.int64)


def row_keys(long: pd.DataFrame) -> np.ndarray:
    """One int64 per row, unique per (ticker category, day): ``code * 2**20 + day + 2**19``.

    Days are offset so dates from 1535 to 2405 fit in 20 bits; that span covers any price.
    """
    days = day_numbers(long["date"])
    codes = long["ticker"].cat.codes.to_numpy().astype(np.int64)
    return codes * (1 << 20) + (days + (1 << 19))


def to_long(wide: pd.DataFrame, volume: pd.DataFrame | None = None) -> pd.DataFrame:
    """Wide prices (dates x tickers) -> long ``date, ticker, close[, volume]``; NaN cells dropped.

    Rows are ordered by ticker (in column order), then date. The result is *not* validated;
    pass it to ``validate_long`` or ``PriceStore.ingest``.
    """
    values = wide.to_numpy(dtype="float64", na_value=np.nan)
    present = ~np.isnan(values)
    # Column-major walk so rows come out grouped by ticker.
    ti, di = np.nonzero(present.T)
    data = {
        "date": pd.DatetimeIndex(wide.index)[di],
        "ticker": pd.Categorical.from_codes(ti, categories=pd.Index([str(c) for c in wide.columns])),
        "close": values[di, ti],
    }
    if volume is not None:
        vol = volume.reindex(index=wide.index, columns=wide.columns).to_numpy(dtype="float64", na_value=np.nan)
        data["volume"] = vol[di, ti]
    return pd.DataFrame(data)
