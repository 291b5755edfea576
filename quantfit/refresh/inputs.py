"""Inputs of a refresh: the price store (the embedded sample for an empty default store,
``--update yfinance``), the regression inputs y and x, and their fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from typing import Callable

import numpy as np
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


def update_yfinance(store, tickers: list[str], downloader: Callable | None = None) -> list[str]:
    """Ingest the latest Yahoo prices of ``tickers`` into ``store``; returns warning lines.

    Tickers already in the store are fetched from the earliest of their last dates (so a
    revised last close is replaced); new tickers get their whole history.
    """
    from quantfit.data import sources
    known = set(store.tickers())
    old = [t for t in tickers if t in known]
    new = [t for t in tickers if t not in known]
    notes: list[str] = []
    batches: list[tuple[list[str], str | None]] = []
    if old:
        last = store.prices(old).apply(lambda c: c.last_valid_index())
        batches.append((old, str(min(last).date())))
    if new:
        batches.append((new, None))
    for names, start in batches:
        log.info("yfinance: %d ticker%s from %s", len(names), "s" if len(names) > 1 else "",
                 start or "the start of their history")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sources.MissingTickersWarning)
            frame = sources.yfinance(names, start=start, downloader=downloader)
        missing = frame.attrs.get("missing", [])
        if missing:
            notes.append(f"yfinance returned no prices for {len(missing)} ticker"
                         f"{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
        log.info("%s: %s", store.path, store.ingest(frame, source="yfinance"))
    return notes


def load_inputs(p: RefreshParams, store, universe: list[str]):
    """Prices, and the regression inputs: y (dates × assets), x (dates × factors).

    Returns ``(prices, y, x)``; prices cover the universe and (without factors) the benchmark.
    """
    from quantfit.data import returns, sources
    wanted = universe + ([p.benchmark] if p.factors is None and p.benchmark not in universe else [])
    prices = store.prices(wanted)
    if len(prices) < 2:
        raise DataError(f"store {p.store} has {len(prices)} date(s) for the universe: need at least 2")
    rets = returns(prices)
    if p.factors is None:
        return prices, rets[universe], rets[[p.benchmark]]
    ff = sources.french(p.factors)
    if "RF" not in ff.columns:
        raise DataError(f"factors file {p.factors} has no RF column (columns: {', '.join(ff.columns)})")
    gaps = np.diff(ff.index.values).astype("timedelta64[D]").astype(int)
    if len(gaps) and np.median(gaps) > 4:
        raise DataError(f"factors file {p.factors} is not daily (median gap {np.median(gaps):.0f} days); "
                        f"use a *_daily file with daily prices")
    dates = rets.index.intersection(ff.index)
    if len(dates) < 2:
        raise DataError(f"factors file {p.factors} ({ff.index[0].date()} to {ff.index[-1].date()}) "
                        f"shares no dates with the prices")
    ff = ff.loc[dates]
    y = rets.loc[dates, universe].sub(ff["RF"], axis=0)
    x = ff.drop(columns="RF")
    return prices, y, x


def fingerprint(y: pd.DataFrame, x: pd.DataFrame, end: pd.Timestamp) -> str:
    """Hash of the regression inputs up to ``end`` (dates, names, every value bit for bit)."""
    h = hashlib.blake2b(digest_size=16)
    ys, xs = y.loc[:end], x.loc[:end]
    h.update(json.dumps([[str(c) for c in y.columns], [str(c) for c in x.columns]]).encode())
    h.update(ys.index.values.astype("datetime64[D]").astype(np.int64).tobytes())
    h.update(np.ascontiguousarray(ys.to_numpy(np.float64)).tobytes())
    h.update(np.ascontiguousarray(xs.to_numpy(np.float64)).tobytes())
    return h.hexdigest()
