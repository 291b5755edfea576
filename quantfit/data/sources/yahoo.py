"""``qf.sources.yfinance``: adjusted daily closes from Yahoo Finance through ``yfinance``.

Tickers are fetched in batches with ``yfinance.download(..., auto_adjust=True)``, so
``Close`` is split- and dividend-adjusted. Two kinds of trouble are handled:

* the batch call raises (``YFRateLimitError``, or a network error, which yfinance's HTTP
  backends raise as ``OSError`` subclasses): the batch is retried with exponential backoff;
* tickers come back empty: ``yfinance.download`` swallows per-ticker errors (rate limits
  included) and returns an all-NaN column, so empty tickers are asked for again
  (``empty_retries`` times, with backoff) and then **reported by name**: a
  ``MissingTickersWarning`` is issued and ``frame.attrs["missing"]`` lists them.
  If no ticker returns anything, ``DataError`` is raised instead.

The downloader is injectable (``downloader=``): tests pass fakes that return frames in the
exact shapes yfinance 1.x builds, so nothing here needs the network to be tested.
"""

from __future__ import annotations

import time
import warnings
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from quantfit.data.dates import parse_date
from quantfit.data.frames import to_long, validate_long
from quantfit.errors import DataError


class MissingTickersWarning(UserWarning):
    """Some requested tickers came back from Yahoo with no prices."""


class NoPricesError(DataError):
    """No requested ticker came back from Yahoo with any price (``tickers`` names them)."""

    def __init__(self, tickers: list[str]):
        super().__init__(f"yfinance returned no prices for any of: {', '.join(tickers)}")
        self.tickers = list(tickers)


def _transient_errors() -> tuple[type[BaseException], ...]:
    """Exceptions worth retrying: Yahoo's rate limit and any network-level OSError."""
    errors: list[type[BaseException]] = [OSError]
    try:
        from yfinance.exceptions import YFRateLimitError
        errors.append(YFRateLimitError)
    except ImportError:  # pragma: no cover - yfinance is a dependency
        pass
    return tuple(errors)


def _default_downloader() -> Callable[..., pd.DataFrame]:
    import yfinance as yf
    return yf.download


def _normalize_tickers(tickers: Iterable[str] | str) -> list[str]:
    """Upper-case, de-duplicated, order-kept tickers; Yahoo symbols are case-insensitive."""
    if isinstance(tickers, str):
        tickers = tickers.replace(",", " ").split()
    out: list[str] = []
    for t in tickers:
        if not isinstance(t, str) or not t.strip():
            raise DataError(f"bad ticker {t!r}: tickers must be non-empty strings")
        t = t.strip().upper()
        if any(c.isspace() for c in t):
            raise DataError(f"bad ticker {t!r}: tickers cannot contain spaces")
        if t not in out:
            out.append(t)
    if not out:
        raise DataError("no tickers given")
    return out


