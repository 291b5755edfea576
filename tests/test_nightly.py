"""The nightly job as a stream of asset groups: chunked = one-shot, incremental = full after
every kind of change, reads that cost only what is new, and damage reported, never made worse.

Sizes are small (the sample from 2015, a few assets, groups of two); the scale figures live in
``benchmarks/bench_nightly.py``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import quantfit as qf
from quantfit.cli import main
from quantfit.data.store import PriceStore
from quantfit.errors import DataError
from quantfit.refresh import RefreshParams, refresh
from quantfit.results_store import read_tidy

UNIVERSE = ["AAPL", "BABA", "GE", "JPM", "MA", "XOM"]
CUT = pd.Timestamp("2023-06-15")  # mid-month


def make_store(path: Path, long: pd.DataFrame) -> str:
    PriceStore(path).ingest(long)
    return str(path)


def params(store: str, out: Path, universe=UNIVERSE, **kw) -> RefreshParams:
    return RefreshParams(store=store, out=str(out), universe=list(universe), report=False,
                         store_given=True, group_size=kw.pop("group_size", 2), **kw)


def direct_fit(store: str, universe, window: int = 252, **kw) -> qf.RollingFit:
    """One fit_rolling of every asset at once on the benchmark's calendar (the reference)."""
    st = PriceStore(store)
    spy = st.prices(["SPY"])["SPY"].dropna()
    px = st.prices(list(universe), start=spy.index[0], end=spy.index[-1]).reindex(spy.index)
    return qf.fit_rolling(qf.returns(px), qf.returns(spy), window=window, **kw)


def assert_tidy_equal(a: pd.DataFrame, b: pd.DataFrame, atol: float = 1e-12) -> None:
    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    assert len(a) == len(b)
    for c in ("date", "asset", "term", "nobs"):
        assert (a[c].to_numpy() == b[c].to_numpy()).all(), c
    for c in ("estimate", "std_error", "t_stat", "r2", "resid_vol"):
        np.testing.assert_allclose(a[c].to_numpy(float), b[c].to_numpy(float), rtol=0, atol=atol, err_msg=c)


def manifest(out: Path) -> dict:
    key = (out / "LATEST").read_text().strip()
    return json.loads((out / key / "manifest.json").read_text())


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- chunked = one-shot
@pytest.mark.parametrize("extra", [{}, {"window": 126, "halflife": 40.0}, {"window": 60, "loss": "huber"}],
                         ids=["ols", "halflife", "huber"])
def test_chunked_rebuild_equals_one_shot_fit(tmp_path, sample_long, extra):
    store = make_store(tmp_path / "s", sample_long[sample_long["ticker"].isin(UNIVERSE + ["SPY"])])
    out = tmp_path / "r"
    outcome = refresh(params(store, out, **extra))
    m = manifest(out)
    assert outcome.mode == "full" and len(m["groups"]) == 3  # groups of two assets
    got, _ = read_tidy(out)
    ref = direct_fit(store, UNIVERSE, **extra).to_frame()
    assert_tidy_equal(got, ref[got.columns.intersection(ref.columns)])


# ----------------------------------------------------------------------------- incremental = full
def _with_new_days(sample_long):
    return sample_long[sample_long["ticker"].isin(UNIVERSE + ["SPY", "WMT"])]


@pytest.mark.parametrize("change", ["new_days", "readjusted", "readjusted_and_new_days", "added",
                                    "removed", "back"])
