"""Revision nights: a re-adjusted history is written as one overlay per group, not by rewriting
every month of the group, and every reader and later night sees exactly what a full rebuild
gives (values and the manifest's counts)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from test_nightly import (
    CUT,
    UNIVERSE,
    _with_new_days,
    assert_tidy_equal,
    make_store,
    manifest,
    params,
)

import quantfit as qf
import quantfit.refresh.task as task
from quantfit.data.store import PriceStore
from quantfit.errors import DataError
from quantfit.refresh import refresh
from quantfit.results_store import read_tidy


def readjust(store: str, ticker: str, before: str, factor: float = 0.985) -> None:
    """What Yahoo sends after a dividend: every close before ``before`` rescaled."""
    st = PriceStore(store)
    px = st.prices([ticker])[ticker].dropna()
    px = px[px.index < before] * factor
    st.ingest(pd.DataFrame({"date": px.index, "ticker": ticker, "close": px.to_numpy()}))


def assert_same_as_full(tmp_path, store: str, out, universe=UNIVERSE) -> dict:
    """The incremental result set equals a fresh rebuild: rows, per-asset counts, every reader."""
    fresh = tmp_path / "full"
    shutil.rmtree(fresh, ignore_errors=True)
    refresh(params(store, fresh, universe))
    assert_tidy_equal(read_tidy(out)[0], read_tidy(fresh)[0])
    m, f = manifest(out), manifest(fresh)
    assert m["asset_rows"] == f["asset_rows"] and m["results"]["rows"] == f["results"]["rows"]
    assert (m["results"]["first"], m["results"]["last"]) == (f["results"]["first"], f["results"]["last"])
    for day in ("2018-03-29", m["results"]["last"]):  # an overlaid month and the latest date
        pd.testing.assert_series_equal(qf.read_betas(out, day), qf.read_betas(fresh, day))
    a = qf.read_results(out, start="2019-11-15", end="2020-02-14", assets=["XOM", "GE"])
    b = qf.read_results(fresh, start="2019-11-15", end="2020-02-14", assets=["XOM", "GE"])
    pd.testing.assert_frame_equal(a.beta, b.beta, rtol=0, atol=1e-12)
    return m


def group_of(m: dict, asset: str) -> str:
    return next(str(g) for g, grp in enumerate(m["groups"]) if asset in grp["assets"])


def test_a_revision_night_writes_one_overlay_and_rewrites_only_the_tail(tmp_path, sample_long):
    long = _with_new_days(sample_long)
    store = make_store(tmp_path / "s", long[long["date"] <= CUT])
    out = tmp_path / "r"
    refresh(params(store, out))
    before = manifest(out)
    readjust(store, "XOM", "2023-06-10")
    PriceStore(store).ingest(long[(long["date"] > CUT) & (long["date"] <= "2023-06-20")])
    outcome = refresh(params(store, out))
    assert outcome.mode == "incremental"
    m = assert_same_as_full(tmp_path, store, out)
    g = group_of(m, "XOM")
    (over,) = m["overlays"][g]
    assert over["assets"] == [m["groups"][int(g)]["assets"].index("XOM")]
    assert over["through"] == m["data"]["last"] and over["first"] <= "2016-01-31"
    assert set(m["overlays"]) == {g}  # only XOM's group has one
    # months before the tail (June 2023) keep their files, in every group
    for grp, months in before["files"].items():
        for month, entry in months.items():
            if month < "2023-06":
                assert m["files"][grp][month]["file"] == entry["file"]
    assert m["results"]["files"] == sum(map(len, m["files"].values())) + 1
    # the next night appends: the overlay still applies to the months before
    PriceStore(store).ingest(long[(long["date"] > "2023-06-20") & (long["date"] <= "2023-07-10")])
    refresh(params(store, out))
    assert_same_as_full(tmp_path, store, out)
    # a full recompute (another store at the same path) drops the overlays with the files
    shutil.rmtree(store)
    make_store(tmp_path / "s", long[long["date"] <= "2023-07-10"])
    assert refresh(params(store, out)).mode == "full"
    m = manifest(out)
    assert m["overlays"] == {} and not any((out / m["key"] / "overlays").glob("*.parquet"))


def test_overlays_are_folded_once_a_group_has_enough(tmp_path, sample_long, monkeypatch):
    monkeypatch.setattr(task, "MAX_OVERLAYS", 2)
    monkeypatch.setattr(task, "FOLD_SPREAD", 1)  # every group folds at 2
    long = _with_new_days(sample_long)
    days = sorted(long.loc[long["date"] > CUT, "date"].unique())
    store = make_store(tmp_path / "s", long[long["date"] <= CUT])
    out = tmp_path / "r"
    refresh(params(store, out))
    g = group_of(manifest(out), "XOM")
    mate = next(a for a in manifest(out)["groups"][int(g)]["assets"] if a != "XOM")
    counts = []
    for night, ticker in enumerate(["XOM", mate, "XOM"]):  # each night: a dividend and a new day
        readjust(store, ticker, str(pd.Timestamp(days[night]).date()), 0.99)
        PriceStore(store).ingest(long[long["date"] == days[night]])
        refresh(params(store, out))
        m = manifest(out)
        counts.append({k: len(o) for k, o in m["overlays"].items()})
        assert_same_as_full(tmp_path, store, out)
    assert counts == [{g: 1}, {g: 2}, {}]  # the third night would write a third: folded
    # every asset of the group is in the universe: it was refitted and written afresh
    assert all(f"-{m['generation']}-" in e["file"] for e in m["files"][g].values())
    assert not any((out / m["key"] / "overlays").glob("*.parquet"))


def test_a_later_merge_keeps_what_an_older_overlay_says(tmp_path, sample_long):
    """A month rewritten on a later night (a revision a few weeks back) is rewritten from its
    overlaid view: the older overlay's rows survive in it."""
    long = _with_new_days(sample_long)
    store = make_store(tmp_path / "s", long[long["date"] <= CUT])
    out = tmp_path / "r"
    refresh(params(store, out))
    readjust(store, "XOM", "2023-06-01")  # night 1: XOM's whole history -> overlay
    refresh(params(store, out))
    mate = next(a for a in manifest(out)["groups"][int(group_of(manifest(out), "XOM"))]["assets"]
                if a != "XOM")
    for t in ("XOM", mate):  # night 2: corrections reaching back six weeks (a merge)
        st = PriceStore(store)
        px = st.prices([t], start="2023-05-01")[t].dropna()
        st.ingest(pd.DataFrame({"date": px.index, "ticker": t, "close": px.to_numpy() * 1.002}))
    PriceStore(store).ingest(long[(long["date"] > CUT) & (long["date"] <= "2023-06-30")])
    refresh(params(store, out))
    m = assert_same_as_full(tmp_path, store, out)
    assert len(m["overlays"][group_of(m, "XOM")]) == 1  # night 2 merged, no new overlay


