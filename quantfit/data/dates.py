"""Dates as they come from the wild -> trading days, with one rule set for every input.

Every date quantfit reads as text goes through here: CSV date columns, frames given to
``PriceStore.ingest``, ``PriceStore.prices(start=, end=)``, ``qf.read_betas(out, date)``,
``qf.read_results(start=, end=)``, ``--start/--end`` and the keys of Ken French files.

Text dates: **one format per column, never a per-row guess.**

* Forms recognized without help (the whole column must use one of them):
  ``2024-01-02`` (ISO; also ``2024/01/02``, ``2024.01.02``, one-digit month or day),
  ``20240102`` (compact; an integer ``20240102`` too), ``02.01.2024`` / ``01/02/2024`` /
  ``02-01-2024`` (day and month with a four-digit year), ``2 Jan 2024``, ``02-Jan-2024``,
  ``Jan 2, 2024``, ``January 2 2024`` (English month names).
* Day and month with a four-digit year: the column is read day-first when day-first fits every
  value and month-first does not (some first number is above 12), month-first in the mirror
  case. When **both fit every value** (no number above 12, as in ``05.07.2024``) the column is
  ambiguous and refused, naming the option that states the format (``date_format=`` /
  ``--date-format``). When the values contradict each other (``13.01.2024`` and
  ``01.13.2024``), the column is refused.
* A column mixing forms (``2024-01-02`` and ``03.01.2024``) is refused.
* A time of day and a UTC offset may follow the date (``2024-01-02T16:00:00-05:00``,
  ``2024-01-02 00:00:00+09:00``, ``... Z``): the trading date is **the date as written**, the
  timestamp's own local calendar date; it is never converted to UTC or to another zone.
* Anything else (two-digit years, other orders) needs the format stated: ``date_format=``
  with ``strptime`` codes (``"%d.%m.%y"``, ``"%m/%d/%Y %I:%M %p"``, ...), which then applies to
  every value (again: a ``%z`` offset keeps the local date).

Typed dates: datetime64 values, ``datetime``/``date``/``Timestamp`` objects: naive ones give
their calendar date, timezone-aware ones their local calendar date. Integers are
``YYYYMMDD`` (``20240628``; never nanoseconds since 1970); floats and booleans are refused.

Every date must lie in ``MIN_DATE``..``MAX_DATE`` (pandas' nanosecond Timestamp range, whole
days: 1677-09-22 to 2262-04-11); a date outside is a ``DataError`` naming the row.
Results are tz-naive midnight timestamps of dtype ``DATE_DTYPE``.

Columns are parsed on their distinct values (a 12 M-row long file has a few thousand), so
the rules cost little at scale.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from numbers import Integral

import numpy as np
import pandas as pd

from quantfit.errors import DataError

#: dtype of every date index/column the data layer returns (pandas' own default resolution).
DATE_DTYPE = "datetime64[us]"
#: First and last dates accepted anywhere (pandas' nanosecond range, whole days).
MIN_DATE = pd.Timestamp.min.ceil("D")
MAX_DATE = pd.Timestamp.max.floor("D")
_MIN_DAY = (MIN_DATE - pd.Timestamp("1970-01-01")).days
_MAX_DAY = (MAX_DATE - pd.Timestamp("1970-01-01")).days

# A time of day and/or a UTC offset after the date; validated, then ignored (local date).
_TIME = (r"(?:(?:T|\s+)(?P<H>\d{1,2}):(?P<Mi>\d{2})(?::(?P<S>\d{2})(?:[.,]\d{1,9})?)?"
         r"(?:\s*(?P<ampm>[AaPp][Mm]))?)?"
         r"(?:\s*(?:Z|UTC|GMT|[+-](?P<tzh>\d{2}):?(?P<tzm>\d{2})?))?")
_FORMS = {
    "ymd": r"(?P<y>\d{4})(?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})",
    "compact": r"(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})",
    "numeric": r"(?P<a>\d{1,2})(?P<sep>[-/.])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4})",
    "d-mon-y": r"(?P<d>\d{1,2})(?P<sep>[- ])(?P<mon>[A-Za-z]{3,9})\.?(?P=sep)(?P<y>\d{4})",
    "mon-d-y": r"(?P<mon>[A-Za-z]{3,9})\.?\s+(?P<d>\d{1,2}),?\s+(?P<y>\d{4})",
}
_PATTERNS = {name: re.compile(form + _TIME) for name, form in _FORMS.items()}
_MONTHS = {name: i + 1 for i, names in enumerate(
    [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
     ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
     ("oct", "october"), ("nov", "november"), ("dec", "december")]) for name in names}


def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


class _Ambiguous(DataError):
    """Every value of a day/month column reads both ways round."""


def _hint(formats: list[str]) -> str:
    """How to state a column's format, on the command line and in Python."""
    if not formats:
        return ("state the format in strptime codes: --date-format FORMAT on the command line "
                "(e.g. %m/%d/%y), date_format='FORMAT' in Python")
    first = formats[0].split(" ")[0]
    return (f"state the format with --date-format {' or '.join(formats)} on the command line, "
            f"date_format='{first}' in Python")


