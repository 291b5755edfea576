"""The time grid of a fit, at the pandas edge: calendar lookbacks, period-end windows, and
returns compounded to a frequency. ``fit_rolling`` turns these into row numbers for the engine
(a window is its first and last row); nothing here fits anything.

Conventions
-----------
* **Calendar lookback** ``"nD" | "nW" | "nM" | "nY"``: the window ending at date t holds the
  rows dated in (t − lookback, t]. Days and weeks are calendar days (``pd.DateOffset(days=n)``,
  ``weeks=n``: wall-clock dates, also across a daylight-saving change); months and years
  (= 12 months) are calendar months, ``pd.DateOffset(months=n)``, which clips to the end of a
  shorter month: 2024-03-31 − 1M = 2024-02-29, 2024-03-30 − 1M = 2024-02-29.
  **End-of-month rule**: when t is the last calendar day of its month, t − nM is the last day
  of the month n months earlier, so a window ending on a month end holds exactly the n
  calendar months before it: 2024-04-30 − 1M = 2024-03-31 (DateOffset alone gives 2024-03-30,
  and the window would hold March 31 too), 2025-02-28 − 12M = 2024-02-29 (DateOffset: 02-28,
  so monthly data dated on month ends would get 13 rows). For every other t the two agree.
* **Period ends** (``every``): the windows ending on the last date of the input in each
  week ending Friday ("W"), calendar month ("M") or quarter ("Q"), i.e. the last trading
  day present, not the calendar end. The last period of the data counts too: its estimate
  is dated on the input's last date (and moves as new dates arrive).
* **Frequency** (``freq``): y and x are compounded to weekly, monthly or quarterly returns on
  the same calendar periods (``qf.compound``: labelled by the period's calendar end; a period
  with a missing day is NaN for that column; partial first and last periods dropped). A frame
  whose every date is its period's calendar end (midnight), such as ``qf.compound``'s output
  or monthly Ken French factors (``qf.sources.factor_model(..., freq="M")``), is already at
  that frequency and is used as it is. A frame with at most one row per period on other
  dates (monthly returns dated on the last trading day, say) is refused rather than guessed
  at: relabel it to the periods' ends (``quantfit.data.frequency.period_ends``) or pass daily
  returns. A time zone is dropped first (the dates as written are kept).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from quantfit.data.frequency import Freq, compound, period_ends
from quantfit.errors import DataError, FitError

_UNIT = {"D": "days", "W": "weeks", "M": "months", "Y": "years"}
_PERIOD = {"W": "week", "M": "month", "Q": "quarter"}


def _dates(index: pd.Index, what: str) -> pd.DatetimeIndex:
    if not isinstance(index, pd.DatetimeIndex):
        raise FitError(f"{what} needs the data indexed by dates (a DatetimeIndex), got "
                       f"{type(index).__name__}")
    return index


def lookback_starts(index: pd.DatetimeIndex, n: int, unit: str) -> pd.DatetimeIndex:
    """The exclusive start t − lookback of the window ending at each date t (see the module
    docstring: DateOffset arithmetic, end-of-month rule for months and years)."""
    idx = index.as_unit("us")  # microseconds: four centuries back stay representable
    months = {"M": n, "Y": 12 * n}.get(unit)
    if months is None:
        return idx - pd.DateOffset(**{_UNIT[unit]: n})
    start = idx - pd.DateOffset(months=months)
    eom = idx.is_month_end
    if eom.any():
        start = start.where(~eom, start + pd.offsets.MonthEnd(0))
    return start


def window_starts(index: pd.Index, lookback: tuple[int, str]) -> np.ndarray:
    """(T,) int64: the first row of each date's calendar window, for dates in increasing
    order — the first row dated after t − lookback."""
    idx = _dates(index, f"window='{lookback[0]}{lookback[1]}' (a calendar lookback)")
    start = lookback_starts(idx, *lookback)
    return np.searchsorted(idx.as_unit("us").asi8, start.asi8, side="right").astype(np.int64)


def _wall_dates(idx: pd.DatetimeIndex) -> pd.DatetimeIndex:
    return idx.tz_localize(None) if idx.tz is not None else idx


def period_end_rows(index: pd.Index, every: Freq) -> np.ndarray:
    """(n,) int64: the last row of each ``every`` period ("W", "M", "Q") among dates in
    increasing order."""
    idx = _wall_dates(_dates(index, f"every={every!r}"))
    labels = period_ends(idx, every).asi8
    last = np.flatnonzero(labels[1:] != labels[:-1])
    return np.r_[last, len(labels) - 1].astype(np.int64) if len(labels) else last


def period_start_rows(index: pd.Index, every: Freq) -> np.ndarray:
    """(T,) int64: for each of dates in increasing order, the first row of its ``every``
    period."""
    idx = _wall_dates(_dates(index, f"every={every!r}"))
    labels = period_ends(idx, every).asi8
    new = np.r_[True, labels[1:] != labels[:-1]] if len(labels) else np.zeros(0, bool)
    return np.maximum.accumulate(np.where(new, np.arange(len(labels)), 0)).astype(np.int64)


def to_frequency(frame: pd.DataFrame, freq: Freq, kind: Literal["simple", "log"],
                 what: str) -> pd.DataFrame:
    """``frame`` (dates × columns) as ``freq`` returns: used as it is when already there,
    compounded otherwise (see the module docstring). Sorted by date."""
    idx = _wall_dates(_dates(frame.index, f"freq={freq!r}"))
    frame = frame.set_axis(idx, axis=0)
    if not idx.is_monotonic_increasing:
        frame = frame.sort_index(kind="stable")
        idx = frame.index
    ends = period_ends(idx, freq)
    midnight = idx.normalize()
    if (midnight == idx).all() and (ends.asi8 == idx.as_unit("us").asi8).all():
        return frame  # already one row per period, on its calendar end
    if len(idx) > 1 and ends.is_unique:
        i = int(np.argmax(ends.asi8 != midnight.as_unit("us").asi8) if (midnight == idx).all()
                else np.argmax(midnight != idx))
        raise FitError(f"{what} has one row per {_PERIOD[freq]} but dated {idx[i]}, not on the "
                       f"period's end ({ends[i].date()}): already {freq} returns? Date them on "
                       f"the periods' ends (quantfit.data.frequency.period_ends), or pass daily "
                       f"returns")
    try:
        return compound(frame, freq, kind)
    except DataError as exc:
        raise FitError(f"freq={freq!r}: {what}: {exc}") from None

