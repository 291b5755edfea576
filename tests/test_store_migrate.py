"""``store migrate`` renames tickers stored before the ticker rule (``aapl`` -> ``AAPL``).

Stores with such names are built the way older quantfit wrote them: a v1 store written here
by hand in the v1 layout (one parquet file per ``crc32(ticker) % buckets``, a v1 manifest),
and a v2 store ingested with the ticker rule switched off (as in test_wild_data). After a
migration every row is under the upper-case name with its values unchanged, every file holds
only tickers of its own bucket, the renames are changes, and collisions or invalid names are
refused with the store byte-identical. SIGKILL during a renaming migration leaves the old or
the new store.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from storekit import assert_wide_equal, data_files, live_files, make_long, manifest, wide_of

from quantfit.cli import main
from quantfit.data import frames
from quantfit.data.store import ChangesUnavailable, PriceStore
from quantfit.errors import DataError

DAYS = pd.bdate_range("2018-12-03", periods=320)  # two calendar years and a bit


def digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under root: 'untouched' means this is equal."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def cli(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def write_v1(d: Path, frame: pd.DataFrame, buckets: int = 8, generation: int = 3) -> None:
    """A store in the v1 layout (quantfit 0.1): per bucket one file with its whole history,
    a v1 manifest, and the writers' lock file."""
    (d / "data").mkdir(parents=True)
    (d / ".lock").touch()
    files = {}
    frame = frame.sort_values(["ticker", "date"])
    bucket = frame["ticker"].map(lambda t: zlib.crc32(t.encode()) % buckets)
    for b, part in frame.groupby(bucket):
        name = f"b{b:03d}-g{generation}-{b:012x}.parquet"
        pq.write_table(pa.table({
            "date": pa.array(pd.DatetimeIndex(part["date"]).date, pa.date32()),
            "ticker": pa.array(part["ticker"].tolist(), pa.string()).dictionary_encode(),
            "close": pa.array(part["close"].to_numpy(), pa.float64()),
            "volume": pa.array(part["volume"].to_numpy(), pa.float64())}), d / "data" / name)
        files[str(b)] = {"file": name, "rows": len(part), "tickers": sorted(set(part["ticker"])),
                         "start": str(part["date"].min().date()), "end": str(part["date"].max().date())}
    (d / "manifest.json").write_text(json.dumps({"format": "quantfit-pricestore", "version": 1,
                                                 "buckets": buckets, "generation": generation,
                                                 "files": files}))


def ingest_legacy(store: PriceStore, frame: pd.DataFrame, monkeypatch) -> None:
    """Ingest as a quantfit before the ticker rule did: names kept as given."""
    with monkeypatch.context() as m:
        m.setattr(frames, "normalize_ticker", lambda name, where="": str(name).strip())
        store.ingest(frame)


