"""PriceStore layout: appends write only what is new, reads touch only the files they need,
deltas are folded when worthwhile, and every sequence of ingests gives what a plain dict of
(ticker, date) -> price gives (the reference model in storekit.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from storekit import (
    Model,
    assert_wide_equal,
    data_files,
    live_files,
    make_long,
    manifest,
    snapshot,
    wide_of,
)

import quantfit as qf
from quantfit.data.store import bucket_of, changes, layout, writing
from quantfit.errors import DataError

WEEKS = pd.date_range("2010-01-01", "2019-12-31", freq="W-FRI")


@pytest.fixture
def small_layout(monkeypatch):
    """Tiny thresholds, so that a few hundred rows exercise folds, merges, multi-year segments
    and row-group pruning."""
    monkeypatch.setattr(layout, "SEGMENT_ROWS", 150)
    monkeypatch.setattr(layout, "ROW_GROUP_ROWS", 16)
    monkeypatch.setattr(writing, "MAX_DELTAS", 3)
    monkeypatch.setattr(writing, "FOLD_BUDGET_ROWS", 120)
    monkeypatch.setattr(writing, "FOLD_BUDGET_FACTOR", 2)
    monkeypatch.setattr(changes, "KEEP_EXACT", 3)


@pytest.fixture
def reads(monkeypatch):
    """Names of the data files read (pyarrow.parquet.ParquetFile opens), in order."""
    seen: list[str] = []
    real = pq.ParquetFile

    def spy(source, *args, **kwargs):
        seen.append(str(source).rsplit("/", 1)[-1])
        return real(source, *args, **kwargs)

    monkeypatch.setattr(pq, "ParquetFile", spy)
    return seen


def entries(store_dir):
    return manifest(store_dir)["files"]


def covering(store_dir, day) -> set[str]:
    d = str(pd.Timestamp(day).date())
    return {f["name"] for f in entries(store_dir) if f["start"] <= d <= f["end"]}


# ----------------------------------------------------------------------------- appends
def test_append_reads_nothing_and_rewrites_no_history(tmp_path, reads):
    store = qf.PriceStore(tmp_path / "s", buckets=8)
    tickers = [f"T{i:02d}" for i in range(30)]
    store.ingest(make_long(tickers, WEEKS[:300]))
    before = snapshot(store.path / "data")
    reads.clear()
    s = store.ingest(make_long(tickers, WEEKS[300:301], seed=5))
    assert reads == []  # a pure append compares nothing: the ticker table knows the last dates
    assert (s.rows_added, s.rows_replaced, s.files_written, s.rows_rewritten) == (30, 0, 8, 0)
    after = snapshot(store.path / "data")
    assert all(after[n] == b for n, b in before.items())
    new = sorted(set(after) - set(before))
    assert sorted(n[:4] for n in new) == ["c-g2"] + [f"d{b:03d}" for b in range(8)]
    assert all(f["rows"] == sum(bucket_of(t, 8) == f["bucket"] for t in tickers)
               for f in entries(store.path) if f["kind"] == "delta")


def test_overlapping_ingest_reads_only_the_files_holding_those_dates(tmp_path, reads):
    store = qf.PriceStore(tmp_path / "s", buckets=4)
    tickers = [f"T{i:02d}" for i in range(12)]
    base = make_long(tickers, WEEKS)
    store.ingest(base)
    last = WEEKS[-1]
    reads.clear()
    # what the nightly yfinance update sends: the last stored day again (unchanged) + a new one
    again = base[base["date"] == last]
    s = store.ingest(pd.concat([again, make_long(tickers, [last + pd.Timedelta(days=7)], seed=3)]))
    assert (s.rows_added, s.rows_replaced, s.rows_unchanged) == (12, 0, 12)
    assert reads and set(reads) <= covering(store.path, last)


def test_segments_are_whole_years_and_old_years_stay_untouched(tmp_path, small_layout):
    store = qf.PriceStore(tmp_path / "s", buckets=2)
    tickers = ["A", "B", "C", "D"]
    model = Model()
    first = make_long(tickers, WEEKS[:400])
    store.ingest(first)
    model.ingest(first)
    old_years = {f["name"]: f for f in entries(store.path) if f["end"] < "2016-01-01"}
    assert old_years
    files = snapshot(store.path / "data")
    for k in range(400, len(WEEKS)):  # weekly appends for two more years
        day = make_long(tickers, WEEKS[k:k + 1], seed=k)
        store.ingest(day)
        model.ingest(day)
        m = manifest(store.path)
        for b in range(2):
            assert sum(f["kind"] == "delta" and f["bucket"] == b for f in m["files"]) <= writing.MAX_DELTAS
    now = snapshot(store.path / "data")
    assert all(now[n] == files[n] for n in old_years)  # history before the appends: never rewritten
    segs = [f for f in entries(store.path) if f["kind"] == "segment"]
    assert any(f["start"][:4] != f["end"][:4] for f in segs)  # small buckets: multi-year segments
    assert_wide_equal(store.prices(), model.wide())
    assert_wide_equal(store.prices(field="volume"), model.wide("volume"))


def test_fold_budget_bounds_the_history_rewritten_per_ingest(tmp_path, small_layout):
    store = qf.PriceStore(tmp_path / "s", buckets=4)
    tickers = [f"T{i:02d}" for i in range(16)]
    store.ingest(make_long(tickers, WEEKS[:200]))
    folds = 0
    for k in range(200, 300):
        before = {f["name"]: f for f in entries(store.path) if f["kind"] == "segment"}
        biggest = max(sum(f["rows"] for f in before.values() if f["bucket"] == b) for b in range(4))
        store.ingest(make_long(tickers, WEEKS[k:k + 1], seed=k))
        after = {f["name"] for f in entries(store.path)}
        rewritten = sum(f["rows"] for n, f in before.items() if n not in after)
        folds += rewritten > 0
        # the budget, plus at most one bucket's segments beyond it
        assert rewritten <= writing.FOLD_BUDGET_ROWS + writing.FOLD_BUDGET_FACTOR * 16 + biggest
    assert folds >= 5


def test_compact_folds_every_delta_and_changes_no_data(tmp_path):
    store = qf.PriceStore(tmp_path / "s", buckets=4)
    tickers = [f"T{i:02d}" for i in range(10)]
    store.ingest(make_long(tickers, WEEKS[:100]))
    for k in range(100, 104):
        store.ingest(make_long(tickers, WEEKS[k:k + 1], seed=k))
    store.ingest(make_long(["T03"], WEEKS[:100], seed=9))  # a revision: rows of every year replaced
    before = (store.prices(), store.prices(field="volume"), store.generation, store.ticker_info())
    m0 = manifest(store.path)
    s = store.compact()
    assert s.done and s.files_after < s.files_before
    m1 = manifest(store.path)
    assert not [f for f in m1["files"] if f["kind"] == "delta"]
    assert (m1["generation"], m1["changes"], m1["tickers"]) == (m0["generation"], m0["changes"], m0["tickers"])
    assert m1["commit"] == m0["commit"] + 1
    after = (store.prices(), store.prices(field="volume"), store.generation, store.ticker_info())
    for a, b in zip(before, after):
        if isinstance(a, pd.DataFrame):
            pd.testing.assert_frame_equal(a, b)
        else:
            assert a == b
    assert not store.compact().done  # nothing left to do: writes nothing
    assert data_files(store.path) == live_files(store.path)
    full = store.compact(full=True)
    assert full.done and full.rows_rewritten == sum(f["rows"] for f in m1["files"])
    assert_wide_equal(store.prices(), before[0])


# ----------------------------------------------------------------------------- against the model
def _random_ops(seed: int, n_ops: int):
    rng = np.random.default_rng(seed)
    tickers = [f"S{i:02d}" for i in range(10)]
    starts = {t: int(rng.integers(0, 200)) for t in tickers}
    ends = {t: int(rng.integers(250, 330)) for t in tickers}
    yield "ingest", pd.concat([make_long([t], WEEKS[starts[t]:ends[t]], seed=i) for i, t in enumerate(tickers[:7])])
    for k in range(n_ops):
        op = rng.choice(["append", "append", "revise", "replace", "new", "backfill", "novolume", "compact"])
        t = tickers[int(rng.integers(0, 7))]
        if op == "append":
            names = [x for x in tickers[:7] if rng.random() < 0.8] or tickers[:1]
            day = max(ends[x] for x in names)
            for x in names:
                ends[x] = day + int(rng.integers(1, 4))
            yield op, pd.concat([make_long([x], WEEKS[day:ends[x]], seed=1000 + k) for x in names])
        elif op == "revise":  # a re-adjusted history: every past close rescaled
            yield op, make_long([t], WEEKS[starts[t]:ends[t]], seed=2000 + k)
        elif op == "replace":  # a few keys changed, a few sent again unchanged, one new
            f = make_long([t], WEEKS[starts[t]:ends[t]], seed=3000 + k).sample(5, random_state=k)
            yield op, f
        elif op == "new":
            x = tickers[7 + int(rng.integers(0, 3))]
            starts[x], ends[x] = int(rng.integers(100, 300)), int(rng.integers(301, 360))
            yield op, make_long([x], WEEKS[starts[x]:ends[x]], seed=4000 + k)
        elif op == "backfill":
            s0 = max(0, starts[t] - int(rng.integers(1, 60)))
            yield op, make_long([t], WEEKS[s0:starts[t]], seed=5000 + k) if s0 < starts[t] else None
            starts[t] = s0
        elif op == "novolume":
            yield op, make_long([t], WEEKS[ends[t] - 3:ends[t]], seed=6000 + k).drop(columns="volume")
        else:
            yield op, None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_ingests_match_the_reference_model(tmp_path, small_layout, seed):
    store = qf.PriceStore(tmp_path / "s", buckets=3)
    model = Model()
    generations = [0]
    for step, (op, frame) in enumerate(_random_ops(seed, 40)):
        if op == "compact":
            store.compact()
            continue
        if frame is None or not len(frame):
            continue
        s = store.ingest(frame)
        assert (s.rows_added, s.rows_replaced, s.rows_unchanged) == model.ingest(frame), (step, op)
        assert s.generation == store.generation == model.generation
        generations.append(model.generation)
        if step % 5 == 4:
            _check_against_model(store, model)
    _check_against_model(store, model)
    assert store.verify().ok
    assert data_files(store.path) == live_files(store.path)


def _check_against_model(store, model):
    assert_wide_equal(store.prices(), model.wide())
    assert_wide_equal(store.prices(field="volume"), model.wide("volume"))
    info = store.ticker_info()
    ref = model.info()
    assert list(info.index) == list(ref.index)
    assert (info["first"] == ref["first"]).all() and (info["last"] == ref["last"]).all()
    assert (info["rows"] == ref["rows"]).all()
    # range and tail reads, per-ticker starts
    wide = model.wide()
    lo, hi = WEEKS[150], WEEKS[280]
    assert_wide_equal(store.prices(start=lo, end=hi), wide.loc[lo:hi].dropna(how="all"))
    for n in (0, 1, 7):
        assert_wide_equal(store.prices(start=hi, lookback=n), _lookback(wide, {t: hi for t in wide}, n))
    starts = {t: WEEKS[100 + 13 * i] for i, t in enumerate(wide.columns)}
    assert_wide_equal(store.prices(start=starts, lookback=5), _lookback(wide, starts, 5))


def _lookback(wide: pd.DataFrame, starts: dict, n: int) -> pd.DataFrame:
    """The reference for lookback: per column, rows >= its start plus its last n rows before."""
    out = wide.copy()
    for t in wide.columns:
        col = wide[t].dropna()
        before = col[col.index < starts[t]]
        keep = set(col.index[col.index >= starts[t]]) | set(before.index[max(0, len(before) - n):] if n else [])
        out[t] = wide[t].where(wide.index.isin(sorted(keep)))
    return out.dropna(how="all")


# ----------------------------------------------------------------------------- reads
@pytest.fixture
def yearly_store(tmp_path, monkeypatch):
    """40 tickers over 2010-2019, weekly, one segment per bucket-year (SEGMENT_ROWS small), plus deltas."""
    store = qf.PriceStore(tmp_path / "s", buckets=4)
    tickers = [f"R{i:02d}" for i in range(40)]
    long = make_long(tickers, WEEKS[:-3])
    with monkeypatch.context() as mp:
        mp.setattr(layout, "SEGMENT_ROWS", 100)
        store.ingest(long)
    for k in (3, 2, 1):
        day = make_long(tickers, WEEKS[-k:len(WEEKS) - k + 1], seed=k)
        store.ingest(day)
        long = pd.concat([long, day])
    return store, wide_of(long)


def test_a_date_range_reads_only_the_files_overlapping_it(yearly_store, reads):
    store, wide = yearly_store
    reads.clear()
    got = store.prices(start="2013-03-01", end="2013-06-30")
    assert_wide_equal(got, wide.loc["2013-03-01":"2013-06-30"])
    assert set(reads) == {f["name"] for f in entries(store.path)
                          if f["start"] <= "2013-06-30" and f["end"] >= "2013-03-01"}
    assert len(reads) == 4  # one 2013 segment per bucket


def test_tails_read_only_the_newest_files(yearly_store, reads):
    store, wide = yearly_store
    reads.clear()
    new_day = wide.index[-1]
    got = store.prices(start=new_day, lookback=52)  # a year of weeks before the new day
    assert_wide_equal(got, wide.iloc[-53:])
    years = {f["name"]: f["start"][:4] for f in entries(store.path)}
    assert {years[n] for n in reads} <= {"2018", "2019"}


def test_a_chunk_reads_only_its_buckets(yearly_store, reads):
    store, wide = yearly_store
    size = max(sum(bucket_of(t, 4) == b for t in wide.columns) for b in range(4))
    groups = store.ticker_groups(size=size)
    assert len(groups) >= 2 and sorted(t for g in groups for t in g) == list(wide.columns)
    group_of_bucket = {}
    for i, g in enumerate(groups):
        for t in g:
            assert group_of_bucket.setdefault(bucket_of(t, 4), i) == i  # a bucket is never split
    seen_per_group = []
    for g in groups:
        reads.clear()
        assert_wide_equal(store.prices(g), wide[g].dropna(how="all"))
        seen_per_group.append(set(reads))
        buckets = {bucket_of(t, 4) for t in g}
        assert {f["name"] for f in entries(store.path) if f["bucket"] in buckets} == set(reads)
    for i, a in enumerate(seen_per_group):  # every file is read by one group only
        for b in seen_per_group[i + 1:]:
            assert not a & b


def test_a_few_tickers_read_only_their_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(layout, "ROW_GROUP_ROWS", 52)  # one ticker-year per row group
    store = qf.PriceStore(tmp_path / "s", buckets=1)
    tickers = [f"P{i:02d}" for i in range(20)]
    long = make_long(tickers, WEEKS[:104])
    store.ingest(long)
    groups = []
    real = pq.ParquetFile.read_row_groups
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups",
                        lambda self, g, **kw: groups.append(list(g)) or real(self, g, **kw))
    assert_wide_equal(store.prices(["P03", "P11"]), wide_of(long)[["P03", "P11"]])
    assert len(groups) == 1 and len(groups[0]) <= 4  # of 40 row groups: P03's and P11's
    s = store.ingest(long[long["ticker"] == "P07"].assign(close=1.5))  # a revision compares
    assert s.rows_replaced == 104 and len(groups) == 2 and len(groups[1]) <= 3  # P07's only


def test_ticker_groups_sizes_and_errors(tmp_path):
    store = qf.PriceStore(tmp_path / "s", buckets=4)
    tickers = [f"G{i:03d}" for i in range(100)]
    store.ingest(make_long(tickers, WEEKS[:3]))
    groups = store.ticker_groups(size=30)
    assert sorted(t for g in groups for t in g) == tickers
    counts = {b: sum(bucket_of(t, 4) == b for t in tickers) for b in range(4)}
    for g in groups:  # whole buckets, or a slice of one bucket larger than the size
        bs = {bucket_of(t, 4) for t in g}
        assert len(g) <= 30
        assert len(bs) == 1 or all(counts[b] <= 30 for b in bs)
    assert store.ticker_groups(["G002", "G001", "G001"], size=1000) == [["G001", "G002"]]
    assert store.ticker_groups(size=1000) == [tickers]  # one group, sorted
    assert sum(map(len, store.ticker_groups(size=1))) == 100
    with pytest.raises(DataError, match="unknown ticker in store .*: NOPE"):
        store.ticker_groups(["G001", "NOPE"])
    with pytest.raises(DataError, match="size"):
        store.ticker_groups(size=0)


def test_prices_argument_errors(yearly_store):
    store, _ = yearly_store
    with pytest.raises(DataError, match="lookback needs start"):
        store.prices(lookback=5)
    with pytest.raises(DataError, match="lookback must be"):
        store.prices(start="2015-01-01", lookback=-1)
    with pytest.raises(DataError, match="start has no date for R01"):
        store.prices(["R00", "R01"], start={"R00": "2015-01-01"})
    with pytest.raises(DataError, match="start 2016-01-01 for R00 is after end"):
        store.prices(start={"R00": "2016-01-01"}, end="2015-01-01")
    with pytest.raises(DataError, match="bad start for R00 date"):
        store.prices(start={"R00": "2015-13-01"})
    got = store.prices(start={"R00": "2019-01-01", "R01": "2019-06-01"})  # tickers = the keys
    assert list(got.columns) == ["R00", "R01"]
    assert got["R01"].dropna().index.min() >= pd.Timestamp("2019-06-01")


def test_metadata_generation_store_id_ticker_info(tmp_path):
    a, b = qf.PriceStore(tmp_path / "a"), qf.PriceStore(tmp_path / "b")
    with pytest.raises(DataError, match="no store at"):
        _ = a.store_id
    for op in ("compact", "migrate", "verify"):  # maintenance never creates a store
        with pytest.raises(DataError, match="no store at"):
            getattr(a, op)()
    assert not a.path.exists()
    a.ingest(make_long(["X", "Y"], WEEKS[:10]))
    b.ingest(make_long(["X", "Y"], WEEKS[:10]))
    sid = a.store_id
    assert len(sid) == 32 and sid != b.store_id
    assert a.generation == 1
    a.ingest(make_long(["X"], WEEKS[:10]))  # same keys, other values: a change
    a.ingest(make_long(["X"], WEEKS[:10]))  # identical: no change, no generation
    assert a.generation == 2 and a.store_id == sid
    a.compact()
    assert a.generation == 2 and a.store_id == sid
    info = a.ticker_info(["Y", "X"])
    assert list(info.index) == ["X", "Y"] and list(info["generation"]) == [2, 1]
    assert list(info["rows"]) == [10, 10] and info["first"].iloc[0] == WEEKS[0]
    assert str(info["first"].dtype) == "datetime64[us]"
