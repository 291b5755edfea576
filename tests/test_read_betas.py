"""``qf.read_betas`` / ``qf.read_results`` on result sets written by ``quantfit refresh``:
latest and given dates, one month file per read, clear errors, several factors (Ken French)."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import quantfit as qf
from quantfit.errors import DataError
from quantfit.refresh import RefreshParams, refresh

UNIVERSE = ["AAPL", "BABA", "JPM", "XOM"]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A store of the sample from 2015, a benchmark result set and a French 3-factor one."""
    root = tmp_path_factory.mktemp("betas")
    long = qf.sources.sample()
    long = long[(long["date"] >= "2015-01-01") & long["ticker"].isin(UNIVERSE + ["SPY"])]
    qf.PriceStore(root / "store").ingest(long)
    prices = qf.PriceStore(root / "store").prices()
    bench = refresh(RefreshParams(store=str(root / "store"), out=str(root / "out"), report=False))

    # A daily factors file in the Ken French format, ending before the prices do (as the real
    # one lags by a month or so): Mkt-RF follows SPY, SMB and HML are noise, RF constant.
    rets = qf.returns(prices)
    dates = rets.index[rets.index <= "2024-06-28"]
    rng = np.random.default_rng(7)
    rf = 0.008
    mkt = np.round(rets.loc[dates, "SPY"].to_numpy() * 100 - rf, 2)
    smb, hml = np.round(rng.normal(0, 0.5, (2, len(dates))), 2)
    lines = ["This file was created by a test in the Ken French format.", "",
             "   ,Mkt-RF,SMB,HML,RF"]
    lines += [f"{d:%Y%m%d},{a:8.2f},{b:8.2f},{c:8.2f},{rf:8.3f}" for d, a, b, c in zip(dates, mkt, smb, hml)]
    lines += ["", "Copyright 2024 Kenneth R. French"]
    ff_path = root / "F-F_Research_Data_Factors_daily.CSV"
    ff_path.write_text("\n".join(lines) + "\n")
    ff = refresh(RefreshParams(store=str(root / "store"), out=str(root / "out_ff"), factors=str(ff_path),
                               window=126, report=False))
    return {"root": root, "prices": prices, "bench": bench, "ff": ff, "ff_path": ff_path}


def direct_fit(case):
    rets = qf.returns(case["prices"])
    return qf.fit_rolling(rets[UNIVERSE], rets["SPY"], window=252)


def test_latest_by_default(case):
    betas = qf.read_betas(case["root"] / "out")
    fit = direct_fit(case)
    last = fit.index[-1]
    assert betas.attrs["date"] == last and betas.name == "SPY"
    assert list(betas.index) == UNIVERSE and betas.index.name == "asset"
    np.testing.assert_allclose(betas.to_numpy(), fit.beta.loc[last, UNIVERSE].to_numpy(), rtol=0, atol=1e-12)


def test_one_date_reads_one_month_file(case, monkeypatch):
    read = []
    real = pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda path, *a, **kw: read.append(str(path)) or real(path, *a, **kw))
    betas = qf.read_betas(case["root"] / "out", "2020-03-16")
    assert len(read) == 1 and "/month=2020-03/" in read[0]
    fit = direct_fit(case)
    # BABA has a full window by then too; all four assets have an estimate
    np.testing.assert_allclose(betas.to_numpy(), fit.beta.loc["2020-03-16", UNIVERSE].to_numpy(),
                               rtol=0, atol=1e-12)
    alpha = qf.read_betas(case["root"] / "out", pd.Timestamp("2020-03-16"), term="alpha")
    assert alpha.name == "alpha"
    np.testing.assert_allclose(alpha.to_numpy(), fit.alpha.loc["2020-03-16", UNIVERSE].to_numpy(),
                               rtol=0, atol=1e-12)


def test_assets_without_an_estimate_are_absent(case):
    # BABA listed in September 2014: its first 252-row window ends in late 2015
    early = qf.read_betas(case["root"] / "out", "2016-01-04")
    fit = direct_fit(case)
    has = fit.beta.loc["2016-01-04"].dropna()
    assert list(early.index) == list(has.index)
    assert len(early) >= 1


@pytest.mark.parametrize("date, match", [
    ("2020-03-15", "no results for 2020-03-15"),           # a Sunday inside the range
    ("2010-01-04", "no results for 2010-01-04"),           # before the first window
    ("2031-01-02", "no results for 2031-01-02"),           # after the last date
    ("yesterday-ish", "bad date"),
])
def test_missing_or_bad_date_is_a_clear_error(case, date, match):
    with pytest.raises(DataError, match=match) as info:
        qf.read_betas(case["root"] / "out", date)
    if "no results" in match:
        assert "results cover 2016-" in str(info.value) and "to 2024-11-29" in str(info.value)


@pytest.mark.parametrize("date", [20240628, "20240628", "28.06.2024", "Jun 28, 2024",
                                  pd.Timestamp("2024-06-28 23:00", tz="Asia/Tokyo"), np.datetime64("2024-06-28")])