def test_incremental_equals_full_recompute(tmp_path, sample_long, change):
    """After each kind of change, the incremental result set equals a fresh full rebuild."""
    long = _with_new_days(sample_long)
    old = long[long["date"] <= CUT]
    store = make_store(tmp_path / "s", old)
    out = tmp_path / "inc"
    refresh(params(store, out))
    universe = list(UNIVERSE)
    before = manifest(out)
    if change == "new_days":
        PriceStore(store).ingest(long)
    elif change.startswith("readjusted"):  # a dividend: Yahoo rescales every earlier close
        adj = old[old["ticker"] == "XOM"].copy()
        adj.loc[adj["date"] < "2023-06-01", "close"] *= 0.985
        PriceStore(store).ingest(adj)
        if change.endswith("new_days"):
            PriceStore(store).ingest(long[long["date"] > CUT])
    elif change == "added":
        universe = universe + ["WMT"]
    elif change == "removed":
        universe = [a for a in universe if a != "GE"]
    else:  # GE leaves for some nights (prices arrive meanwhile), then comes back
        refresh(params(store, out, [a for a in universe if a != "GE"]))
        PriceStore(store).ingest(long)
        before = manifest(out)
    outcome = refresh(params(store, out, universe))
    m = manifest(out)
    run = m["last_run"]
    fresh = tmp_path / "full"
    refresh(params(store, fresh, universe))
    got, _ = read_tidy(out, assets=universe)
    ref, _ = read_tidy(fresh)
    assert_tidy_equal(got, ref)
    if change != "removed":  # the manifest's per-asset counts are exact too
        assert {a: k for a, k in m["asset_rows"].items() if a in universe} == manifest(fresh)["asset_rows"]
    if change == "new_days":
        assert outcome.mode == "incremental" and run["first_fitted"] > str(CUT.date())
        assert run["rows_fitted_on"] == outcome.dates_fitted + 251  # the tail: window - 1 + new
        # only the cut month and later rewritten: earlier part files are untouched
        kept = {(g, mo): e["file"] for g, ms in before["files"].items() for mo, e in ms.items() if mo < "2023-06"}
        assert all(m["files"][g][mo]["file"] == f for (g, mo), f in kept.items())
    elif change == "readjusted":
        assert outcome.mode == "incremental" and run["assets_fitted"] == 1
        assert "1 asset(s) with revised prices" in run["reason"]
    elif change == "readjusted_and_new_days":
        # XOM's group reads XOM's whole history, its other asset only the tail (two bands)
        n_rows, n_new = m["data"]["dates"], m["data"]["dates"] - before["data"]["dates"]
        group = next(g["assets"] for g in m["groups"] if "XOM" in g["assets"])
        assert len(group) == 2 and outcome.dates_fitted == n_rows
        assert run["rows_fitted_on"] == n_rows + (n_new + 251)  # the largest task: two bands
    elif change == "back":
        assert outcome.mode == "incremental" and "1 asset(s) back in the universe" in run["reason"]
    elif change == "added":
        assert outcome.mode == "incremental" and run["assets_fitted"] == 1
        assert m["groups"][-1]["assets"] == ["WMT"] and len(m["groups"]) == len(before["groups"]) + 1
        assert all(m["files"][g] == before["files"][g] for g in before["files"])  # nothing rewritten
    elif change == "removed":
        # A removed asset gets no new rows; its past rows stay readable by name.
        assert outcome.mode == "up to date" and m["universe"] == universe
        ge = qf.read_results(out, assets=["GE"])
        assert ge.beta["GE"].notna().sum() == (before["asset_rows"]["GE"])
        assert m["files"] == before["files"]


def test_removed_asset_gets_no_new_rows_and_keeps_its_past(tmp_path, sample_long):
    long = _with_new_days(sample_long)
    store = make_store(tmp_path / "s", long[long["date"] <= CUT])
    out = tmp_path / "r"
    refresh(params(store, out))
    PriceStore(store).ingest(long)
    universe = [a for a in UNIVERSE if a != "GE"]
    outcome = refresh(params(store, out, universe))
    assert outcome.mode == "incremental" and outcome.assets_fitted == len(universe)
    ge, _ = read_tidy(out, assets=["GE"])
    assert ge["date"].max() <= CUT and len(ge)
    assert "GE" not in qf.read_betas(out).index
    assert qf.read_results(out).assets.tolist() == universe  # the current universe by default


