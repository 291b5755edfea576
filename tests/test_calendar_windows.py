"""Calendar lookbacks (``window="60M"``, ``"2Y"``, ...): the window ending at t holds the rows
dated in (t − lookback, t]. References: statsmodels OLS / WLS / RLM per window over the rows
selected by date, on real data — a Ken French industry excerpt (monthly, 1926–1934, industries
that start mid-sample, months missing) and the daily sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import quantfit as qf
from quantfit.errors import FitError
from quantfit.sampling import lookback_starts

FRENCH = Path(__file__).parent / "fixtures" / "french"


# ----------------------------------------------------------------------------- the rule
@pytest.mark.parametrize("t,lookback,start", [
    ("2024-03-31", "1M", "2024-02-29"),   # clipped to the shorter month, end-of-month
    ("2024-03-30", "1M", "2024-02-29"),   # DateOffset clips too
    ("2024-03-29", "1M", "2024-02-29"),
    ("2024-03-28", "1M", "2024-02-28"),
    ("2024-04-30", "1M", "2024-03-31"),   # end-of-month rule (DateOffset alone: 03-30)
    ("2024-04-29", "1M", "2024-03-29"),
    ("2025-02-28", "12M", "2024-02-29"),  # end-of-month rule (DateOffset alone: 02-28)
    ("2025-02-28", "1Y", "2024-02-29"),   # a year is 12 months
    ("2024-02-29", "1Y", "2023-02-28"),
    ("2024-01-31", "1M", "2023-12-31"),
    ("2024-05-15", "60M", "2019-05-15"),
    ("2024-06-30", "60M", "2019-06-30"),
    ("2024-03-01", "365D", "2023-03-02"),  # 2024 is a leap year
    ("2024-03-01", "2W", "2024-02-16"),
])
def test_lookback_start_rule(t, lookback, start):
    n, unit = int(lookback[:-1]), lookback[-1]
    got = lookback_starts(pd.DatetimeIndex([t]), n, unit)[0]
    assert got == pd.Timestamp(start)


def test_month_end_windows_hold_whole_months():
    """Monthly data dated on month ends: a "12M" window holds exactly 12 rows at every date,
    February of a leap year included (DateOffset arithmetic alone would give 13 at 2025-02-28)."""
    idx = pd.date_range("2019-01-31", "2026-12-31", freq="ME")
    rng = np.random.default_rng(1)
    x = pd.Series(rng.normal(size=len(idx)), idx, name="m")
    y = pd.DataFrame({"a": 0.5 * x + rng.normal(size=len(idx))})
    fit = qf.fit_rolling(y, x, "12M", min_obs=12)
    assert (fit.nobs["a"].iloc[11:] == 12).all() and (fit.nobs["a"].iloc[:11] < 12).all()


# ----------------------------------------------------------------------------- references
def _ols(y, x, weights=None):
    Z = sm.add_constant(x.to_numpy(), has_constant="add")
    if weights is None:
        return sm.OLS(y.to_numpy(), Z).fit()
    return sm.WLS(y.to_numpy(), Z, weights=weights).fit()


def _check_window(fit, a, t, res, factor, tol=1e-8):
    assert fit.nobs.loc[t, a] == res.nobs
    np.testing.assert_allclose(fit.alpha.loc[t, a], res.params[0], rtol=tol, atol=tol)
    np.testing.assert_allclose(fit.coef(factor).loc[t, a], res.params[1], rtol=tol, atol=tol)
    np.testing.assert_allclose(fit.stderr(factor).loc[t, a], res.bse[1], rtol=tol, atol=1e-12)
    np.testing.assert_allclose(fit.r2.loc[t, a], res.rsquared, rtol=tol, atol=1e-10)


@pytest.fixture(scope="module")
def industries():
    """Monthly excess returns of 14 industries (one never reported here, three starting
    mid-sample) and Mkt-RF, 1926-07 to 1934-12, with whole months missing from the data."""
    ind = qf.sources.french(FRENCH / "49_Industry_Portfolios_excerpt.CSV")
    ff = qf.sources.french(FRENCH / "F-F_Research_Data_Factors_1926-1934.CSV")
    y = ind.sub(ff["RF"], axis=0)
    x = ff[["Mkt-RF"]]
    gone = (y.index >= "1930-03-01") & (y.index <= "1930-08-31") | (y.index == "1932-11-30") \
        | (y.index == "1933-06-30")
    return y[~gone], x[~gone]


def test_60_month_windows_on_industries_with_gaps_match_ols_by_date(industries):
    y, x = industries
    fit = qf.fit_rolling(y, x, window="60M", min_obs=24)
    checked = 0
    for t in y.index:
        lo = t.to_period("M") - 59
        rows = (y.index.to_period("M") >= lo) & (y.index <= t)
        for a in y.columns:
            ok = rows & y[a].notna().to_numpy() & x["Mkt-RF"].notna().to_numpy()
            if ok.sum() < 24:
                assert np.isnan(fit.coef("Mkt-RF").loc[t, a]), (t, a)
                continue
            res = _ols(y.loc[ok, a], x.loc[ok])
            _check_window(fit, a, t, res, "Mkt-RF")
            checked += 1
    assert checked > 800
    # the calendar window is not the 60-row window: after the holes they differ
    rows = qf.fit_rolling(y, x, 60, min_obs=24)
    late = y.index >= "1932-01-01"
    assert not np.allclose(rows.beta[late].fillna(0), fit.beta[late].fillna(0))
    assert fit.beta["Soda"].isna().all() and fit.nobs["Soda"].eq(0).all()
    # monthly inputs dated on month ends are used as they are with freq="M" (nothing is
    # compounded twice); there "60M" is 60 rows and min_obs defaults to the full window
    same = qf.fit_rolling(y, x, "60M", min_obs=24, freq="M")
    pd.testing.assert_frame_equal(same.beta, fit.beta.reindex(same.index))
    full = qf.fit_rolling(y, x, "60M", freq="M")
    assert full.meta.spec.window.min_obs == 60
    assert full.nobs.max().max() <= 60


@pytest.fixture(scope="module")
def daily(sample_prices):
    r = sample_prices.pct_change(fill_method=None).loc["2014":"2019"]
    y = r[["AAPL", "XOM", "GM", "META"]].copy()
    rng = np.random.default_rng(7)
    y = y.mask(rng.random(y.shape) < 0.01)
    y.loc["2017-03-01":"2017-03-20", "GM"] = np.nan  # a halt
    return y, r["SPY"]


def _two_years_back(t: pd.Timestamp) -> pd.Timestamp:
    """The window's exclusive start, written independently: a month end goes back to the month
    end two years earlier, any other date by calendar years (clipped to February 28)."""
    if t.is_month_end:
        return (t.to_period("M") - 24).to_timestamp(how="end").normalize()
    return t - pd.DateOffset(years=2)


DATES = ["2016-03-15", "2016-12-30", "2017-02-28", "2017-03-31", "2017-04-28", "2018-02-28",
         "2018-06-29", "2019-02-28", "2019-12-31"]


@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
def test_two_year_daily_windows_match_ols_by_date(daily, solver):
    y, x = daily
    fit = qf.fit_rolling(y, x, "2Y", min_obs=400, solver=solver)
    tol = 1e-8 if solver == "newton" else 1e-5
    for d in DATES:
        t = pd.Timestamp(d)
        rows = (y.index > _two_years_back(t)) & (y.index <= t)
        for a in y.columns:
            ok = rows & y[a].notna().to_numpy() & x.notna().to_numpy()
            if ok.sum() < 400:
                assert np.isnan(fit.beta.loc[t, a])
                continue
            res = _ols(y.loc[ok, a], x[ok])
            if solver == "newton":
                _check_window(fit, a, t, res, "SPY")
            else:
                np.testing.assert_allclose(fit.beta.loc[t, a], res.params[1], atol=tol)


def test_calendar_windows_with_a_halflife_weigh_rows_by_age_in_rows(daily):
    y, x = daily
    fit = qf.fit_rolling(y, x, "1Y", min_obs=200, halflife=40)
    for d in DATES[3:6]:
        t = pd.Timestamp(d)
        start = (t.to_period("M") - 12).to_timestamp(how="end").normalize() if t.is_month_end \
            else t - pd.DateOffset(years=1)
        rows = (y.index > start) & (y.index <= t)
        age = (np.flatnonzero(y.index == t)[0] - np.flatnonzero(rows))  # rows, not days
        for a in y.columns:
            ok = y[a].notna().to_numpy()[rows] & x.notna().to_numpy()[rows]
            res = _ols(y.loc[rows, a][ok], x[rows][ok], weights=0.5 ** (age[ok] / 40))
            _check_window(fit, a, t, res, "SPY")


def test_calendar_windows_with_huber_match_rlm(daily):
    y, x = daily
    y, x = y.loc["2018":"2019"], x.loc["2018":"2019"]
    fit = qf.fit_rolling(y[["AAPL", "GM"]], x, "6M", min_obs=100, loss="huber")
    for d in ("2018-12-31", "2019-05-15", "2019-12-31"):
        t = pd.Timestamp(d)
        start = (t.to_period("M") - 6).to_timestamp(how="end").normalize() if t.is_month_end \
            else t - pd.DateOffset(months=6)
        rows = (y.index > start) & (y.index <= t)
        for a in ("AAPL", "GM"):
            ok = rows & y[a].notna().to_numpy()
            Z = sm.add_constant(x[ok].to_numpy())
            ref = sm.RLM(y.loc[ok, a].to_numpy(), Z, M=sm.robust.norms.HuberT(t=1.345)).fit()
            np.testing.assert_allclose(fit.beta.loc[t, a], ref.params[1], atol=1e-6)
            assert fit.nobs.loc[t, a] == ok.sum()


def test_calendar_windows_need_dates_and_a_row_count():
    y = pd.DataFrame({"a": np.arange(10.0)})
    x = pd.Series(np.arange(10.0) ** 2, name="m")
    with pytest.raises(FitError, match="DatetimeIndex"):
        qf.fit_rolling(y, x, "3M", min_obs=3)
    for bad, match in [({"window": "60X"}, "calendar lookback"), ({"window": "60m"}, "D, W, M"),
                       ({"window": "0M", "min_obs": 2}, "calendar lookback"),
                       ({"window": "2Y"}, "give min_obs"),
                       ({"window": "99999Y", "min_obs": 2}, "four centuries")]:
        with pytest.raises(FitError, match=match) as err:
            qf.fit_rolling(y, x, **bad)
        assert "\n" not in str(err.value)
