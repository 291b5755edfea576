"""``qf.compound``: daily returns -> weekly, month-end or quarter-end returns.

    >>> rets = qf.returns(qf.load_sample())          # daily simple returns
    >>> monthly = qf.compound(rets, "M")             # one row per calendar month
    >>> weekly = qf.compound(rets, "W")              # weeks ending Friday

Conventions:

* **Input**: per-period returns in decimals (what ``qf.returns`` gives), a DataFrame
  (DatetimeIndex x assets) or a Series; one row per trading day, dates sorted, unique and
  tz-naive. Pass **raw** returns, not excess returns: the excess over a monthly rate is taken
  after compounding (``qf.excess_returns(monthly, ff["RF"])`` with the monthly Ken French RF),
  because compounded daily excess returns are not monthly excess returns.
* **Periods** (``freq``): ``"W"`` weeks ending Friday (Saturday to Friday, pandas ``W-FRI``),
  ``"M"`` calendar months, ``"Q"`` calendar quarters. The same boundaries for every column.
* **Formula**: ``kind="simple"``: ∏(1 + r) − 1 over the period's days; ``kind="log"``: Σ r.
* **Labels**: each period is labelled by its **calendar end date** (the Friday, the last day
  of the month, the last day of the quarter), midnight, like pandas ``resample("W-FRI" |
  "ME" | "QE")`` and like the monthly Ken French files (``qf.sources.french`` dates month
  ``YYYYMM`` on its last calendar day). A label never depends on which days a data set
  happens to have, so stock returns, an index and the monthly factor files compounded or
  read separately line up by date. (Estimates reported at "the last trading day of each
  period" are an output choice of the fit; the returns themselves carry calendar labels.)
* **Missing days**: a day is missing for a column when its row is in the index and the
  value is NaN (no price: ``qf.returns`` never fills gaps). By default (``min_days=None``) a
  period with **any** missing day is NaN for that column: a month with a hole is not a
  monthly return, and a stock listed or delisted mid-period gets no return for that period.
  With ``min_days=k`` the days present are compounded (missing days count as a zero
  return) and the period is NaN only when fewer than ``k`` days are present.
* **Empty periods**: a period inside the data's range with no row at all (a hole in the
  history) is a row of NaN, never a zero return; the output has every period from the first
  to the last.
* **Partial first/last period**: quantfit knows no exchange calendar, so the data's edges
  are judged by weekdays: the first period is partial when a weekday of it comes before the
  first date, the last period when a weekday of it comes after the last date.
  ``partial="drop"`` (default) drops such periods, ``"keep"`` compounds them from the days
  present. A holiday on such a weekday (New Year's Day, Good Friday) makes a complete edge
  period look partial; it is then dropped until later data makes it an interior period.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import numpy as np
import pandas as pd

from quantfit.data.frames import DATE_DTYPE
from quantfit.errors import DataError

Frame = TypeVar("Frame", pd.DataFrame, pd.Series)
Freq = Literal["W", "M", "Q"]

#: freq -> the pandas period it stands for (weeks ending Friday, calendar months, quarters)
FREQS: dict[str, str] = {"W": "W-FRI", "M": "M", "Q": "Q-DEC"}

# Columns compounded per pass, sized so that one pass holds ~64 MB of float64 whatever the
# universe: memory is bounded by the history's length, not by the number of assets.
_CHUNK_CELLS = 8_000_000


def _check_freq(freq) -> None:
    if not isinstance(freq, str) or freq not in FREQS:
        raise DataError(f"freq must be one of {', '.join(map(repr, FREQS))} (weeks ending "
                        f"Friday, month ends, quarter ends), got {freq!r}")


def period_ends(index: pd.DatetimeIndex, freq: Freq) -> pd.DatetimeIndex:
    """The calendar end date (midnight) of the ``freq`` period holding each date of ``index``.

    ``"W"``: the Friday ending the week (Saturday to Friday); ``"M"``: the month's last day;
    ``"Q"``: the quarter's last day. These are ``compound``'s labels.
    """
    _check_freq(freq)
    ends = index.to_period(FREQS[freq]).end_time.normalize()
    return pd.DatetimeIndex(ends.astype(DATE_DTYPE), name="date")


def _check_index(index: pd.Index) -> None:
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError("returns must have a DatetimeIndex (dates as the index)")
    if len(index) == 0:
        raise DataError("returns have no rows")
    if index.tz is not None:
        raise DataError(f"returns' dates must be tz-naive, got tz={index.tz} (use .tz_localize(None))")
    if index.has_duplicates:
        raise DataError(f"returns' index has duplicate date {index[index.duplicated()][0].date()}")
    if not index.is_monotonic_increasing:
        raise DataError("returns' index must be sorted by date (call .sort_index() first)")


def _check_values(values: np.ndarray, kind: str, frame: pd.DataFrame, col0: int) -> None:
    """Refuse ±inf, and simple returns below -100 % (a price cannot turn negative)."""
    bad = np.isinf(values)
    if kind == "simple":
        bad |= values < -1.0
    if bad.any():
        r, c = np.argwhere(bad)[0]
        what = "finite" if kind == "log" else "finite and >= -1 (simple returns)"
        raise DataError(f"returns must be {what}: {frame.columns[col0 + c]} on "
                        f"{frame.index[r].date()} is {float(values[r, c])!r}")


def _edge_keep(n_periods: int, index: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """False for the first/last period when one of its weekdays lies outside the data's dates."""
    keep = np.ones(n_periods, dtype=bool)
    day = np.timedelta64(1, "D")
    first, last = (np.datetime64(d.date(), "D") for d in (index[0], index[-1]))
    edges = index[[0, -1]].to_period(FREQS[freq])
    period_start = np.datetime64(edges[0].start_time.date(), "D")
    period_end = np.datetime64(edges[1].end_time.date(), "D")
    if np.busday_count(period_start, first) > 0:       # weekdays in [period start, first date)
        keep[0] = False
    if np.busday_count(last + day, period_end + day) > 0:  # weekdays in (last date, period end]
        keep[-1] = False
    return keep


