"""PriceStore damage and upgrades: a damaged manifest or data file is reported (DataError, exit
2, one line naming the file) and never made worse; ``store verify`` finds a flipped byte; v1
stores open, read and migrate; SIGKILL at each commit point of appends, change-log merges,
compaction, migration and store creation leaves the old state or all of the new one."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from storekit import Model, assert_wide_equal, data_files, live_files, make_long, manifest, snapshot

from quantfit.cli import main
from quantfit.data.store import ChangesUnavailable, PriceStore
from quantfit.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures"
DAYS = pd.bdate_range("2019-01-02", periods=300)


def cli(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def store(tmp_path):
    s = PriceStore(tmp_path / "s", buckets=4)
    s.ingest(make_long([f"T{i}" for i in range(8)], DAYS))
    s.ingest(make_long([f"T{i}" for i in range(8)], DAYS[-1:] + pd.offsets.BDay(), seed=1))  # deltas
    return s


def largest(store_dir: Path, prefix: str) -> Path:
    files = [p for p in (store_dir / "data").iterdir() if p.name.startswith(prefix)]
    return max(files, key=lambda p: p.stat().st_size)


# ----------------------------------------------------------------------------- damaged manifest
def _drop(path):
    def damage(m):
        node = m
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return damage


def _set(path, value):
    def damage(m):
        node = m
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return damage


DAMAGES = {
    "no files key": (_drop(["files"]), "missing key 'files'"),
    "no tickers key": (_drop(["tickers"]), "missing key 'tickers'"),
    "file without sha256": (_drop(["files", 0, "sha256"]), "missing key 'sha256' in files\\[0\\]"),
    "file name with a path": (_set(["files", 0, "name"], "../../etc.parquet"), "bad file name"),
    "rows as text": (_set(["files", 1, "rows"], "12"), "'rows' in files\\[1\\] should be int"),
    "bad date": (_set(["files", 0, "end"], "2019-02-30"), "'end' in files\\[0\\] is not a date"),
    "bucket out of range": (_set(["files", 0, "bucket"], 99), "out of range"),
    "short ticker column": (lambda m: m["tickers"]["rows"].pop(), "tickers columns differ"),
    "generation from the future": (_set(["tickers", "gen", 0], 99), "ticker's dates, row count or generation"),
    "unknown version": (_set(["version"], 9), "unsupported store version 9"),
}


@pytest.mark.parametrize("name", list(DAMAGES))
def test_damaged_manifest_is_reported_and_nothing_is_touched(store, name, tmp_path, capsys):
    damage, match = DAMAGES[name]
    m = manifest(store.path)
    damage(m)
    (store.path / "manifest.json").write_text(json.dumps(m))
    before = snapshot(store.path)
    with pytest.raises(DataError, match=match):
        store.ingest(make_long(["T0", "NEW"], DAYS[:3] + pd.DateOffset(years=5)))
    with pytest.raises(DataError, match=match):
        store.prices()
    for op in ("compact", "migrate"):
        with pytest.raises(DataError, match=match):
            getattr(store, op)()
    assert snapshot(store.path) == before  # nothing deleted, nothing written
    csv = tmp_path / "in.csv"
    make_long(["T0"], DAYS[:2]).to_csv(csv, index=False)
    rc, out, err = cli(["ingest", "csv", str(csv), "--store", str(store.path)], capsys)
    assert rc == 2 and out == "" and err.count("\n") == 1 and "manifest.json" in err
    assert err.startswith("quantfit: error: ") and "Traceback" not in err
    rc, out, err = cli(["store", "verify", "--store", str(store.path)], capsys)
    assert rc == 1 and ("manifest.json is damaged" in out or "unsupported" in out)
    assert snapshot(store.path) == before


def test_manifest_that_is_not_json(store, capsys):
    (store.path / "manifest.json").write_text('{"format": "quantfit-pricestore", "vers')
    before = snapshot(store.path)
    with pytest.raises(DataError, match="manifest.json is damaged: not JSON"):
        store.ingest(make_long(["T0"], DAYS[:2]))
    rc, _, err = cli(["prices", "--store", str(store.path)], capsys)
    assert rc == 2 and err.count("\n") == 1 and "not JSON" in err
    assert snapshot(store.path) == before


def test_missing_manifest_with_data_files_is_not_a_new_store(store):
    (store.path / "manifest.json").unlink()
    before = snapshot(store.path)
    with pytest.raises(DataError, match="data file\\(s\\) but no manifest.json"):
        store.ingest(make_long(["T0"], DAYS[:2]))
    assert snapshot(store.path) == before
    assert not store.verify().ok


# ----------------------------------------------------------------------------- damaged data files
@pytest.mark.parametrize("how", ["truncated", "missing", "flipped"])
def test_damaged_data_file(store, how, capsys, monkeypatch):
    victim = largest(store.path, "s")
    raw = victim.read_bytes()
    if how == "truncated":
        victim.write_bytes(raw[: len(raw) // 2])
        match = f"{victim.name} is truncated"
    elif how == "missing":
        victim.unlink()
        match = f"{victim.name} is missing"
    else:  # one bit flipped inside the data pages: same size, the page CRC catches it
        b = bytearray(raw)
        b[len(b) // 3] ^= 0x04
        victim.write_bytes(bytes(b))
        match = f"{victim.name} is damaged"
    before = snapshot(store.path)
    loads = []
    real = PriceStore._manifest
    monkeypatch.setattr(PriceStore, "_manifest", lambda self: loads.append(1) or real(self))
    with pytest.raises(DataError, match=match):
        store.prices()
    assert len(loads) <= 2  # no retry loop for a file that is gone or broken
    monkeypatch.undo()
    rc, out, err = cli(["prices", "--store", str(store.path)], capsys)
    assert rc == 2 and out == "" and err.count("\n") == 1 and victim.name in err
    if how != "flipped":  # writers check every file's size before writing anything
        with pytest.raises(DataError, match=match + ".*nothing was changed"):
            store.ingest(make_long(["NEW"], DAYS[:3]))
        rc, _, err = cli(["store", "compact", "--store", str(store.path)], capsys)
        assert rc == 2 and err.count("\n") == 1 and victim.name in err
    assert snapshot(store.path) == before
    rc, out, _ = cli(["store", "verify", "--store", str(store.path), "--quiet"], capsys)
    expected = {"truncated": "truncated", "missing": "missing", "flipped": "checksum mismatch"}[how]
    assert rc == 1 and f"{victim}: {expected}" in out and "1 problem" in out


def test_verify_finds_a_flipped_byte_anywhere(store, capsys):
    assert store.verify().ok
    rc, out, _ = cli(["store", "verify", "--store", str(store.path)], capsys)
    assert rc == 0 and "no damage found" in out
    m = manifest(store.path)
    names = [f["name"] for f in m["files"]] + [c["name"] for c in m["changes"]]
    for name in names[:: max(1, len(names) // 5)]:
        path = store.path / "data" / name
        raw = path.read_bytes()
        for pos in (0, len(raw) // 2, len(raw) - 1):  # header magic, a page, the footer magic
            b = bytearray(raw)
            b[pos] ^= 0x01
            path.write_bytes(bytes(b))
            report = store.verify()
            assert not report.ok and report.problems == [f"{path}: checksum mismatch (content changed since it was written)"]
        path.write_bytes(raw)
    assert store.verify().ok


def test_leftovers_are_a_note_not_damage(store):
    (store.path / "data" / "d000-g9-0123456789ab.parquet").write_bytes(b"PAR1 half")
    report = store.verify()
    assert report.ok and "leftover" in report.notes[0]


# ----------------------------------------------------------------------------- v1 stores
@pytest.fixture
def v1(tmp_path):
    """A copy of the v1 store written by the v1 code, and its content as CSV."""
    d = tmp_path / "v1"
    shutil.copytree(FIXTURES / "store_v1", d)
    def read(f):
        return pd.read_csv(FIXTURES / f"store_v1_{f}.csv", index_col="date", parse_dates=["date"])

    wide = {f: read(f) for f in ("close", "volume")}
    for w in wide.values():
        w.index = w.index.astype("datetime64[us]")
        w.columns = pd.Index(list(w.columns), dtype=object)
    return d, wide


def test_v1_store_opens_and_reads_without_writing(v1):
    d, wide = v1
    before = snapshot(d)
    store = PriceStore(d)
    assert_wide_equal(store.prices(), wide["close"])
    assert_wide_equal(store.prices(field="volume"), wide["volume"])
    assert_wide_equal(store.prices(["BBB", "DDD"], start="2020-01-06", end="2020-01-20"),
                      wide["close"].loc["2020-01-06":"2020-01-20", ["BBB", "DDD"]].dropna(how="all"))
    assert_wide_equal(store.prices(["AAA"], start="2020-01-20", lookback=2),
                      wide["close"][["AAA"]].dropna().loc["2020-01-16":])
    assert store.tickers() == ["AAA", "BBB", "CCC", "DDD"] and store.generation == 3
    info = store.ticker_info()
    w = wide["close"]
    assert list(info["rows"]) == w.notna().sum().tolist()
    assert list(info["first"]) == [w[t].first_valid_index() for t in w]
    assert store.store_id == PriceStore(d).store_id and len(store.store_id) == 32
    assert store.changes_since(3) == {}
    with pytest.raises(ChangesUnavailable, match="v1"):
        store.changes_since(2)
    assert store.ticker_groups(size=2) == [["DDD"], ["AAA", "BBB"], ["CCC"]]  # buckets 6, 7 (of 8)
    report = store.verify()
    assert report.ok and report.files == 2 and "v1" in report.notes[-1]
    assert snapshot(d) == before


def test_v1_migration_keeps_data_id_and_generation(v1, capsys):
    d, wide = v1
    store = PriceStore(d)
    sid = store.store_id
    rc, out, _ = cli(["store", "migrate", "--store", str(d)], capsys)
    assert rc == 0 and "migrated to format v2: 2 buckets, 92 rows rewritten" in out
    m = manifest(d)
    assert (m["version"], m["generation"], m["horizon"], m["store_id"]) == (2, 3, 3, sid)
    assert data_files(d) == live_files(d) and not any(n.startswith("b0") for n in data_files(d))
    assert_wide_equal(store.prices(), wide["close"])
    assert_wide_equal(store.prices(field="volume"), wide["volume"])
    assert store.verify().ok and store.changes_since(3) == {}
    with pytest.raises(ChangesUnavailable, match="migrated from the v1"):
        store.changes_since(1)
    rc, out, _ = cli(["store", "migrate", "--store", str(d)], capsys)
    assert rc == 0 and "nothing to migrate" in out
    store.ingest(make_long(["BBB"], pd.bdate_range("2020-02-03", periods=2)))
    assert store.changes_since(3) == {"BBB": pd.Timestamp("2020-02-03")}


def test_v1_store_migrates_on_first_ingest(v1):
    d, wide = v1
    store = PriceStore(d)
    frame = make_long(["AAA", "EEE"], pd.bdate_range("2020-01-28", periods=5), seed=4)
    s = store.ingest(frame)
    assert (s.rows_added, s.rows_replaced, s.generation) == (5 + 2, 3, 4)
    assert manifest(d)["version"] == 2 and store.changes_since(3) == {"AAA": pd.Timestamp("2020-01-28"),
                                                                       "EEE": pd.Timestamp("2020-01-28")}
    close = wide["close"].stack().rename_axis(["date", "ticker"])
    volume = wide["volume"].stack(future_stack=True).rename_axis(["date", "ticker"]).reindex(close.index)
    model = Model()
    model.ingest(pd.DataFrame({"close": close, "volume": volume}).reset_index())
    model.ingest(frame)
    assert_wide_equal(store.prices(), model.wide())
    assert_wide_equal(store.prices(field="volume"), model.wide("volume"))


# ----------------------------------------------------------------------------- crashes
CHILD = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(Path(__file__).parent)!r})
    from crashpoints import arm
    mode, op, store_dir, arg = sys.argv[1:5]
    import pandas as pd
    import quantfit as qf
    from quantfit.data.store import changes
    changes.KEEP_EXACT = 1   # every ingest here also merges the change log
    frame = pd.read_parquet(arg) if arg != "-" else None
    kind = arm(mode)
    print("ready", flush=True)
    store = qf.PriceStore(store_dir, buckets=4)
    {{"ingest": lambda: store.ingest(frame), "compact": store.compact, "migrate": store.migrate}}[op]()
    print("finished", flush=True)
""")


