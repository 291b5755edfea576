"""The nightly job with issue 15's options: calendar windows, ``every`` (period-end rows),
``freq`` (weekly / monthly rows), presets and factor models by name. Each result set equals
one ``qf.fit_rolling`` of every asset at once on the same inputs (chunked = one-shot), and an
incremental night equals a full rebuild, also when the new days fall inside a period whose
estimate they move. Tidy rows carry ``p_value``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import quantfit as qf
from quantfit.data.store import PriceStore
from quantfit.refresh import RefreshParams, refresh
from quantfit.results_store import read_tidy

UNIVERSE = ["AAPL", "BABA", "GE", "JPM", "MA", "XOM"]
CUT = pd.Timestamp("2023-06-14")  # mid-month, mid-week


@pytest.fixture(scope="module")
def sample_long():
    long = qf.sources.sample()
    long = long[(long["date"] >= "2016-01-01") & long["ticker"].isin(UNIVERSE + ["SPY"])]
    return long.reset_index(drop=True)


def make_store(path: Path, long: pd.DataFrame) -> str:
    PriceStore(path).ingest(long)
    return str(path)


def params(store: str, out: Path, **kw) -> RefreshParams:
    return RefreshParams(store=store, out=str(out), universe=list(UNIVERSE), report=False,
                         store_given=True, group_size=2, **kw)


def daily_inputs(store: str):
    st = PriceStore(store)
    spy = st.prices(["SPY"])["SPY"].dropna()
    px = st.prices(UNIVERSE, start=spy.index[0], end=spy.index[-1]).reindex(spy.index)
    return qf.returns(px), qf.returns(spy)


def assert_same(got: pd.DataFrame, ref: pd.DataFrame, atol: float = 1e-12) -> None:
    got, ref = got.reset_index(drop=True), ref[list(got.columns)].reset_index(drop=True)
    assert len(got) == len(ref) > 0
    for c in ("date", "asset", "term", "nobs"):
        assert (got[c].to_numpy() == ref[c].to_numpy()).all(), c
    for c in ("estimate", "std_error", "t_stat", "p_value", "r2", "resid_vol"):
        np.testing.assert_allclose(got[c].to_numpy(float), ref[c].to_numpy(float), rtol=1e-10,
                                   atol=atol, err_msg=c)


CONFIGS = {
    "calendar-2Y": (dict(window="2Y", min_obs=400), dict(window="2Y", min_obs=400)),
    "every-M": (dict(window=252, every="M"), dict(window=252, every="M")),
    "monthly-36M": (dict(window="36M", freq="M"), dict(window="36M", freq="M")),
    "bloomberg": (dict(preset="bloomberg"), dict(preset="bloomberg")),
    "ewma-Q": (dict(preset="ewma", every="Q"), dict(preset="ewma", every="Q")),
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_chunked_rebuild_equals_one_fit_rolling(tmp_path, sample_long, config):
    job, direct = CONFIGS[config]
    store = make_store(tmp_path / "s", sample_long)
    out = tmp_path / "r"
    outcome = refresh(params(store, out, **job))
    assert outcome.mode == "full"
    y, x = daily_inputs(store)
    ref = qf.fit_rolling(y, x, **direct).to_frame()
    got, manifest = read_tidy(out)
    assert_same(got, ref)
    if direct.get("freq") or direct.get("preset") == "bloomberg":
        assert manifest["params"]["freq"] in ("M", "W")


@pytest.mark.parametrize("config", ["calendar-2Y", "every-M", "monthly-36M", "bloomberg"])
def test_incremental_nights_equal_a_full_rebuild(tmp_path, sample_long, config):
    """Two nights: one inside a month (and a week) whose estimate it moves, then the rest."""
    job, _ = CONFIGS[config]
    store = make_store(tmp_path / "s", sample_long[sample_long["date"] <= CUT])
    out = tmp_path / "inc"
    refresh(params(store, out, **job))
    for upto in (CUT + pd.Timedelta(days=1), None):
        part = sample_long if upto is None else sample_long[sample_long["date"] <= upto]
        PriceStore(store).ingest(part)
        outcome = refresh(params(store, out, **job))
        assert outcome.mode in ("incremental", "up to date")
    full = tmp_path / "full"
    refresh(params(store, full, **job))
    got, _ = read_tidy(out)
    ref, _ = read_tidy(full)
    assert_same(got, ref, atol=1e-12)
    if config == "every-M":  # one row per month and asset: the month-to-date row was replaced
        per_month = got[got.term == "SPY"].groupby(["asset", got.date.dt.to_period("M")]).size()
        assert per_month.max() == 1


def _french_file(path: Path, frame: pd.DataFrame, monthly: bool) -> None:
    """``frame`` (decimals) written as a Ken French CSV (percent, YYYYMMDD or YYYYMM keys)."""
    keys = frame.index.strftime("%Y%m" if monthly else "%Y%m%d")
    lines = ["This file was created for a test from the embedded sample.", "",
             "," + ",".join(frame.columns)]
    lines += [k + "," + ",".join(f"{100 * v:10.4f}" for v in row)
              for k, row in zip(keys, frame.to_numpy())]
    path.write_text("\r\n".join(lines + ["", "Copyright test"]) + "\r\n")


@pytest.fixture(scope="module")
def factor_files(tmp_path_factory, sample_long):
    """Daily and monthly ff3 files over the sample's dates (made from SPY and the stocks)."""
    d = tmp_path_factory.mktemp("factors")
    store = make_store(d / "s", sample_long)
    y, x = daily_inputs(store)
    rf = pd.Series(0.00008, index=x.index)
    daily = pd.DataFrame({"Mkt-RF": x - rf, "SMB": y[["GE", "XOM"]].mean(axis=1) - x,
                          "HML": y[["JPM", "XOM"]].mean(axis=1) - y[["AAPL", "MA"]].mean(axis=1),
                          "RF": rf}).iloc[1:].round(6)
    _french_file(d / "F-F_Research_Data_Factors_daily.CSV", daily, monthly=False)
    m = qf.compound(pd.DataFrame({"Mkt": x, "SMB": daily["SMB"], "HML": daily["HML"]}), "M")
    monthly = pd.DataFrame({"Mkt-RF": m["Mkt"] - 0.0017, "SMB": m["SMB"], "HML": m["HML"],
                            "RF": 0.0017}, index=m.index).iloc[:-3].round(6)  # ends earlier
    _french_file(d / "F-F_Research_Data_Factors.CSV", monthly, monthly=True)
    return d


