"""PriceStore: round trip, upsert semantics, validation before writing, atomic commits under
SIGKILL, serialized concurrent writers, consistent reads during writes.

Layout, change tracking, damage and migration: test_store_layout.py, test_store_changes.py,
test_store_damage.py."""

from __future__ import annotations

import fcntl
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import quantfit as qf
from quantfit.data.store import MANIFEST, IngestSummary
from quantfit.errors import DataError
from storekit import assert_wide_equal, data_files, live_files, make_long, snapshot, wide_of

DATES = pd.bdate_range("2020-01-01", periods=30)


@pytest.fixture
def store(tmp_path):
    return qf.PriceStore(tmp_path / "store")


# ----------------------------------------------------------------------------- basics
def test_sample_round_trip(store, sample_prices):
    s = store.ingest(qf.sources.sample())
    assert isinstance(s, IngestSummary)
    assert (s.rows_added, s.rows_replaced, s.rows_unchanged) == (int(sample_prices.notna().sum().sum()), 0, 0)
    assert s.start == pd.Timestamp("1990-01-02") and len(s.new_tickers) == 20
    got = store.prices()
    expected = sample_prices.dropna(how="all")[sorted(sample_prices.columns)]
    pd.testing.assert_frame_equal(got, expected, check_names=False, check_column_type=False)
    assert got.index.name == "date" and got.index.is_monotonic_increasing
    assert (got.dtypes == "float64").all()
    assert store.tickers() == sorted(sample_prices.columns)
    assert "143,680 rows added, 0 replaced, 0 unchanged" in str(s)


def test_reingest_same_data_writes_nothing(store):
    long = make_long(["A", "B", "C"], DATES)
    store.ingest(long)
    before = snapshot(store.path)
    time.sleep(0.01)
    s = store.ingest(long.sample(frac=1.0, random_state=1))  # order does not matter
    assert (s.rows_added, s.rows_replaced, s.rows_unchanged, s.files_written) == (0, 0, 90, 0)
    assert not s.changed
    assert snapshot(store.path) == before


def test_upsert_replaces_appends_and_writes_only_the_touched_bucket(store):
    tickers = [f"T{i:03d}" for i in range(40)]
    base = make_long(tickers, DATES)
    store.ingest(base)
    files_before = snapshot(store.path / "data")
    change = base[(base["ticker"] == "T007") & (base["date"] == DATES[3])].assign(close=123.25)
    s = store.ingest(change)
    assert (s.rows_added, s.rows_replaced, s.rows_unchanged, s.files_written) == (0, 1, 0, 1)
    files_after = snapshot(store.path / "data")
    assert all(files_after[n] == b for n, b in files_before.items())  # nothing rewritten or removed
    new = sorted(set(files_after) - set(files_before))  # one delta of T007's bucket + the change log
    bucket = qf.data.store.bucket_of("T007", 64)
    assert [n[:4] for n in new] == ["c-g2", f"d{bucket:03d}"]
    assert store.prices(["T007"]).loc[DATES[3], "T007"] == 123.25

    more_dates = pd.bdate_range(DATES[-1] + pd.offsets.BDay(), periods=5)
    new = pd.concat([make_long(["T007"], more_dates, seed=2), make_long(["NEW"], DATES, seed=3)])
    s = store.ingest(new)
    assert (s.rows_added, s.rows_replaced) == (5 + 30, 0) and s.new_tickers == ("NEW",)
    expected_long = pd.concat([base, new])
    expected_long.loc[(expected_long["ticker"] == "T007") & (expected_long["date"] == DATES[3]), "close"] = 123.25
    assert_wide_equal(store.prices(), wide_of(expected_long))
    assert_wide_equal(store.prices(field="volume"), wide_of(expected_long, "volume"))


def test_input_without_volume_keeps_stored_volume(store):
    long = make_long(["A"], DATES)
    store.ingest(long)
    s = store.ingest(long[["date", "ticker", "close"]].assign(close=long["close"] * 2))
    assert s.rows_replaced == 30
    np.testing.assert_array_equal(store.prices(field="volume")["A"], long["volume"])
    np.testing.assert_allclose(store.prices()["A"], long["close"] * 2)
    # and without volume and without change: unchanged
    assert store.ingest(long[["date", "ticker", "close"]].assign(close=long["close"] * 2)).rows_unchanged == 30