def _state(d: Path):
    """What a reader sees: None (no store), or the close and volume frames."""
    s = PriceStore(d)
    if not s.tickers():
        return None
    return s.prices(), s.prices(field="volume")


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    try:
        for x, y in zip(a, b):
            assert_wide_equal(x, y)
        return True
    except AssertionError:
        return False


@pytest.fixture(scope="module")
def crash_cases(tmp_path_factory):
    """Per operation: the store before, the input, and the reference state after."""
    root = tmp_path_factory.mktemp("crash")
    tickers = [f"K{i:02d}" for i in range(24)]
    base = root / "base"
    s = PriceStore(base, buckets=4)
    s.ingest(make_long(tickers, DAYS[:200]))
    for k in range(200, 203):  # deltas for compaction to fold, and change-log files to merge
        s.ingest(make_long(tickers, DAYS[k:k + 1], seed=k))
    append = root / "append.parquet"
    make_long(tickers, DAYS[203:205], seed=7).to_parquet(append)
    fresh = root / "fresh.parquet"
    make_long(tickers[:6], DAYS[:50], seed=8).to_parquet(fresh)
    shutil.copytree(FIXTURES / "store_v1", root / "v1")
    cases = {"ingest": (base, str(append)), "compact": (base, "-"), "migrate": (root / "v1", "-"),
             "create": (None, str(fresh))}
    refs = {}
    for op, (src, arg) in cases.items():
        d = root / f"ref-{op}"
        if src is not None:
            shutil.copytree(src, d)
        before = _state(d) if src is not None else None
        store = PriceStore(d, buckets=4)
        if op in ("ingest", "create"):
            store.ingest(pd.read_parquet(arg))
        else:
            getattr(store, op)()
        refs[op] = (before, _state(d))
    return root, cases, refs