def upper(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(ticker=frame["ticker"].str.upper())


def check_buckets(d: Path) -> None:
    """Every live data file holds only tickers of its own bucket; the ticker table's row counts
    and dates are those of the files."""
    m = manifest(d)
    for f in m["files"]:
        names = set(pq.read_table(d / "data" / f["name"], columns=["ticker"]).column("ticker").to_pylist())
        assert {zlib.crc32(t.encode()) % m["buckets"] for t in names} == {f["bucket"]}, f


def expect_store(store: PriceStore, long: pd.DataFrame) -> None:
    assert_wide_equal(store.prices(), wide_of(long))
    assert_wide_equal(store.prices(field="volume"), wide_of(long, "volume"))
    info = store.ticker_info()
    g = long.groupby("ticker")["date"]
    assert info["rows"].to_dict() == g.size().to_dict()
    assert info["first"].to_dict() == g.min().to_dict() and info["last"].to_dict() == g.max().to_dict()
    assert store.verify().ok and data_files(store.path) == live_files(store.path)
    check_buckets(store.path)


# ----------------------------------------------------------------------------- v1
def test_v1_store_with_lower_case_tickers_migrates(tmp_path, capsys):
    d = tmp_path / "v1"
    long = make_long(["aaa", "bbb", "Ccc", "DDD", "eee"], DAYS)
    long.loc[long.index[::7], "volume"] = np.nan
    write_v1(d, long)
    store = PriceStore(d)
    assert store.tickers() == ["Ccc", "DDD", "aaa", "bbb", "eee"]
    rc, out, _ = cli(["store", "migrate", "--store", str(d)], capsys)
    assert rc == 0 and out.count("\n") == 1
    assert out.rstrip().endswith("; renamed 4 tickers: Ccc -> CCC, aaa -> AAA, bbb -> BBB, eee -> EEE")
    assert "migrated to format v2: " in out
    expect_store(store, upper(long))
    assert store.tickers() == ["AAA", "BBB", "CCC", "DDD", "EEE"]
    m = manifest(d)
    assert (m["version"], m["generation"], m["horizon"]) == (2, 4, 3)  # the renames: generation 4
    assert store.changes_since(3) == {t: DAYS[0] for t in ("AAA", "BBB", "CCC", "EEE")}
    assert store.ticker_info()["generation"].to_dict() == {"AAA": 4, "BBB": 4, "CCC": 4, "DDD": 3, "EEE": 4}
    with pytest.raises(ChangesUnavailable, match="migrated from the v1"):
        store.changes_since(2)
    got = store.prices(["aaa", "ccc"])  # look-ups by the rule find the renamed tickers
    assert list(got.columns) == ["AAA", "CCC"]
    assert_wide_equal(got, wide_of(upper(long))[["AAA", "CCC"]])
    rc, out, _ = cli(["store", "migrate", "--store", str(d), "--quiet"], capsys)
    assert rc == 0 and "nothing to migrate" in out


def test_first_ingest_of_a_v1_store_renames(tmp_path):
    d = tmp_path / "v1"
    long = make_long(["aaa", "BBB"], DAYS[:40])
    write_v1(d, long, buckets=4, generation=1)
    store = PriceStore(d)
    new = make_long(["AAA"], DAYS[39:42], seed=5)  # one replaced row and two new days of AAA
    s = store.ingest(new)
    assert s.renamed == (("aaa", "AAA"),) and (s.rows_added, s.rows_replaced) == (2, 1)
    assert s.new_tickers == () and "store migrated first, renamed 1 stored ticker: aaa -> AAA" in str(s)
    ref = pd.concat([upper(long), new]).drop_duplicates(["date", "ticker"], keep="last")
    expect_store(store, ref)
    assert store.generation == 3 and store.changes_since(1) == {"AAA": DAYS[0]}
    assert store.changes_since(2) == {"AAA": DAYS[39]}


# ----------------------------------------------------------------------------- v2
@pytest.fixture
def legacy(tmp_path, monkeypatch):
    """A v2 store written before the ticker rule: lower-case names, segments and deltas (a
    revision of aapl's past and an appended day), and names the rule leaves as they are."""
    def make(buckets=4):
        store = PriceStore(tmp_path / f"legacy{buckets}", buckets=buckets)
        names = ["aapl", "msft", "SPY", "brk.b", "T00", "T01", "T02", "T03"]
        base = make_long(names, DAYS[:300])
        revised = make_long(["aapl"], DAYS[100:110], seed=1)
        appended = make_long(names, DAYS[300:301], seed=2)
        for f in (base, revised, appended):
            ingest_legacy(store, f, monkeypatch)
        long = pd.concat([base, revised, appended]).drop_duplicates(["date", "ticker"], keep="last")
        return store, long
    return make


@pytest.mark.parametrize("buckets", [4, 64, 1])  # 1: every rename stays in its bucket
def test_v2_store_with_lower_case_tickers_migrates(legacy, buckets, capsys):
    store, long = legacy(buckets)
    assert any(f["kind"] == "delta" for f in manifest(store.path)["files"])
    before = {f["name"]: f for f in manifest(store.path)["files"]}
    gen = store.generation
    rc, out, _ = cli(["store", "migrate", "--store", str(store.path)], capsys)
    assert rc == 0 and out.startswith(f"{store.path}: renamed 3 tickers: aapl -> AAPL, brk.b -> BRK.B, "
                                      f"msft -> MSFT (")
    expect_store(store, upper(long))
    assert store.generation == gen + 1
    assert store.changes_since(gen) == {"AAPL": DAYS[0], "BRK.B": DAYS[0], "MSFT": DAYS[0]}
    assert set(store.changes_since(gen - 1)) == {"AAPL", "BRK.B", "MSFT", "SPY", "T00", "T01", "T02", "T03"}
    # only the buckets the renames leave or enter were rewritten
    involved = {zlib.crc32(t.encode()) % buckets for t in ("aapl", "AAPL", "msft", "MSFT", "brk.b", "BRK.B")}
    after = manifest(store.path)["files"]
    assert {f["name"] for f in after if f["bucket"] not in involved} == {
        n for n, f in before.items() if f["bucket"] not in involved}
    assert_wide_equal(store.prices(["aapl"]), wide_of(upper(long))[["AAPL"]])
    # the store goes on: an append to a renamed ticker is a change from its day
    store.ingest(make_long(["AAPL"], DAYS[301:302], seed=9))
    assert store.changes_since(gen + 1) == {"AAPL": DAYS[301]}


def test_the_wild_data_store_says_to_migrate_and_migrate_does_it(tmp_path, monkeypatch, capsys):
    """The store of test_wild_data::test_a_store_with_lower_case_tickers_says_to_migrate."""
    old = PriceStore(tmp_path / "legacy")
    ingest_legacy(old, pd.DataFrame({"date": ["2024-01-02"], "ticker": ["aapl"], "close": [1.0]}), monkeypatch)
    with pytest.raises(DataError, match="run 'quantfit store migrate' to rename it to AAPL"):
        old.prices(["AAPL"])
    rc, out, _ = cli(["store", "migrate", "--store", str(old.path)], capsys)
    assert rc == 0 and out.startswith(f"{old.path}: renamed 1 ticker: aapl -> AAPL (")
    for asked in ("aapl", "AAPL"):
        got = old.prices([asked])
        assert list(got.columns) == ["AAPL"] and got["AAPL"].tolist() == [1.0]
    assert old.tickers() == ["AAPL"] and list(old.ticker_info().index) == ["AAPL"]


def test_ingest_does_not_add_a_twin_of_a_legacy_name(legacy):
    store, _ = legacy()
    before = digest(store.path)
    with pytest.raises(DataError, match="holds 'aapl', written before tickers were upper-cased; "
                                        "run 'quantfit store migrate' to rename it to AAPL"):
        store.ingest(make_long(["AAPL", "NEW"], DAYS[301:303]))
    assert digest(store.path) == before
    store.ingest(make_long(["SPY", "NEW"], DAYS[301:303]))  # other tickers go in as ever


# ----------------------------------------------------------------------------- refusals
def _stored(tmp_path, monkeypatch, names, v1: bool):
    long = make_long(names, DAYS[:30])
    if v1:
        write_v1(tmp_path / "s", long)
        return PriceStore(tmp_path / "s")
    store = PriceStore(tmp_path / "s", buckets=4)
    ingest_legacy(store, long, monkeypatch)
    return store


@pytest.mark.parametrize("v1", [False, True], ids=["v2", "v1"])
@pytest.mark.parametrize("names, match", [
    (["aapl", "AAPL", "SPY"], (r"'AAPL' and 'aapl' would both be AAPL; nothing was changed; choose a "
                               r"name for each with 'quantfit store migrate --rename OLD NEW' "
                               r"\(e\.g\. --rename aapl NEW\)")),
    (["aapl", "Aapl", "msft", "MSFT"], r"'Aapl' and 'aapl' would both be AAPL; 'MSFT' and 'msft' would both be MSFT"),
    (["has space", "aapl"], r"ticker 'has space' contains a space .*nothing was changed.*--rename 'has space' NEW"),
])
def test_collisions_and_invalid_names_are_refused(tmp_path, monkeypatch, capsys, v1, names, match):
    store = _stored(tmp_path, monkeypatch, names, v1)
    before = digest(store.path)
    with pytest.raises(DataError, match=match):
        store.migrate()
    rc, out, err = cli(["store", "migrate", "--store", str(store.path)], capsys)
    assert rc == 2 and out == "" and err.count("\n") == 1 and err.startswith("quantfit: error: store ")
    if v1:  # ingest and compact migrate a v1 store first: refused alike, the input not written
        with pytest.raises(DataError, match=match):
            store.ingest(make_long(["ZZZ"], DAYS[:2]))
        with pytest.raises(DataError, match=match):
            store.compact()
    assert digest(store.path) == before


@pytest.mark.parametrize("v1", [False, True], ids=["v2", "v1"])
def test_rename_resolves_a_collision(tmp_path, monkeypatch, capsys, v1):
    store = _stored(tmp_path, monkeypatch, ["aapl", "AAPL", "has space", "SPY"], v1)
    long = make_long(["aapl", "AAPL", "has space", "SPY"], DAYS[:30])
    gen = store.generation
    rc, out, _ = cli(["store", "migrate", "--store", str(store.path), "--rename", "aapl", "aapl_old",
                      "--rename", "has space", "HAS_SPACE"], capsys)
    assert rc == 0 and "renamed 2 tickers: aapl -> AAPL_OLD, has space -> HAS_SPACE" in out
    names = {"aapl": "AAPL_OLD", "has space": "HAS_SPACE"}
    expect_store(store, long.assign(ticker=long["ticker"].replace(names)))
    assert store.changes_since(gen) == {"AAPL_OLD": DAYS[0], "HAS_SPACE": DAYS[0]}


def test_rename_to_a_name_another_rename_frees(tmp_path, monkeypatch):
    """AAPL -> AAPL_X and aapl -> AAPL (by the rule) in one migration: names swap buckets."""
    store = _stored(tmp_path, monkeypatch, ["aapl", "AAPL"], v1=False)
    long = make_long(["aapl", "AAPL"], DAYS[:30])
    s = store.migrate(rename={"AAPL": "AAPL_X"})
    assert s.renamed == (("AAPL", "AAPL_X"), ("aapl", "AAPL"))
    expect_store(store, long.assign(ticker=long["ticker"].replace({"AAPL": "AAPL_X", "aapl": "AAPL"})))
    assert set(store.changes_since(1)) == {"AAPL", "AAPL_X"}


@pytest.mark.parametrize("rename, match", [
    ({"nope": "X"}, r"holds no ticker 'nope' to rename"),
    ({"AAPL": "bad name"}, r"new name for 'AAPL': ticker 'bad name' contains a space"),
    ({"aapl": "SPY"}, r"'SPY' and 'aapl' would both be SPY"),
    ({"aapl": "msft"}, r"'aapl' and 'msft' would both be MSFT"),
])
def test_bad_renames_are_refused(tmp_path, monkeypatch, rename, match):
    store = _stored(tmp_path, monkeypatch, ["aapl", "AAPL", "msft", "SPY"], v1=False)
    before = digest(store.path)
    with pytest.raises(DataError, match=match):
        store.migrate(rename=rename)
    assert digest(store.path) == before


def test_cli_rename_given_twice(tmp_path, monkeypatch, capsys):
    store = _stored(tmp_path, monkeypatch, ["aapl", "AAPL"], v1=False)
    rc, _, err = cli(["store", "migrate", "--store", str(store.path), "--rename", "aapl", "A1",
                      "--rename", "aapl", "A2"], capsys)
    assert rc == 2 and "--rename 'aapl' given twice" in err


# ----------------------------------------------------------------------------- crashes
CHILD = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(Path(__file__).parent)!r})
    from crashpoints import arm
    mode, store_dir = sys.argv[1:3]
    import quantfit as qf
    from quantfit.data.store import changes
    changes.KEEP_EXACT = 1   # the rename's change log also merges the log
    kind = arm(mode)
    print("ready", flush=True)
    qf.PriceStore(store_dir).migrate()
    print("finished", flush=True)