def test_a_fold_keeps_the_rows_of_a_removed_asset(tmp_path, sample_long, monkeypatch):
    monkeypatch.setattr(task, "MAX_OVERLAYS", 1)
    monkeypatch.setattr(task, "FOLD_SPREAD", 1)
    long = _with_new_days(sample_long)
    days = sorted(long.loc[long["date"] > CUT, "date"].unique())
    store = make_store(tmp_path / "s", long[long["date"] <= CUT])
    out = tmp_path / "r"
    refresh(params(store, out))
    m = manifest(out)
    mate = next(a for a in m["groups"][int(group_of(m, "XOM"))]["assets"] if a != "XOM")
    past = read_tidy(out, assets=[mate])[0]
    universe = [a for a in UNIVERSE if a != mate]
    for night in range(2):  # night 1: an overlay; night 2: folded
        readjust(store, "XOM", str(pd.Timestamp(days[night]).date()), 0.99)
        PriceStore(store).ingest(long[long["date"] == days[night]])
        refresh(params(store, out, universe))
    m = manifest(out)
    assert m["overlays"] == {} and m["asset_rows"][mate] == len(past) // 2  # alpha and beta rows
    assert_tidy_equal(read_tidy(out, assets=[mate])[0], past)
    fresh = tmp_path / "full"
    refresh(params(store, fresh, universe))
    assert_tidy_equal(read_tidy(out, assets=universe)[0], read_tidy(fresh)[0])


@pytest.mark.parametrize("damage, match", [
    (lambda o: o.update(file="../../victim.parquet"), "malformed overlay of group"),
    (lambda o: o.update(assets=[99]), "malformed overlay of group"),
    (lambda o: o.pop("through"), "malformed overlay of group"),
])
def test_a_malformed_overlay_entry_is_refused(tmp_path, sample_long, damage, match):
    long = _with_new_days(sample_long)
    store = make_store(tmp_path / "s", long)
    out = tmp_path / "r"
    refresh(params(store, out))
    readjust(store, "XOM", "2023-01-01")
    refresh(params(store, out))
    key = (out / "LATEST").read_text().strip()
    path = out / key / "manifest.json"
    m = json.loads(path.read_text())
    damage(next(iter(m["overlays"].values()))[0])
    path.write_text(json.dumps(m))
    with pytest.raises(DataError, match=match):
        qf.read_betas(out)


def test_an_orphan_overlay_is_removed_by_the_next_run(tmp_path, sample_long):
    long = _with_new_days(sample_long)
    store = make_store(tmp_path / "s", long[long["date"] <= CUT])
    out = tmp_path / "r"
    refresh(params(store, out))
    readjust(store, "XOM", "2023-01-01")
    refresh(params(store, out))
    m = manifest(out)
    orphan = out / m["key"] / "overlays" / "part-0000-99-0123456789ab.parquet"
    orphan.write_bytes(b"left by a killed run")
    PriceStore(store).ingest(long[(long["date"] > CUT) & (long["date"] <= "2023-06-20")])
    refresh(params(store, out))
    assert not orphan.exists()
    assert_same_as_full(tmp_path, store, out)