def compound(returns: Frame, freq: Freq, kind: Literal["simple", "log"] = "simple", *,
             min_days: int | None = None,
             partial: Literal["drop", "keep"] = "drop") -> Frame:
    """Compound daily returns to weekly (``"W"``), month-end (``"M"``) or quarter-end (``"Q"``).

    Parameters
    ----------
    returns : DataFrame (DatetimeIndex x assets) or Series of per-day returns in decimals.
    freq : ``"W"`` (weeks ending Friday), ``"M"`` (calendar months) or ``"Q"`` (quarters).
    kind : ``"simple"``: ∏(1 + r) − 1; ``"log"``: Σ r (log returns stay log returns).
    min_days : ``None`` (default): a period with any missing (NaN) day is NaN for that column.
        An integer k >= 1: compound the days present; NaN when fewer than k are present.
    partial : ``"drop"`` (default) or ``"keep"`` the first/last period when the data do not
        cover all its weekdays (see the module docstring).

    Returns
    -------
    Same type as ``returns``, float64, indexed by the periods' calendar end dates (``date``):
    every period from the first to the last kept one, NaN where a column has no return.
    """
    if kind not in ("simple", "log"):
        raise DataError(f"kind must be 'simple' or 'log', got {kind!r}")
    _check_freq(freq)
    if partial not in ("drop", "keep"):
        raise DataError(f"partial must be 'drop' or 'keep', got {partial!r}")
    if min_days is not None and (isinstance(min_days, bool) or not isinstance(min_days, (int, np.integer))
                                 or min_days < 1):
        raise DataError(f"min_days must be None or an integer >= 1, got {min_days!r}")
    if not isinstance(returns, (pd.DataFrame, pd.Series)):
        raise DataError(f"returns must be a DataFrame or Series, got {type(returns).__name__}")
    frame = returns.to_frame() if isinstance(returns, pd.Series) else returns
    _check_index(frame.index)

    ends = period_ends(frame.index, freq)
    n = len(ends)
    # rows are sorted, so each period's rows are contiguous: [starts[i], starts[i + 1])
    starts = np.flatnonzero(np.r_[True, ends.to_numpy()[1:] != ends.to_numpy()[:-1]])
    labels = ends[starts]
    rows_in_period = np.diff(np.r_[starts, n])
    keep = (np.ones(len(labels), dtype=bool) if partial == "keep" else
            _edge_keep(len(labels), frame.index, freq))
    required = rows_in_period if min_days is None else np.full(len(labels), int(min_days))

    kept = labels[keep]
    if len(kept) == 0:
        out_index = pd.DatetimeIndex([], dtype=DATE_DTYPE, name="date")
    else:
        every = pd.period_range(kept[0], kept[-1], freq=FREQS[freq])  # vectorized, unlike date_range
        out_index = pd.DatetimeIndex(every.end_time.normalize().astype(DATE_DTYPE), name="date")
    where = out_index.get_indexer(labels[keep])
    out = np.full((len(out_index), frame.shape[1]), np.nan)

    step = max(1, _CHUNK_CELLS // max(n, 1))
    for c0 in range(0, frame.shape[1], step):
        try:
            values = frame.iloc[:, c0:c0 + step].to_numpy(dtype="float64", na_value=np.nan, copy=True)
        except (TypeError, ValueError) as exc:
            raise DataError(f"returns must be numeric: {exc}") from None
        _check_values(values, kind, frame, c0)
        missing = np.isnan(values)
        present = np.add.reduceat((~missing).astype(np.int64), starts, axis=0)  # (periods, cols) days with a value
        if kind == "simple":
            values += 1.0
            values[missing] = 1.0  # neutral element of the product
            totals = np.multiply.reduceat(values, starts, axis=0) - 1.0
        else:
            values[missing] = 0.0
            totals = np.add.reduceat(values, starts, axis=0)
        totals[present < required[:, None]] = np.nan
        out[where, c0:c0 + step] = totals[keep]

    if isinstance(returns, pd.Series):
        return pd.Series(out[:, 0], index=out_index, name=returns.name)
    return pd.DataFrame(out, index=out_index, columns=frame.columns)