def test_added_assets_join_a_small_last_group_and_equal_a_full_rebuild(tmp_path, sample_long):
    long = _with_new_days(sample_long)
    store = make_store(tmp_path / "s", long)
    out = tmp_path / "r"
    refresh(params(store, out, group_size=20))  # one group of six: no room (small = 20 // 10)
    refresh(params(store, out, UNIVERSE + ["WMT"], group_size=20))
    assert [g["assets"] for g in manifest(out)["groups"]][1:] == [["WMT"]]
    extra = long[long["ticker"] == "WMT"].assign(ticker="WMT2")
    PriceStore(store).ingest(extra)
    outcome = refresh(params(store, out, UNIVERSE + ["WMT", "WMT2"], group_size=20))
    m = manifest(out)
    assert outcome.assets_fitted == 1 and [g["assets"] for g in m["groups"]][1:] == [["WMT", "WMT2"]]
    fresh = tmp_path / "full"
    refresh(params(store, fresh, UNIVERSE + ["WMT", "WMT2"], group_size=20))
    assert_tidy_equal(read_tidy(out)[0], read_tidy(fresh)[0])
    wmt2 = qf.read_betas(out)
    assert wmt2["WMT2"] == wmt2["WMT"]  # the same prices under two names


def test_an_incremental_night_reads_only_the_tail(tmp_path, sample_long, monkeypatch):
    long = _with_new_days(sample_long)
    store = make_store(tmp_path / "s", long[long["date"] <= CUT])
    out = tmp_path / "r"
    refresh(params(store, out))
    PriceStore(store).ingest(long[long["date"] <= CUT + pd.Timedelta(days=1)])  # one new day
    calls = []
    real = PriceStore.prices

    def spy(self, tickers=None, start=None, end=None, *a, **kw):
        calls.append((None if tickers is None else sorted(tickers), start))
        return real(self, tickers, start, end, *a, **kw)

    monkeypatch.setattr(PriceStore, "prices", spy)
    outcome = refresh(params(store, out))
    assert outcome.mode == "incremental" and outcome.dates_fitted == 1
    cal = real(PriceStore(store), ["SPY"]).index
    earliest = cal[len(cal) - 1 - 252]  # the first new window's first row, and the price before it
    asset_reads = [(t, s) for t, s in calls if t != ["SPY"]]
    assert asset_reads and all(pd.Timestamp(s) >= earliest for _, s in asset_reads)
    assert sorted(a for t, _ in asset_reads for a in t) == sorted(UNIVERSE)


def test_nothing_new_writes_nothing(tmp_path, sample_long):
    store = make_store(tmp_path / "s", _with_new_days(sample_long))
    out = tmp_path / "r"
    refresh(params(store, out))
    before = hashes(out)
    assert refresh(params(store, out)).mode == "up to date"
    assert hashes(out) == before


# ----------------------------------------------------------------------------- damage
def run_cli(argv, capsys):
    code = main(argv)
    return code, *capsys.readouterr()