def test_date_forms_follow_the_data_layers_rules(case, date):
    """A YYYYMMDD integer is that day (not 1970-01-01 + nanoseconds); unambiguous text and
    aware timestamps (their local date) read the same day."""
    want = qf.read_betas(case["root"] / "out", "2024-06-28")
    got = qf.read_betas(case["root"] / "out", date)
    assert got.attrs["date"] == pd.Timestamp("2024-06-28")
    pd.testing.assert_series_equal(got, want)


@pytest.mark.parametrize("date, match", [
    ("05.07.2024", r"bad date '05\.07\.2024': day and month could be either way round; write it as YYYY-MM-DD"),
    (1719532800, r"bad date 1719532800: write it as YYYY-MM-DD \(an integer date is YYYYMMDD\)"),
    (2024.5, r"bad date 2024\.5"),
    ("4870-01-01", r"outside the supported range"),
])
def test_ambiguous_or_odd_dates_are_refused(case, date, match):
    with pytest.raises(DataError, match=match):
        qf.read_betas(case["root"] / "out", date)
    with pytest.raises(DataError, match=match.replace("bad date", "bad start")):
        qf.read_results(case["root"] / "out", start=date)


def test_unknown_term_and_no_results(case, tmp_path):
    with pytest.raises(DataError, match="unknown term 'QQQ'"):
        qf.read_betas(case["root"] / "out", term="QQQ")
    with pytest.raises(DataError, match="no results at"):
        qf.read_betas(tmp_path / "nothing-here")
    with pytest.raises(DataError, match="holds no quantfit results"):
        qf.read_betas(tmp_path)
    with pytest.raises(DataError, match="holds no quantfit results"):
        qf.read_results(tmp_path)


def test_result_set_directory_works_too(case):
    out = case["root"] / "out"
    key = (out / "LATEST").read_text().strip()
    assert key == case["bench"].key
    pd.testing.assert_series_equal(qf.read_betas(out / key), qf.read_betas(out))


def test_read_results_range_is_a_rolling_fit(case):
    fit = qf.read_results(case["root"] / "out", start="2020-01-01", end="2020-12-31")
    assert isinstance(fit, qf.RollingFit)
    assert fit.index[0] == pd.Timestamp("2020-01-02") and fit.index[-1] == pd.Timestamp("2020-12-31")
    assert list(fit.assets) == UNIVERSE and fit.terms == ["alpha", "SPY"]
    assert fit.settings["window"] == 252 and fit.settings["key"] == case["bench"].key
    ref = direct_fit(case)
    for get in (lambda f: f.beta, lambda f: f.stderr("SPY"), lambda f: f.r2, lambda f: f.resid_vol,
                lambda f: f.tstat("SPY")):
        np.testing.assert_allclose(get(fit).to_numpy(), get(ref).loc[fit.index].to_numpy(), rtol=0, atol=1e-12)
    assert (fit.nobs.to_numpy() == ref.nobs.loc[fit.index].to_numpy()).all()
    with pytest.raises(DataError, match="start 2021-01-01 is after end 2020-01-01"):
        qf.read_results(case["root"] / "out", start="2021-01-01", end="2020-01-01")


def test_several_factors_give_a_frame_assets_by_factors(case):
    out = case["root"] / "out_ff"
    betas = qf.read_betas(out)
    assert list(betas.columns) == ["Mkt-RF", "SMB", "HML"] and list(betas.index) == UNIVERSE
    assert betas.attrs["date"] == pd.Timestamp("2024-06-28")  # the factors end there
    # the same as a direct fit of excess returns on the factors (inner join on dates)
    ff = qf.sources.french(case["ff_path"])
    rets = qf.returns(case["prices"])
    dates = rets.index.intersection(ff.index)
    y = rets.loc[dates, UNIVERSE].sub(ff.loc[dates, "RF"], axis=0)
    fit = qf.fit_rolling(y, ff.loc[dates, ["Mkt-RF", "SMB", "HML"]], window=126)
    for f in ("Mkt-RF", "SMB", "HML"):
        np.testing.assert_allclose(betas[f].to_numpy(), fit.coef(f).iloc[-1][UNIVERSE].to_numpy(),
                                   rtol=0, atol=1e-12)
    smb = qf.read_betas(out, "2024-06-28", term="SMB")
    pd.testing.assert_series_equal(smb, betas["SMB"].rename("SMB"), check_names=True)
    m = case["ff"]
    assert m.last_date == "2024-06-28" and m.mode == "full"
    assert (out / m.key).name != case["bench"].key  # another parameter set, another key


def test_read_results_last_years_reads_only_the_recent_span(case):
    full = qf.read_results(case["root"] / "out")
    recent = qf.read_results(case["root"] / "out", last_years=2)
    last = full.index[-1]
    assert recent.index[-1] == last
    assert recent.index[0] == full.index[full.index >= last - pd.Timedelta(days=730)][0]  # 2 x 365.25 days
    pd.testing.assert_frame_equal(recent.beta, full.beta.loc[recent.index])
    with pytest.raises(DataError, match="not both"):
        qf.read_results(case["root"] / "out", start="2020-01-01", last_years=2)