POINTS = {
    # op: {crash point: state it must leave}
    "ingest": {"file:1": "old", "file:5": "old", "write:2": "old", "before_commit": "old",
               "after_commit": "new", "unlink:1": "new"},
    "compact": {"file:1": "old", "file:3": "old", "before_commit": "old", "after_commit": "new",
                "unlink:2": "new"},
    "migrate": {"file:1": "old", "file:2": "old", "before_commit": "old", "after_commit": "new",
                "unlink:1": "new"},
    # a new store commits an empty manifest before writing data: killed before it, nothing
    "create": {"before_commit": "old", "after_commit": "old", "file:1": "old", "file:3": "old"},
}


def test_sigkill_at_every_commit_point(crash_cases):
    root, cases, refs = crash_cases
    procs = {}
    for op, points in POINTS.items():
        src, arg = cases[op]
        for mode in points:
            d = root / f"{op}-{mode.replace(':', '-')}"
            if src is not None:
                shutil.copytree(src, d)
            procs[op, mode] = (d, subprocess.Popen(
                [sys.executable, "-c", CHILD, mode, "ingest" if op == "create" else op, str(d), arg],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for (op, mode), (d, p) in procs.items():
        out, err = p.communicate(timeout=180)
        assert p.returncode == -signal.SIGKILL, (op, mode, p.returncode, err[-2000:])
        assert "finished" not in out
        old, new = refs[op]
        want = old if POINTS[op][mode] == "old" else new
        assert _same(_state(d), want), (op, mode)
        if d.exists() and (d / "manifest.json").exists():
            assert PriceStore(d).verify().ok, (op, mode)
        # the next writer heals: leftovers removed, and it lands on top of what was there
        s = PriceStore(d, buckets=4)
        s.ingest(make_long(["ZZZ"], DAYS[:3]))
        assert data_files(d) == live_files(d), (op, mode)
        after = s.prices()
        assert list(after["ZZZ"].dropna()) and _same(
            None if want is None else (after.drop(columns="ZZZ").dropna(how="all"),
                                       s.prices(field="volume").drop(columns="ZZZ").dropna(how="all")),
            want), (op, mode)