def test_prices_selection(store):
    long = make_long(["AAA", "BBB", "CCC"], DATES)
    store.ingest(long)
    w = store.prices(["CCC", "AAA"], start=DATES[5], end=str(DATES[9].date()))
    assert list(w.columns) == ["AAA", "CCC"]
    assert list(w.index) == list(DATES[5:10])  # both bounds inclusive
    assert_wide_equal(w, wide_of(long).loc[DATES[5]:DATES[9], ["AAA", "CCC"]])
    assert list(store.prices("BBB").columns) == ["BBB"]
    with pytest.raises(DataError, match="unknown tickers in store .*: MSFT, ZZZ"):
        store.prices(["AAA", "ZZZ", "MSFT"])
    with pytest.raises(DataError, match="field"):
        store.prices(field="open")
    with pytest.raises(DataError, match="bad start date"):
        store.prices(start="2020-13-01")
    with pytest.raises(DataError, match="is after end"):
        store.prices(start="2021-01-01", end="2020-01-01")
    empty_range = store.prices(["AAA"], start="2030-01-01")
    assert empty_range.shape == (0, 1)


def test_missing_and_empty_store(tmp_path):
    assert qf.PriceStore(tmp_path / "none").tickers() == []
    with pytest.raises(DataError, match="no store at"):
        qf.PriceStore(tmp_path / "none").prices()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        qf.PriceStore(tmp_path / "empty").prices()
    assert not (tmp_path / "none").exists()  # reading never creates


# ----------------------------------------------------------------------------- validation
def _bad_inputs():
    good = make_long(["GOOD", "BADT"], DATES[:5])
    def at(frame, col, value, row=6):
        frame = frame.copy()
        frame[col] = frame[col].astype(object)
        frame.loc[row, col] = value
        return frame
    return [
        (at(good, "close", -1.0), r"positive finite number: ticker BADT on 2020-01-02 \(row 6\)"),
        (at(good, "close", 0.0), r"ticker BADT"),
        (at(good, "close", np.nan), r"ticker BADT"),
        (at(good, "close", np.inf), r"ticker BADT.* inf"),
        (at(good, "close", "12,5"), r"ticker BADT"),
        (at(good, "date", "2020-02-30"), r"invalid date '2020-02-30' for ticker BADT \(row 6\): no such day"),
        (at(good, "date", None), r"missing date for ticker BADT \(row 6\)"),
        (at(good, "ticker", None), r"missing ticker in row 6"),
        (at(good, "volume", -3.0), r"volume must be a non-negative number: ticker BADT"),
        (pd.concat([good, good.iloc[[7]]], ignore_index=True), r"duplicate \(date, ticker\): ticker BADT on 2020-01-03"),
        (good.iloc[:0], r"empty input"),
        (good.drop(columns="close"), r"missing column\(s\) close"),
        (good.drop(columns=["date", "ticker"]), r"missing column\(s\) date, ticker"),
        ([1, 2, 3], r"expected a DataFrame"),
    ]


@pytest.mark.parametrize("frame, match", _bad_inputs())
def test_bad_input_raises_and_leaves_store_untouched(store, frame, match):
    store.ingest(make_long(["GOOD", "OTHER"], DATES))
    before = snapshot(store.path)
    with pytest.raises(DataError, match=match):
        store.ingest(frame)
    assert snapshot(store.path) == before


def test_bad_input_on_fresh_store_creates_nothing(tmp_path):
    s = qf.PriceStore(tmp_path / "fresh")
    with pytest.raises(DataError):
        s.ingest(make_long(["A"], DATES).assign(close=-1.0))
    assert not (tmp_path / "fresh").exists()


# ----------------------------------------------------------------------------- crash safety
def test_orphans_ignored_by_readers_and_removed_by_next_writer(store):
    long = make_long(["A", "B"], DATES)
    store.ingest(long)
    (store.path / "data" / "b000-g9-deadbeef.parquet").write_bytes(b"PAR1 half a file")
    (store.path / f"{MANIFEST}.tmp-abc").write_text("{garbage")
    assert_wide_equal(store.prices(), wide_of(long))
    store.ingest(make_long(["C"], DATES))
    assert data_files(store.path) == live_files(store.path)
    assert not list(store.path.glob(f"{MANIFEST}.tmp-*"))