@pytest.mark.parametrize("freq", [None, "M"])
def test_factor_models_by_name(tmp_path, sample_long, factor_files, freq):
    store = make_store(tmp_path / "s", sample_long)
    out = tmp_path / "r"
    kw = dict(window="36M", freq="M") if freq else dict(window=126)
    refresh(params(store, out, model="ff3", factors_dir=str(factor_files), **kw))
    got, manifest = read_tidy(out)
    assert manifest["inputs"]["model"] == "ff3"
    ff = qf.sources.factor_model("ff3", freq=freq or "D", factors_dir=factor_files, download=False)
    st = PriceStore(store)
    if freq is None:  # daily: the file's dates within the store's range are the calendar
        cal = ff.index[ff.index >= st.prices(["SPY"]).index[0]]
        y = qf.excess_returns(qf.returns(st.prices(UNIVERSE).reindex(cal)), ff["RF"])
        x = ff.loc[y.index, ["Mkt-RF", "SMB", "HML"]]
    else:  # monthly: daily returns on SPY's days compounded, then in excess of the month's RF
        y_daily, _ = daily_inputs(store)
        monthly = qf.compound(y_daily, "M")
        monthly = monthly.loc[monthly.index.intersection(ff.index)]
        y = qf.excess_returns(monthly, ff["RF"])
        x = ff.loc[y.index, ["Mkt-RF", "SMB", "HML"]]
        assert got["date"].max() == ff.index[-1]  # results stop where the file stops
    ref = qf.fit_rolling(y, x, **kw).to_frame()
    assert_same(got, ref)
    # a night later: nothing new in the files or prices -> up to date
    assert refresh(params(store, out, model="ff3", factors_dir=str(factor_files), **kw)).mode \
        == "up to date"


def test_cli_runs_a_preset_with_a_report(tmp_path, sample_long, capsys):
    from quantfit.cli import main
    store = make_store(tmp_path / "s", sample_long)
    out = tmp_path / "r"
    code = main(["refresh", "--store", store, "--out", str(out), "--universe",
                 ",".join(UNIVERSE), "--preset", "monthly60", "--quiet"])
    assert code in (0, 1), capsys.readouterr().err
    assert (out / "report" / "index.html").exists()
    betas = qf.read_betas(out)
    assert betas.attrs["date"] == pd.Timestamp("2024-11-30")  # November 2024's label
