"""PriceStore change tracking: ``changes_since(g)`` names exactly the tickers changed after g,
with their earliest changed date (exact for recent generations, never later for merged ones)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from storekit import Model, make_long, manifest

import quantfit as qf
from quantfit.data.store import ChangeSet, ChangesUnavailable, changes
from quantfit.errors import DataError

DAYS = pd.bdate_range("2021-01-04", periods=60)
T = ["AAA", "BBB", "CCC", "DDD"]


@pytest.fixture
def store(tmp_path):
    return qf.PriceStore(tmp_path / "s", buckets=4)


def test_appends_replacements_new_tickers(store):
    base = make_long(T, DAYS[:40])
    store.ingest(base)                                             # gen 1
    assert store.changes_since(0) == {t: DAYS[0] for t in T}
    assert store.changes_since(1) == {}
    day = make_long(T, DAYS[40:41], seed=1)
    store.ingest(day)                                              # gen 2: one new day for all
    assert store.changes_since(1) == {t: DAYS[40] for t in T}
    revised = base[(base["ticker"] == "BBB") & (base["date"] >= DAYS[10])].assign(close=lambda f: f["close"] * 0.9)
    store.ingest(pd.concat([revised, base[base["ticker"] == "CCC"]]))  # gen 3: BBB from day 10; CCC unchanged
    assert store.changes_since(2) == {"BBB": DAYS[10]}
    store.ingest(make_long(["NEW"], DAYS[30:45], seed=2))          # gen 4: a new ticker
    assert store.changes_since(3) == {"NEW": DAYS[30]}
    # two readers at different generations
    assert store.changes_since(2) == {"BBB": DAYS[10], "NEW": DAYS[30]}
    assert store.changes_since(1) == {"AAA": DAYS[40], "BBB": DAYS[10], "CCC": DAYS[40],
                                      "DDD": DAYS[40], "NEW": DAYS[30]}
    got = store.changes_since(0)
    assert isinstance(got, ChangeSet) and got.generation == store.generation == 4
    assert got == {"AAA": DAYS[0], "BBB": DAYS[0], "CCC": DAYS[0], "DDD": DAYS[0], "NEW": DAYS[30]}
    assert all(isinstance(d, pd.Timestamp) for d in got.values())
    s = store.ingest(day[day["ticker"] == "AAA"])                  # the same row again: no generation
    assert not s.changed and store.generation == 4 and store.changes_since(4) == {}


def test_volume_only_change_and_input_without_volume(store):
    base = make_long(T, DAYS[:5])
    store.ingest(base)
    store.ingest(base.iloc[[2]].assign(volume=1.0))                # a volume-only change is a change
    assert store.changes_since(1) == {"AAA": DAYS[2]}
    store.ingest(base[["date", "ticker", "close"]])                 # no volume column: keeps volumes
    assert store.generation == 2


def test_compaction_is_not_a_change(store):
    store.ingest(make_long(T, DAYS[:20]))
    for k in range(20, 25):
        store.ingest(make_long(T, DAYS[k:k + 1], seed=k))
    g = store.generation
    before = store.changes_since(2)
    assert store.compact(full=True).done
    assert store.generation == g and store.changes_since(g) == {} and store.changes_since(2) == before


def test_argument_and_range_errors(store):
    store.ingest(make_long(T, DAYS[:3]))
    with pytest.raises(ChangesUnavailable, match="after this store's last generation"):
        store.changes_since(2)
    with pytest.raises(DataError, match="must be >= 0"):
        store.changes_since(-1)
    with pytest.raises(DataError, match="must be an integer"):
        store.changes_since("1")
    assert issubclass(ChangesUnavailable, DataError)


def test_log_is_bounded_and_merged_answers_are_conservative(store, monkeypatch):
    monkeypatch.setattr(changes, "KEEP_EXACT", 3)
    model = Model()
    rng = np.random.default_rng(0)
    base = make_long(T, DAYS[:30])
    store.ingest(base)
    model.ingest(base)
    n_days = 30
    for k in range(25):
        if k % 3 == 2:  # a revision of one ticker from a random past day
            t = T[int(rng.integers(0, 4))]
            d0 = int(rng.integers(0, n_days))
            frame = make_long([t], DAYS[d0:n_days], seed=100 + k)
        else:           # a new day for some tickers
            names = [t for t in T if rng.random() < 0.7] or T[:1]
            frame = make_long(names, DAYS[n_days:n_days + 1], seed=200 + k)
            n_days += 1
        store.ingest(frame)
        model.ingest(frame)
        m = manifest(store.path)
        assert len(m["changes"]) <= changes.KEEP_EXACT + 1 + int(np.log2(model.generation))
        spans = [c["hi"] - c["lo"] for c in m["changes"][:-changes.KEEP_EXACT]]
        assert all(a > sum(spans[i + 1:]) for i, a in enumerate(spans))  # a binary counter
        assert all(c["rows"] <= 4 for c in m["changes"])
        for g in range(model.generation + 1):
            got, truth = store.changes_since(g), model.changes_since(g)
            assert set(got) == set(truth), (k, g)                  # tickers: always exact
            assert all(got[t] <= truth[t] for t in truth), (k, g)  # dates: never later
            if all(c["lo"] >= g for c in m["changes"] if c["hi"] > g):
                assert got == truth, (k, g)                        # exact files: exact dates
    assert any(c["hi"] - c["lo"] > 1 for c in manifest(store.path)["changes"])  # merging happened
    g_recent = model.generation - changes.KEEP_EXACT
    assert store.changes_since(g_recent) == model.changes_since(g_recent)


def test_old_checkpoints_are_not_sent_back_to_the_first_ingest(store, monkeypatch):
    """Many small ingests (one ticker file at a time) between two nightly reads: the read's
    merged file must not reach back to the initial full-history ingest."""
    monkeypatch.setattr(changes, "KEEP_EXACT", 4)
    store.ingest(make_long(T, DAYS[:30]))
    n_days = 30
    checkpoints = []
    for night in range(6):
        checkpoints.append(store.changes_since(0).generation)
        for t in T:  # one generation per ticker
            store.ingest(make_long([t], DAYS[n_days:n_days + 1], seed=night * 10 + T.index(t)))
        n_days += 1
    got = store.changes_since(checkpoints[-1])  # the last night's reader
    assert set(got) == set(T)
    assert all(d >= pd.Timestamp(DAYS[n_days - 3]) for d in got.values()), got  # not DAYS[0]