CHILD = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(Path(__file__).parent)!r})
    from crashpoints import arm
    mode, store_dir, csv_path = sys.argv[1], sys.argv[2], sys.argv[3]
    import quantfit as qf

    kind = arm(mode)
    frame = qf.sources.csv(csv_path)
    print("ready", flush=True)
    if kind == "timed":
        sys.stdin.readline()
    qf.PriceStore(store_dir).ingest(frame)
    print("finished", flush=True)
""")


@pytest.fixture(scope="module")
def crash_case(tmp_path_factory):
    """An old store (300 tickers x 400 days) and a large CSV (300 changed + 300 new tickers)."""
    root = tmp_path_factory.mktemp("crash")
    dates = pd.bdate_range("2000-01-03", periods=400)
    old_t = [f"OLD{i:03d}" for i in range(300)]
    new_t = [f"NEW{i:03d}" for i in range(300)]
    old = make_long(old_t, dates, seed=1)
    qf.PriceStore(root / "base").ingest(old)
    new = pd.concat([make_long(old_t, dates, seed=2), make_long(new_t, dates, seed=3)], ignore_index=True)
    csv_path = root / "new.csv"
    new.assign(date=new["date"].dt.strftime("%Y-%m-%d")).to_csv(csv_path, index=False, float_format="%.17g")
    upserted = pd.concat([new, old[~old["ticker"].isin(old_t)]])  # every old key replaced
    return root, wide_of(old), wide_of(upserted), csv_path


def _check_recovered(store_dir: Path, old_wide, new_wide) -> str:
    """Reopen a store after a kill: exactly old or exactly new content; then it heals."""
    store = qf.PriceStore(store_dir)
    got = store.prices()
    state = "new" if got.shape == new_wide.shape else "old"
    assert_wide_equal(got, new_wide if state == "new" else old_wide)
    # the next writer cleans up whatever the killed one left behind
    s = store.ingest(make_long(["ZZZ"], pd.bdate_range("2000-01-03", periods=3)))
    assert s.rows_added == 3
    assert data_files(store_dir) == live_files(store_dir)
    assert store.verify().ok
    assert_wide_equal(store.prices().drop(columns="ZZZ").dropna(how="all"),
                      new_wide if state == "new" else old_wide)
    return state


def test_sigkill_mid_ingest_leaves_old_or_all_new(crash_case):
    root, old_wide, new_wide, csv_path = crash_case
    # Deterministic kill points, and the state each must leave.
    points = {"write:1": "old", "write:17": "old", "before_commit": "old",
              "after_commit": "new", "unlink:3": "new"}
    procs = {}
    for mode in points:
        d = root / f"s-{mode.replace(':', '-')}"
        shutil.copytree(root / "base", d)
        procs[mode] = (d, subprocess.Popen([sys.executable, "-c", CHILD, mode, str(d), str(csv_path)],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for mode, (d, p) in procs.items():
        out, err = p.communicate(timeout=120)
        assert p.returncode == -signal.SIGKILL, (mode, p.returncode, err[-2000:])
        assert "finished" not in out
        # the kill happened mid-ingest: leftovers on disk for the write/commit cases
        assert _check_recovered(d, old_wide, new_wide) == points[mode], mode


def test_sigkill_at_random_moments(crash_case):
    """Kill real ingests (no hooks) at several delays after they start: never a mix."""
    root, old_wide, new_wide, csv_path = crash_case
    delays = [0.0, 0.15, 0.4, 0.8]
    procs = []
    for i in range(len(delays)):  # start all children first: their imports overlap
        d = root / f"t-{i}"
        shutil.copytree(root / "base", d)
        procs.append((d, subprocess.Popen([sys.executable, "-c", CHILD, "timed", str(d), str(csv_path)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)))
    for d, p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    t0 = time.monotonic()
    for d, p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for delay, (d, p) in zip(delays, procs):
        time.sleep(max(0.0, t0 + delay - time.monotonic()))
        p.kill()
    states = []
    for d, p in procs:
        p.communicate(timeout=60)
        states.append(_check_recovered(d, old_wide, new_wide))
    assert states[0] == "old"  # killed right at the start: nothing can have been committed
    print("states after timed kills:", states)


# ----------------------------------------------------------------------------- concurrency
WRITER = textwrap.dedent("""
    import sys, time, os
    from pathlib import Path
    import numpy as np, pandas as pd
    import quantfit as qf
    store_dir, prefix, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    dates = pd.bdate_range("2010-01-01", periods=200)
    frames = []
    for i in range(6):
        t = f"{prefix}{i}"
        frames.append(pd.DataFrame({"date": dates, "ticker": t,
                                    "close": np.arange(1, 201, dtype=float) + ord(prefix[0]) + i}))
    while not go.exists():
        time.sleep(0.005)
    for f in frames:
        qf.PriceStore(store_dir).ingest(f)
    print("ok")