def closes_from_download(data: pd.DataFrame | None, requested: Sequence[str],
                         field: str = "Close") -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Pull ``field`` (and ``Volume``) out of a ``yfinance.download`` result.

    Handles every shape yfinance 1.x returns: MultiIndex columns ``(Price, Ticker)``
    (``group_by="column"``, the default) or ``(Ticker, Price)`` (``group_by="ticker"``), and the
    flat single-ticker shape (``multi_level_index=False``). Returns wide closes and volumes
    (dates x requested tickers, float64, tz-naive DatetimeIndex); a ticker missing from the
    result is an all-NaN column.
    """
    empty = pd.DataFrame(np.nan, index=pd.DatetimeIndex([], name="date"), columns=list(requested))
    if data is None or len(data) == 0 or len(data.columns) == 0:
        return empty, None
    index = pd.DatetimeIndex(data.index)
    if index.tz is not None:
        index = index.tz_localize(None)  # keep the exchange's calendar date
    cols = data.columns
    if isinstance(cols, pd.MultiIndex):
        names = list(cols.names)
        if "Price" in names:
            level = names.index("Price")
        else:
            level = next((i for i in range(cols.nlevels) if field in cols.get_level_values(i)), None)
            if level is None:
                raise DataError(f"yfinance result has no {field!r} column (columns: {list(cols)[:6]} ...)")
        def pick(name):
            if name not in cols.get_level_values(level):
                return None
            part = data.xs(name, axis=1, level=level)
            part.columns = [str(c).upper() for c in part.columns]
            return part
        close, volume = pick(field), pick("Volume")
        if close is None:
            raise DataError(f"yfinance result has no {field!r} column")
    else:
        if len(requested) != 1:
            raise DataError("yfinance returned single-ticker columns for a multi-ticker request")
        if field not in cols:
            raise DataError(f"yfinance result has no {field!r} column (columns: {list(cols)})")
        close = data[[field]].set_axis(list(requested), axis=1)
        volume = data[["Volume"]].set_axis(list(requested), axis=1) if "Volume" in cols else None

    def shape(part):
        part = part.set_axis(index, axis=0).astype("float64")
        return part.reindex(columns=list(requested)).rename_axis("date").rename_axis(None, axis=1)
    return shape(close), (shape(volume) if volume is not None else None)


def yfinance(tickers: Iterable[str] | str, start=None, end=None, *, batch_size: int = 100,
             retries: int = 4, backoff: float = 2.0, empty_retries: int = 1,
             downloader: Callable[..., pd.DataFrame] | None = None,
             sleep: Callable[[float], None] | None = None, **download_kwargs) -> pd.DataFrame:
    """Download adjusted daily closes (and volumes) from Yahoo Finance as a long frame.

    Parameters
    ----------
    tickers : Yahoo symbols (a list, or one string separated by spaces/commas); upper-cased.
    start, end : dates (``quantfit.data.dates`` rules), passed to ``yfinance.download`` as ISO
        text (``end`` is exclusive there); None = all history.
    batch_size : tickers per ``download`` call.
    retries : extra attempts for a batch whose call raises a rate-limit or network error;
        waits ``backoff * 2**attempt`` seconds between attempts.
    empty_retries : how many more times to ask for tickers that came back empty.
    downloader : a callable with ``yfinance.download``'s signature (default: the real one).
    sleep : the waiting function (default ``time.sleep``; tests pass a recorder).
    **download_kwargs : forwarded to the downloader (``threads``, ``timeout``, ``session`` ...).

    Returns
    -------
    The validated long frame (``date, ticker, close, volume``); ``attrs["missing"]`` lists the
    tickers that returned no prices (also reported with ``MissingTickersWarning``).

    Raises
    ------
    DataError when no ticker returned any price, or when a batch still fails after all
    retries (the message names the tickers of that batch and the last error).
    """
    names = _normalize_tickers(tickers)
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    download = downloader or _default_downloader()
    sleep = sleep or time.sleep
    transient = _transient_errors()
    # Dates by the data layer's rules (05.07.2024 is refused, not read as 7 May), sent as ISO.
    start, end = (None if d is None else parse_date(d, f"{what} date").date().isoformat()
                  for d, what in ((start, "start"), (end, "end")))
    kwargs = dict(start=start, end=end, auto_adjust=True, actions=False, progress=False,
                  group_by="column", multi_level_index=True)
    kwargs.update(download_kwargs)
    field = "Close" if kwargs.get("auto_adjust", True) else "Adj Close"

    def fetch(batch: list[str]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        for attempt in range(retries + 1):
            try:
                data = download(list(batch), **kwargs)
                return closes_from_download(data, batch, field)
            except transient as exc:
                if attempt == retries:
                    raise DataError(f"yfinance download failed for {', '.join(batch)} after "
                                    f"{retries + 1} attempts: {exc}") from None
                sleep(backoff * 2 ** attempt)
        raise AssertionError("unreachable")

    closes: list[pd.DataFrame] = []
    volumes: list[pd.DataFrame] = []
    pending = names
    for round_ in range(empty_retries + 1):
        if round_:
            sleep(backoff * 2 ** (round_ - 1))
        empty: list[str] = []
        for i in range(0, len(pending), batch_size):
            batch = pending[i:i + batch_size]
            close, volume = fetch(batch)
            got = close.notna().any(axis=0)
            empty += [t for t in batch if not got[t]]
            ok = [t for t in batch if got[t]]
            if ok:
                closes.append(close[ok])
                volumes.append(volume[ok] if volume is not None
                               else pd.DataFrame(np.nan, index=close.index, columns=ok))
        pending = empty
        if not pending:
            break

    if not closes:
        raise NoPricesError(names)
    long = pd.concat([to_long(c, v) for c, v in zip(closes, volumes)], ignore_index=True)
    frame = validate_long(long, source="yfinance")
    frame.attrs["missing"] = list(pending)
    if pending:
        warnings.warn(f"yfinance returned no prices for {len(pending)} ticker"
                      f"{'s' if len(pending) > 1 else ''}: {', '.join(pending)}",
                      MissingTickersWarning, stacklevel=2)
    return frame
