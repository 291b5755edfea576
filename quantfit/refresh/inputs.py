"""The price store of a refresh: the embedded sample for an empty default store, and
``--update yfinance`` (the latest Yahoo prices of the universe and the benchmark).
"""

from __future__ import annotations

import logging
import warnings
from typing import Callable

import pandas as pd

from quantfit.errors import DataError
from quantfit.refresh.params import RefreshParams

log = logging.getLogger("quantfit.refresh")


def _ensure_store(p: RefreshParams):
    """Open the store; fill an empty *default* store with the embedded sample."""
    from quantfit.data import PriceStore, sources
    store = PriceStore(p.store)
    if store.tickers():
        return store
    if p.update:
        return store  # the update below fills it
    if p.store_given:
        raise DataError(f"store {p.store} is empty or missing: ingest prices first "
                        f"('quantfit ingest ...') or use --update yfinance")
    log.info("store %s is empty: ingesting the embedded sample (19 stocks + SPY)", p.store)
    summary = store.ingest(sources.sample(), source="sample")
    log.info("%s: %s", p.store, summary)
    return store


#: Relative change of an already stored adjusted close that means Yahoo re-adjusted the history.
READJUST_RTOL = 1e-6


def update_yfinance(store, tickers: list[str], downloader: Callable | None = None) -> list[str]:
    """Ingest the latest Yahoo prices of ``tickers`` into ``store``; returns warning lines.

    Tickers already in the store are fetched from their last stored date (one download per
    distinct last date), so each fetch overlaps the store by one day and a revised last close
    is replaced; new tickers get their whole history. Yahoo's adjusted closes are rescaled
    back in time at every dividend or split: when a fetched close differs from the stored one
    on a day both have (beyond ``READJUST_RTOL``), that ticker's whole history is fetched
    again, so the stored series never mixes two adjustments (which would put the dividend
    into one day's return). If that full fetch comes back empty, the ticker keeps its stored
    history untouched this time (and is listed as missing).
    """
    from quantfit.data import sources
    known = set(store.tickers())
    old = [t for t in tickers if t in known]
    new = [t for t in tickers if t not in known]
    notes: list[str] = []
    frames: list[pd.DataFrame] = []
    if old:
        # Each ticker's last stored date from the store's ticker table (no price is read), then
        # one fetch per last date (usually one): a ticker that stopped trading years ago does
        # not drag the whole universe's download back to its last date.
        last = pd.to_datetime(store.ticker_info(old)["last"])
        groups = [(day, sorted(group.index)) for day, group in last.groupby(last)]
        fetched = _concat([_fetch(sources, names, str(day.date()), downloader, notes)
                           for day, names in groups])
        # The stored closes on the overlapping days only (what a re-adjustment changes).
        stored = pd.concat([store.prices(names, start=day) for day, names in groups], axis=1)
        readjusted = _readjusted(stored, fetched)
        frames.append(fetched[~fetched["ticker"].isin(readjusted)])
        if readjusted:
            log.info("yfinance: history re-adjusted (dividend, split or revision) for %d ticker%s: "
                     "%s; fetching it again in full", len(readjusted),
                     "s" if len(readjusted) > 1 else "", ", ".join(readjusted))
            frames.append(_fetch(sources, readjusted, None, downloader, notes))
    if new:
        frames.append(_fetch(sources, new, None, downloader, notes))
    frame = _concat(frames)
    if not len(frame):  # nothing at all: a wrong universe or no connection, not a stale name
        raise sources.NoPricesError(list(tickers))
    log.info("%s: %s", store.path, store.ingest(frame, source="yfinance"))
    return notes


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [f for f in frames if len(f)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["date", "ticker", "close", "volume"])


def _fetch(sources, names: list[str], start: str | None, downloader, notes: list[str]) -> pd.DataFrame:
    """One ``sources.yfinance`` call; tickers that came back empty are added to ``notes``."""
    log.info("yfinance: %d ticker%s from %s", len(names), "s" if len(names) > 1 else "",
             start or "the start of their history")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sources.MissingTickersWarning)
            frame = sources.yfinance(names, start=start, downloader=downloader)
        missing = frame.attrs.get("missing", [])
    except sources.NoPricesError as exc:  # e.g. a group of delisted tickers: a warning, not an error
        frame, missing = _concat([]), exc.tickers
    if missing:
        notes.append(f"yfinance returned no prices for {len(missing)} ticker"
                     f"{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    return frame


def _readjusted(stored: pd.DataFrame, frame: pd.DataFrame) -> list[str]:
    """Tickers whose fetched close differs from the stored close on a date both have."""
    if not len(frame):
        return []
    fetched = frame.pivot(index="date", columns="ticker", values="close")
    common = fetched.index.intersection(stored.index)
    names = [t for t in fetched.columns if t in stored.columns]
    if not len(common) or not names:
        return []
    a, b = stored.loc[common, names], fetched.loc[common, names]
    changed = ((a - b).abs() > READJUST_RTOL * a.abs()).any()
    return sorted(changed[changed].index)
