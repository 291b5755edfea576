"""Helpers shared by the price-store tests: synthetic frames, snapshots, and a reference model.

``Model`` is the store's specification written the slow, obvious way (a dict keyed by
(ticker, date), every ingest a loop): the store's answers are compared with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes): 'untouched' means this is equal."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def make_long(tickers, dates, seed=0, scale=1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(tickers) * len(dates)
    return pd.DataFrame({
        "date": np.tile(pd.DatetimeIndex(dates).to_numpy(), len(tickers)),
        "ticker": np.repeat(np.asarray(tickers, dtype=object), len(dates)),
        "close": scale * (10 + rng.random(n) * 90),
        "volume": rng.integers(0, 10**6, n).astype(float),
    })


def wide_of(long: pd.DataFrame, field="close") -> pd.DataFrame:
    w = long.assign(ticker=long["ticker"].astype(str)).pivot(index="date", columns="ticker", values=field)
    w = w.sort_index()[sorted(w.columns)].astype("float64")
    w.index = pd.DatetimeIndex(w.index, name="date").astype("datetime64[us]")
    w.columns = pd.Index(list(w.columns), dtype=object)
    w.columns.name = None
    return w


def assert_wide_equal(got, expected):
    pd.testing.assert_frame_equal(got, expected, check_freq=False)


def manifest(store_dir: Path) -> dict:
    return json.loads((Path(store_dir) / "manifest.json").read_text())


def live_files(store_dir: Path) -> set[str]:
    """Names of the data files the committed manifest lists."""
    m = manifest(store_dir)
    if m["version"] == 1:
        return {e["file"] for e in m["files"].values()}
    return {f["name"] for f in m["files"]} | {c["name"] for c in m["changes"]}


def data_files(store_dir: Path) -> set[str]:
    return {p.name for p in (Path(store_dir) / "data").iterdir()}


class Model:
    """The reference: keys (ticker, date) -> (close, volume), upserted one row at a time."""

    def __init__(self):
        self.rows: dict[tuple[str, pd.Timestamp], tuple[float, float]] = {}
        self.generation = 0
        self.log: list[dict[str, pd.Timestamp]] = []   # per generation: ticker -> earliest change

    def ingest(self, frame: pd.DataFrame) -> tuple[int, int, int]:
        has_volume = "volume" in frame.columns
        added = replaced = unchanged = 0
        changed: dict[str, pd.Timestamp] = {}
        for rec in frame.itertuples(index=False):
            key = (str(rec.ticker), pd.Timestamp(rec.date))
            old = self.rows.get(key)
            vol = float(rec.volume) if has_volume else (old[1] if old else np.nan)
            new = (float(rec.close), vol)
            if old is None:
                added += 1
            elif old[0] == new[0] and (old[1] == new[1] or (np.isnan(old[1]) and np.isnan(new[1]))):
                unchanged += 1
                continue
            else:
                replaced += 1
            self.rows[key] = new
            changed[key[0]] = min(changed.get(key[0], key[1]), key[1])
        if changed:
            self.generation += 1
            self.log.append(changed)
        return added, replaced, unchanged

    def changes_since(self, generation: int) -> dict[str, pd.Timestamp]:
        out: dict[str, pd.Timestamp] = {}
        for changed in self.log[generation:]:
            for t, d in changed.items():
                out[t] = min(out.get(t, d), d)
        return out

    def long(self) -> pd.DataFrame:
        keys = list(self.rows)
        return pd.DataFrame({"date": [k[1] for k in keys], "ticker": [k[0] for k in keys],
                             "close": [v[0] for v in self.rows.values()],
                             "volume": [v[1] for v in self.rows.values()]})

    def wide(self, field="close") -> pd.DataFrame:
        return wide_of(self.long(), field)

    def info(self) -> pd.DataFrame:
        long = self.long()
        g = long.groupby("ticker")["date"]
        return pd.DataFrame({"first": g.min(), "last": g.max(), "rows": g.size()})
