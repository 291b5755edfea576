"""Long/wide price frames: validation and conversion.

Conventions used by every source and by ``PriceStore``:

* a **long** frame has one row per (date, ticker) with columns ``date, ticker, close`` and,
  where known, ``volume``; prices are positive finite floats (adjusted closes, any currency),
  volume is a non-negative float with NaN for "unknown";
* a **wide** frame has a DatetimeIndex named ``date`` (daily, tz-naive, midnight) and one
  float64 column per ticker; NaN means "no price that day".

``validate_long`` is the single gate in front of the store: it is fully vectorized (a 12.6 M
row frame validates in a few seconds) and raises ``DataError`` naming the first bad
ticker/date/row, plus how many more rows share the problem. Dates follow
``quantfit.data.dates`` (one format per column, local calendar dates, pandas' range), tickers
``quantfit.data.tickers`` (upper-cased, a fixed character set; ``normalize_tickers`` is the
rule for look-ups too).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from quantfit.data.dates import DATE_DTYPE, parse_dates
from quantfit.data.tickers import TICKER_PATTERN, normalize_ticker, normalize_tickers
from quantfit.errors import DataError

__all__ = ["DATE_DTYPE", "REQUIRED_COLUMNS", "day_numbers", "normalize_tickers", "parse_dates",
           "row_keys", "to_long", "validate_long"]

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


def _parse_tickers(raw: pd.Series, source: str | None) -> tuple[pd.Series, dict[str, list[str]]]:
    """Tickers as a categorical of normalized names (``quantfit.data.tickers``: stripped,
    upper-cased, checked), and the spellings that were merged into one name (``aapl``/``AAPL``)."""
    cat = raw if isinstance(raw.dtype, pd.CategoricalDtype) else raw.astype("category")
    codes = cat.cat.codes.to_numpy()
    # An empty or blank name is a missing ticker, like None/NaN ("NA" is a ticker).
    blank = np.array([isinstance(c, str) and not c.strip() for c in cat.cat.categories] + [True])
    missing = blank[codes]  # code -1 (None/NaN) picks the trailing True
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(f"{_where(source)}missing ticker in row {i} ({int(missing.sum())} rows in all)")
    categories = cat.cat.categories
    if categories.dtype == object or pd.api.types.is_string_dtype(categories.dtype):
        # Names already in their normal form (the usual case) pass in one vectorized match.
        ok = np.asarray(categories.astype(str).str.fullmatch(TICKER_PATTERN), dtype=bool)
    else:
        ok = np.zeros(len(categories), dtype=bool)
    names = list(categories.astype(str)) if ok.all() else []
    for k, c in enumerate(categories if not ok.all() else ()):
        try:
            names.append(str(c) if ok[k] else normalize_ticker(c))
        except DataError as exc:
            raise DataError(f"{_where(source)}{exc} (row {int(np.argmax(codes == k))})") from None
    cats = pd.Index(names)
    spellings: dict[str, list[str]] = {}
    for c, n in zip(cat.cat.categories, names):
        spellings.setdefault(n, []).append(str(c))
    merged = {n: v for n, v in spellings.items() if len(v) > 1}
    if cats.has_duplicates or not cats.equals(cat.cat.categories):
        # Upper-casing or stripping merged categories (" aapl" and "AAPL"): rebuild.
        uniq, inverse = np.unique(np.asarray(names, dtype=object), return_inverse=True)
        return pd.Series(pd.Categorical.from_codes(inverse[codes], categories=pd.Index(uniq))), merged
    return cat.reset_index(drop=True), merged


def _columns(frame: pd.DataFrame, source: str | None) -> dict[str, object]:
    """Map ``date, ticker, close, volume`` to the frame's column labels (case-insensitive);
    two labels for one of them (``Close`` and ``close``, or ``close`` twice) are ambiguous."""
    found: dict[str, object] = {}
    for c in frame.columns:
        key = str(c).strip().lower()
        if key in (*REQUIRED_COLUMNS, "volume"):
            if key in found:
                both = (f"two columns named {c!r}" if str(found[key]) == str(c) else
                        f"columns {found[key]!r} and {c!r} both mean {key}")
                raise DataError(f"{_where(source)}ambiguous columns: {both}; keep one")
            found[key] = c
    return found


def _numbers(raw: pd.Series, name: str, source: str | None) -> pd.Series:
    """A numeric column as float64 (non-numbers become NaN for the caller to report);
    booleans are refused outright rather than stored as 1.0 and 0.0."""
    is_bool = pd.api.types.is_bool_dtype(raw.dtype)
    if not is_bool and raw.dtype == object and pd.api.types.infer_dtype(raw, skipna=True) in (
            "boolean", "mixed", "mixed-integer"):
        flags = raw.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)
        if flags.any():
            raise DataError(f"{_where(source)}{name} must be numbers, not booleans "
                            f"(row {int(np.flatnonzero(flags)[0])} is {raw.iloc[int(np.flatnonzero(flags)[0])]!r})")
    if is_bool:
        raise DataError(f"{_where(source)}{name} must be numbers, not booleans (column dtype {raw.dtype})")
    return pd.to_numeric(raw, errors="coerce").astype("float64")


def validate_long(frame: pd.DataFrame, source: str | None = None, *,
                  date_format: str | None = None) -> pd.DataFrame:
    """Check a long price frame and return a clean copy, or raise ``DataError``.

    Parameters
    ----------
    frame : DataFrame with columns ``date, ticker, close`` and optionally ``volume``
        (column names are matched case-insensitively). Extra columns are ignored.
    source : name for error messages (a file path, "yfinance", ...).
    date_format : strptime format of text dates (``"%d.%m.%Y"``); by default text dates follow
        the rules of ``quantfit.data.dates`` (ISO and other unambiguous forms, one per column).

    Returns
    -------
    DataFrame with a RangeIndex and columns ``date`` (datetime64, tz-naive midnight; a
    timezone-aware date keeps its local calendar date), ``ticker`` (categorical of normalized
    names: stripped, upper-cased, see ``quantfit.data.tickers``), ``close`` (float64, > 0, finite) and ``volume`` (float64,
    >= 0 or NaN; all NaN when the input had none). Row order is kept. ``frame.attrs
    ["has_volume"]`` says whether the input carried a volume column.

    Raises
    ------
    DataError for: not a DataFrame, missing or ambiguous columns (``Close`` and ``close``), no
    rows, missing or invalid tickers, unparsable, ambiguous or out-of-range dates, boolean,
    non-numeric, non-positive or non-finite closes, boolean or negative volumes, and a (date,
    ticker) pair that occurs twice (``aapl`` and ``AAPL`` being one ticker).
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{_where(source)}expected a DataFrame, got {type(frame).__name__}")
    lower = _columns(frame, source)
    missing = [c for c in REQUIRED_COLUMNS if c not in lower]
    if missing:
        raise DataError(f"{_where(source)}missing column(s) {', '.join(missing)}; "
                        f"a long frame needs date, ticker, close (got {', '.join(map(str, frame.columns))})")
    if len(frame) == 0:
        raise DataError(f"{_where(source)}no rows to ingest (empty input)")

    raw = {c: frame[lower[c]].reset_index(drop=True) for c in (*REQUIRED_COLUMNS, "volume") if c in lower}
    tickers, merged = _parse_tickers(raw["ticker"], source)
    out = pd.DataFrame({"date": parse_dates(raw["date"], source, tickers, date_format=date_format),
                        "ticker": tickers})

    cv = _numbers(raw["close"], "close", source).to_numpy()
    bad = ~(np.isfinite(cv) & (cv > 0))
    if bad.any():
        raise _first_bad(bad, out, "close must be a positive finite number", raw["close"], source)
    out["close"] = cv

    has_volume = "volume" in raw
    if has_volume:
        vol = _numbers(raw["volume"], "volume", source).to_numpy()
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
        name = out["ticker"].iloc[i]
        case = (f" (tickers are upper-cased: {', '.join(map(repr, sorted(merged[name])))} are one ticker)"
                if name in merged else "")
        raise DataError(f"{_where(source)}duplicate (date, ticker): ticker {name} "
                        f"on {out['date'].iloc[i].date().isoformat()} occurs more than once "
                        f"(row {i}; {int(dup.sum())} duplicate rows in all){case}")
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