""")

# crash point -> state it must leave (file:k: the k-th new file: staging files, segments, log)
POINTS = {"file:1": "old", "file:3": "old", "file:6": "old", "before_commit": "old",
          "after_commit": "new", "unlink:1": "new", "unlink:4": "new"}


def _state(d: Path):
    s = PriceStore(d)
    return s.tickers(), s.prices(), s.prices(field="volume")


def _same(a, b) -> bool:
    if a[0] != b[0]:
        return False
    try:
        assert_wide_equal(a[1], b[1])
        assert_wide_equal(a[2], b[2])
        return True
    except AssertionError:
        return False


def test_sigkill_during_a_renaming_migration(tmp_path, monkeypatch):
    names = ["aapl", "msft", "nvda", "SPY", "T00", "T01"]
    sources = {}
    v1 = tmp_path / "src-v1"
    write_v1(v1, make_long(names, DAYS), buckets=4)
    sources["v1"] = v1
    v2 = PriceStore(tmp_path / "src-v2", buckets=4)
    ingest_legacy(v2, make_long(names, DAYS[:300]), monkeypatch)
    for k in (1, 2):  # generations 2, 3: deltas, and a change log the rename's log merges
        ingest_legacy(v2, make_long(names, DAYS[299 + k:300 + k], seed=k), monkeypatch)
    sources["v2"] = v2.path
    refs = {}
    for kind, src in sources.items():
        ref = tmp_path / f"ref-{kind}"
        shutil.copytree(src, ref)
        old = _state(ref)
        PriceStore(ref).migrate()
        refs[kind] = (old, _state(ref))
    procs = {}
    for kind, src in sources.items():
        for mode in POINTS:
            d = tmp_path / f"{kind}-{mode.replace(':', '-')}"
            shutil.copytree(src, d)
            procs[kind, mode] = (d, subprocess.Popen([sys.executable, "-c", CHILD, mode, str(d)],
                                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for (kind, mode), (d, p) in procs.items():
        out, err = p.communicate(timeout=180)
        assert p.returncode == -signal.SIGKILL, (kind, mode, p.returncode, err[-2000:])
        assert "finished" not in out
        old, new = refs[kind]
        assert _same(_state(d), old if POINTS[mode] == "old" else new), (kind, mode)
        assert PriceStore(d).verify().ok, (kind, mode)
        # the next writer heals, and lands on the renamed store (an old one is migrated first)
        s = PriceStore(d)
        s.ingest(make_long(["ZZZ"], DAYS[:3]))
        assert data_files(d) == live_files(d), (kind, mode)
        if kind == "v1" or POINTS[mode] == "new":
            assert s.tickers() == sorted(new[0] + ["ZZZ"]), (kind, mode)
        check_buckets(d)