""")


def test_two_processes_ingesting_concurrently_both_land(tmp_path):
    d, go = tmp_path / "store", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(d), prefix, str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for prefix in ("P", "Q")]
    time.sleep(0.2)
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
    store = qf.PriceStore(d)
    assert store.tickers() == [f"P{i}" for i in range(6)] + [f"Q{i}" for i in range(6)]
    w = store.prices()
    assert w.shape == (200, 12) and not w.isna().any().any()
    assert w["Q5"].iloc[0] == 1 + ord("Q") + 5


def test_writer_waits_for_the_lock(store):
    store.ingest(make_long(["A"], DATES))
    done = threading.Event()
    with open(store.path / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        t = threading.Thread(target=lambda: (store.ingest(make_long(["B"], DATES)), done.set()))
        t.start()
        time.sleep(0.3)
        assert not done.is_set()  # blocked by our lock
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    t.join(10)
    assert done.is_set() and store.tickers() == ["A", "B"]


def test_threads_ingesting_concurrently(store):
    frames = [make_long([f"X{i}", f"Y{i}"], DATES, seed=i) for i in range(6)]
    threads = [threading.Thread(target=store.ingest, args=(f,)) for f in frames]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert_wide_equal(store.prices(), wide_of(pd.concat(frames)))


def test_reads_during_writes_see_one_snapshot(store):
    tickers = [f"S{i:03d}" for i in range(80)]
    base = make_long(tickers, DATES)
    store.ingest(base.assign(close=1.0))
    stop, seen, errors = threading.Event(), set(), []

    def reader():
        while not stop.is_set():
            try:
                vals = np.unique(store.prices().to_numpy())
                seen.add(tuple(vals))
                time.sleep(0.03)  # let the writer have the GIL now and then
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    t = threading.Thread(target=reader)
    t.start()
    for k in range(2, 6):
        store.ingest(base.assign(close=float(k)))  # every bucket rewritten each time
    stop.set()
    t.join(30)
    assert not errors
    assert seen and all(len(v) == 1 for v in seen)  # never a mix of two commits


def test_reads_during_appends_and_compactions_see_one_snapshot(tmp_path):
    """Deltas, folds and compactions replace files under readers: every read is one commit."""
    store = qf.PriceStore(tmp_path / "store", buckets=4)
    tickers = [f"S{i:03d}" for i in range(40)]
    store.ingest(make_long(tickers, DATES[:20]).assign(close=1.0))
    stop, seen, errors = threading.Event(), [], []

    def reader():
        while not stop.is_set():
            try:
                w = store.prices(start=DATES[15], lookback=3)
                seen.append((len(w), tuple(np.unique(w.to_numpy()[-1]))))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    t = threading.Thread(target=reader)
    t.start()
    for k in range(20, 30):  # day k: every ticker gets close k on day k, and every past close k
        store.ingest(make_long(tickers, DATES[:k + 1]).assign(close=float(k)))
        if k % 3 == 0:
            store.compact(full=k % 2 == 0)
        time.sleep(0.02)
    stop.set()
    t.join(30)
    assert not errors
    # a read sees one commit: the first (closes 1, days 0-19) or the k-th (closes k, days 0-k);
    # with 3 rows of look-back before day 15 that is 3 + 5 or 3 + k - 14 rows
    assert seen and all(len(vals) == 1 and n == (8 if vals[0] == 1.0 else int(vals[0]) - 11)
                        for n, vals in seen)
    assert len({vals for _, vals in seen}) > 2  # the reader really ran across several commits