# ----------------------------------------------------------------------------- day arithmetic
def _days(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Day numbers (since 1970-01-01) of year/month/day arrays, and which triples are real dates."""
    y, m, d = (np.asarray(v, dtype=np.int64) for v in (y, m, d))
    ok = (m >= 1) & (m <= 12) & (d >= 1) & (y >= 1) & (y <= 9999)
    months = np.where(ok, (y - 1970) * 12 + (m - 1), 0)
    first = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    nxt = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    ok &= d <= nxt - first
    return np.where(ok, first + d - 1, 0), ok


def _time_ok(g: dict) -> bool:
    """The optional time-of-day and offset parts of a match are real clock values."""
    if g.get("H") is not None:
        h = int(g["H"])
        if g.get("ampm"):
            if not 1 <= h <= 12:
                return False
        elif h > 23:
            return False
        if int(g["Mi"]) > 59 or (g.get("S") is not None and int(g["S"]) > 60):
            return False
    return g.get("tzh") is None or (int(g["tzh"]) <= 23 and int(g.get("tzm") or 0) <= 59)


# ----------------------------------------------------------------------------- text dates
def _classify(text: str) -> tuple[str, dict] | None:
    """(form key, match groups) of one stripped text date, or None when no form fits."""
    for name, pattern in _PATTERNS.items():
        m = pattern.fullmatch(text)
        if m:
            g = m.groupdict()
            if not _time_ok(g):
                return None
            if "mon" in name and g["mon"].lower() not in _MONTHS:
                return None
            return f"{name}{g.get('sep') or ''}", g
    return None


#: Plain ISO and compact columns, parsed without a per-value loop: (pattern, y/m/d slices).
_FAST = {"%Y-%m-%d": (r"\d{4}-\d{2}-\d{2}", (0, 4, 5, 7, 8, 10)),
         "%Y%m%d": (r"\d{8}", (0, 4, 4, 6, 6, 8))}


def _fast(texts: list[str], formats=tuple(_FAST)) -> tuple[np.ndarray, np.ndarray] | None:
    """(days, real date?) when every text is plain ``YYYY-MM-DD`` (or every one ``YYYYMMDD``),
    vectorized; None otherwise (the general rules then apply)."""
    idx = pd.Index(texts, dtype="str")
    for fmt in formats:
        pattern, (y0, y1, m0, m1, d0, d1) = _FAST[fmt]
        if idx.str.fullmatch(pattern).all():
            y, m, d = (idx.str.slice(a, b).astype(np.int64).to_numpy()
                       for a, b in ((y0, y1), (m0, m1), (d0, d1)))
            return _days(y, m, d)
    return None


def _parse_texts(texts: list[str], shown: Callable[[int], str], first: Callable[[np.ndarray], int],
                 where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Day numbers of distinct text dates under one column-wide form: (days, real date?) per text.

    ``shown(j)`` describes text j for messages (value and row); ``first(mask)`` is the text,
    among those in ``mask``, whose row comes first in the column.
    """
    if len(texts) > 64:
        got = _fast(texts)
        if got is not None:
            return got
    classified = [_classify(t) for t in texts]
    unknown = np.array([c is None for c in classified], dtype=bool)
    if unknown.any():
        raise DataError(f"{where}unparsable date {shown(first(unknown))}; dates must be ISO "
                        f"(YYYY-MM-DD) or another unambiguous form, or {_hint([])}")
    keys = np.array([c[0] for c in classified], dtype=object)
    a = first(np.ones(len(texts), dtype=bool))
    if (keys != keys[a]).any():
        raise DataError(f"{where}the date column mixes formats: {shown(a)} and "
                        f"{shown(first(keys != keys[a]))}; one format per column: fix the file "
                        f"or {_hint([])}")
    form = keys[a]
    groups = [c[1] for c in classified]
    y = np.array([int(g["y"]) for g in groups], dtype=np.int64)
    if form.startswith("numeric"):
        return _day_month(y, groups, form[len("numeric"):], shown, first, where)
    if "mon" in form:
        m = np.array([_MONTHS[g["mon"].lower()] for g in groups], dtype=np.int64)
    else:
        m = np.array([int(g["m"]) for g in groups], dtype=np.int64)
    d = np.array([int(g["d"]) for g in groups], dtype=np.int64)
    return _days(y, m, d)


def _day_month(y: np.ndarray, groups: list[dict], sep: str, shown: Callable[[int], str],
               first: Callable[[np.ndarray], int], where: str) -> tuple[np.ndarray, np.ndarray]:
    """``a.b.yyyy`` dates: day-first or month-first for the whole column, or DataError."""
    a = np.array([int(g["a"]) for g in groups], dtype=np.int64)
    b = np.array([int(g["b"]) for g in groups], dtype=np.int64)
    dmy, ok_dmy = _days(y, b, a)
    mdy, ok_mdy = _days(y, a, b)
    fmt_dmy, fmt_mdy = f"%d{sep}%m{sep}%Y", f"%m{sep}%d{sep}%Y"
    if ok_dmy.all() and ok_mdy.all():
        if (a == b).all():  # 01.01.2024, 02.02.2024: the same day either way
            return dmy, ok_dmy
        raise _Ambiguous(f"{where}ambiguous date {shown(first(a != b))}: it reads day-first or "
                         f"month-first, and so does every date in the column (none has a number "
                         f"above 12); {_hint([f'{fmt_dmy} (day first)', f'{fmt_mdy} (month first)'])}")
    if ok_dmy.all():
        return dmy, ok_dmy
    if ok_mdy.all():
        return mdy, ok_mdy
    only_d, only_m = ok_dmy & ~ok_mdy, ok_mdy & ~ok_dmy
    if only_d.any() and only_m.any():
        raise DataError(f"{where}the date column mixes day-first {shown(first(only_d))} and "
                        f"month-first {shown(first(only_m))} dates; one format per column: fix "
                        f"the file or {_hint([fmt_dmy, fmt_mdy])}")
    return (dmy, ok_dmy) if only_d.any() else (mdy, ok_mdy)


def _parse_with_format(texts: list[str], fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Day numbers of texts under an explicit strptime format (aware values: local date)."""
    if fmt in _FAST and len(texts) > 64:
        got = _fast(texts, (fmt,))
        if got is not None:
            return got
    days = np.zeros(len(texts), dtype=np.int64)
    ok = np.zeros(len(texts), dtype=bool)
    epoch = _dt.date(1970, 1, 1)
    for i, t in enumerate(texts):
        try:
            days[i] = (_dt.datetime.strptime(t, fmt).date() - epoch).days
            ok[i] = True
        except ValueError:
            pass
    return days, ok


# ----------------------------------------------------------------------------- typed values
def _datetime_days(values) -> np.ndarray:
    """Day numbers of datetime64 values (tz-aware: the local calendar date)."""
    idx = pd.DatetimeIndex(values)
    if idx.tz is not None:
        idx = idx.tz_localize(None)  # wall-clock time in its own zone, i.e. the local date
    return np.asarray(idx.values.astype("datetime64[D]").astype(np.int64))


def _object_day(v) -> int | None:
    """Day number of one typed (non-text) value, or None when it is not a date."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, _dt.datetime):  # Timestamp included; .date() is the local date
        return (v.date() - _dt.date(1970, 1, 1)).days
    if isinstance(v, _dt.date):
        return (v - _dt.date(1970, 1, 1)).days
    if isinstance(v, np.datetime64):
        return None if np.isnat(v) else int(v.astype("datetime64[D]").astype(np.int64))
    return None


# ----------------------------------------------------------------------------- public
def parse_dates(raw: pd.Series, source: str | None = None, tickers: pd.Series | None = None,
                date_format: str | None = None, rows: tuple[str, int] = ("row", 0)) -> pd.Series:
    """Parse a date column to tz-naive midnight timestamps (``DATE_DTYPE``) by the module's rules.

    ``date_format`` (strptime codes) states the format of text values; ``tickers`` (aligned
    with ``raw``) only serves to name the ticker in error messages. Raises ``DataError`` naming
    the first offending row for a missing, unparsable, ambiguous, inconsistent or out-of-range
    date; ``rows`` is how rows are called and numbered there (default ``("row", 0)``: 0-based
    positions as in the frame; CSV readers say ``("data row", 1)``). The result has ``raw``'s
    length and a RangeIndex.
    """
    where = _where(source)
    if date_format is not None and (not isinstance(date_format, str) or "%" not in date_format):
        raise DataError(f"{where}bad date_format {date_format!r}: use strptime codes such as '%d.%m.%Y'")
    raw = raw.reset_index(drop=True) if isinstance(raw, pd.Series) else pd.Series(raw)

    def row_text(i: int) -> str:
        return (f"for ticker {tickers.iloc[i]!s} " if tickers is not None else "") + f"({rows[0]} {i + rows[1]})"

    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        na = raw.isna().to_numpy()
        days = np.zeros(len(raw), dtype=np.int64)
        days[~na] = _datetime_days(raw[~na])
    else:
        if isinstance(raw.dtype, pd.CategoricalDtype):
            uniques, codes = raw.cat.categories, raw.cat.codes.to_numpy()
        else:
            codes, uniques = pd.factorize(raw, use_na_sentinel=True)
        blank = np.array([isinstance(v, str) and not v.strip() for v in uniques], dtype=bool)
        if blank.any():  # an empty cell is a missing date, not an unparsable one
            codes = np.where(blank[np.maximum(codes, 0)] & (codes >= 0), -1, codes)
        na = codes < 0
        days = _parse_uniques(uniques, codes, date_format, row_text, where)[np.where(na, 0, codes)]
    if na.any():
        more = f" (and {int(na.sum()) - 1} more)" if na.sum() > 1 else ""
        raise DataError(f"{where}missing date {row_text(int(np.flatnonzero(na)[0]))}{more}")
    outside = (days < _MIN_DAY) | (days > _MAX_DAY)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise DataError(f"{where}date {_show(raw.iloc[i])} {row_text(i)} is outside the supported "
                        f"range {MIN_DATE.date()} to {MAX_DATE.date()}")
    return pd.Series(days.astype("datetime64[D]").astype(DATE_DTYPE))


def _show(value) -> str:
    """repr of a value without numpy's type wrapper; datetimes as ISO text."""
    if isinstance(value, (pd.Timestamp, _dt.date)):
        return repr(value.isoformat())
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _parse_uniques(uniques, codes: np.ndarray, date_format: str | None,
                   row_text: Callable[[int], str], where: str) -> np.ndarray:
    """Day numbers of a column's distinct values; DataError naming the first bad row."""
    if isinstance(uniques, pd.DatetimeIndex):
        return _datetime_days(uniques)
    n = len(uniques)
    first_pos = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    rows = np.flatnonzero(codes >= 0)
    np.minimum.at(first_pos, codes[rows], rows)  # each distinct value's first row

    def shown(k: int) -> str:
        return f"{_show(uniques[k])} {row_text(int(first_pos[k]))}"

    days = np.zeros(n, dtype=np.int64)
    text_idx, texts = [], []
    unused = first_pos == np.iinfo(np.int64).max  # e.g. blank text, counted as missing
    for k, v in enumerate(uniques):
        if unused[k]:
            continue
        if isinstance(v, str):
            text_idx.append(k)
            texts.append(v.strip())
        elif isinstance(v, Integral) and not isinstance(v, (bool, np.bool_)):
            text_idx.append(k)
            texts.append(str(int(v)))
        else:
            day = _object_day(v)
            if day is None:
                raise DataError(f"{where}not a date: {shown(k)}; dates are text, datetimes or "
                                "YYYYMMDD integers")
            days[k] = day
    if not texts:
        return days
    idx = np.array(text_idx)

    def first(mask: np.ndarray) -> int:
        """Among texts in ``mask``, the one whose first row comes first."""
        js = np.flatnonzero(mask)
        return int(js[np.argmin(first_pos[idx[js]])])

    if date_format is None:
        got, good = _parse_texts(texts, lambda j: shown(int(idx[j])), first, where)
        if not good.all():
            raise DataError(f"{where}invalid date {shown(int(idx[first(~good)]))}: no such day")
    else:
        got, good = _parse_with_format(texts, date_format)
        if not good.all():
            raise DataError(f"{where}date {shown(int(idx[first(~good)]))} does not match "
                            f"date_format {date_format!r}")
    days[idx] = got
    return days


def parse_date(value, what: str = "date") -> pd.Timestamp:
    """One date given by a user (a bound, a date to read) -> tz-naive midnight ``Timestamp``.

    Text follows the column rules on a column of one value (``"2024-06-28"``, ``"20240628"``,
    ``"28.06.2024"``, ``"Jun 28, 2024"``; ``"05.07.2024"`` is ambiguous and refused); integers
    are ``YYYYMMDD``; ``Timestamp``/``datetime``/``date``/``datetime64`` give their (local)
    calendar date. Anything else, or a date outside ``MIN_DATE..MAX_DATE``, is a ``DataError``.
    """
    shown = _show(value)
    if isinstance(value, str) or (isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))):
        text = value.strip() if isinstance(value, str) else str(int(value))
        try:
            days, ok = _parse_texts([text], lambda j: shown, lambda m: 0)
        except _Ambiguous:
            raise DataError(f"bad {what} {shown}: day and month could be either way round; "
                            "write it as YYYY-MM-DD") from None
        except DataError:
            ints = "" if isinstance(value, str) else " (an integer date is YYYYMMDD)"
            raise DataError(f"bad {what} {shown}: write it as YYYY-MM-DD{ints}") from None
        if not ok[0]:
            raise DataError(f"bad {what} {shown}: no such day; write it as YYYY-MM-DD")
        day = int(days[0])
    else:
        got = _object_day(value)
        if got is None:
            raise DataError(f"bad {what} {shown}: use YYYY-MM-DD")
        day = got
    if not _MIN_DAY <= day <= _MAX_DAY:
        raise DataError(f"bad {what} {shown}: outside the supported range "
                        f"{MIN_DATE.date()} to {MAX_DATE.date()}")
    return pd.Timestamp(np.datetime64(day, "D")).as_unit("us")