def test_a_damaged_manifest_is_reported_and_nothing_is_deleted(tmp_path, sample_long, capsys):
    store = make_store(tmp_path / "s", _with_new_days(sample_long))
    out = tmp_path / "r"
    refresh(params(store, out))
    key = (out / "LATEST").read_text().strip()
    path = out / key / "manifest.json"
    m = json.loads(path.read_text())
    del m["groups"]
    path.write_text(json.dumps(m))
    before = hashes(out)
    argv = ["refresh", "--store", store, "--out", str(out), "--universe", ",".join(UNIVERSE), "--no-report"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and err.count("\n") == 1
    assert f"damaged results manifest {path}: missing or malformed 'groups'" in err
    assert hashes(out) == before
    with pytest.raises(DataError, match="damaged results manifest"):
        qf.read_betas(out)


def test_a_truncated_or_missing_part_file_is_named(tmp_path, sample_long, capsys):
    store = make_store(tmp_path / "s", _with_new_days(sample_long))
    out = tmp_path / "r"
    refresh(params(store, out))
    m = manifest(out)
    rs = out / m["key"]
    asset = m["groups"][0]["assets"][0]
    last_month = max(m["files"]["0"])
    part = rs / m["files"]["0"][last_month]["file"]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    with pytest.raises(DataError, match=f"damaged result file {part}"):
        qf.read_betas(out)
    # a refresh that must merge into that month (a revised price of one of its assets) says
    # which file, exit 2, and leaves every committed file as it was
    last = m["data"]["last"]
    px = PriceStore(store).prices([asset], start=last)
    PriceStore(store).ingest(pd.DataFrame({"date": [pd.Timestamp(last)], "ticker": [asset],
                                           "close": [px.iloc[-1, 0] * 1.01]}))
    before = hashes(out)
    argv = ["refresh", "--store", store, "--out", str(out), "--universe", ",".join(UNIVERSE),
            "--no-report", "--group-size", "2", "-q"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and f"damaged result file {part}" in err
    assert {k: v for k, v in hashes(out).items() if k in before} == before
    part.unlink()
    with pytest.raises(DataError, match=f"result file {part} is missing"):
        qf.read_betas(out, m["data"]["last"])


@pytest.mark.parametrize("damage, match", [
    (lambda m: m["inputs"].pop("store_generation"), "'inputs' lacks the store's id and generation"),
    (lambda m: m.update(asset_rows=[]), "'asset_rows' must map assets to counts"),
    (lambda m: m["data"].update(x_months=[]), "'data' lacks first/last/dates/x_months"),
    (lambda m: next(iter(m["files"]["0"].values())).update(file="../../victim.txt"),
     "malformed entry for group 0"),
])
def test_every_manifest_entry_is_checked_before_use(tmp_path, sample_long, capsys, damage, match):
    store = make_store(tmp_path / "s", _with_new_days(sample_long))
    out = tmp_path / "r"
    refresh(params(store, out))
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    key = (out / "LATEST").read_text().strip()
    path = out / key / "manifest.json"
    m = json.loads(path.read_text())
    damage(m)
    path.write_text(json.dumps(m))
    before = hashes(tmp_path)
    # a full rebuild (another store id would do, here: expanding windows need one) must not run
    argv = ["refresh", "--store", store, "--out", str(out), "--universe", ",".join(UNIVERSE),
            "--no-report", "-q"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and match in err, err
    assert hashes(tmp_path) == before and victim.read_text() == "keep me"


def test_a_flipped_byte_in_a_part_file_is_caught(tmp_path, sample_long):
    store = make_store(tmp_path / "s", _with_new_days(sample_long))
    out = tmp_path / "r"
    refresh(params(store, out))
    m = manifest(out)
    part = out / m["key"] / m["files"]["0"][m["data"]["last"][:7]]["file"]
    data = bytearray(part.read_bytes())
    data[len(data) // 3] ^= 0x10  # inside a data page
    part.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"damaged result file {part}"):
        read_tidy(out)  # every column: the page checksums catch the flip


def test_stale_prices_are_reported_once_not_every_night(tmp_path, sample_long):
    long = _with_new_days(sample_long)
    long = long[~((long["ticker"] == "GE") & (long["date"] > "2020-06-30"))]  # delisted long ago
    store = make_store(tmp_path / "s", long[long["date"] <= CUT])
    out = tmp_path / "r"
    first = refresh(params(store, out))
    assert not any("stale" in w for w in first.warnings)  # GE: years old, not news
    days = sorted(long.loc[long["date"] > CUT, "date"].unique())
    night = long[long["date"].isin(days[:1]) & (long["ticker"] != "MA")]  # MA misses a day
    PriceStore(store).ingest(night)
    second = refresh(params(store, out))
    assert [w for w in second.warnings if "stale" in w] == [
        f"MA: stale price: none on {pd.Timestamp(days[0]).date()} (last {CUT.date()})"]
    PriceStore(store).ingest(long[long["date"].isin(days[1:2]) & (long["ticker"] != "MA")])
    third = refresh(params(store, out))
    assert not any("stale" in w for w in third.warnings)  # said once
