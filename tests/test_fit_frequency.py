"""``fit_rolling(freq=...)``: y and x compounded to weekly / monthly returns on the same
calendar periods, against pandas ``resample(...).apply(lambda r: (1 + r).prod() - 1)`` and
statsmodels' RollingOLS; ``every=``: period-end windows only, equal to the daily fit sampled
there."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.regression.rolling import RollingOLS

import quantfit as qf
from quantfit.errors import FitError

STOCKS = ["AAPL", "AMZN", "XOM", "JPM"]


@pytest.fixture(scope="module")
def rets(sample_prices):
    return sample_prices.pct_change(fill_method=None)


def _rolling_ols(y: pd.DataFrame, x: pd.Series, window: int) -> dict[str, pd.DataFrame]:
    exog = sm.add_constant(x.to_frame("x"))
    out = {"beta": {}, "bse": {}, "r2": {}}
    for a in y.columns:
        res = RollingOLS(y[a], exog, window=window).fit()
        out["beta"][a], out["bse"][a] = res.params["x"], res.bse["x"]
        out["r2"][a] = res.rsquared
    return {k: pd.DataFrame(v) for k, v in out.items()}


def _compare(fit, ref, factor="SPY"):
    beta = fit.coef(factor)
    assert beta.index.equals(ref["beta"].index)
    pd.testing.assert_frame_equal(beta.isna(), ref["beta"].isna())
    np.testing.assert_allclose(beta, ref["beta"], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(fit.stderr(factor), ref["bse"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fit.r2, ref["r2"], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("freq,alias,start,end,window", [
    ("W", "W-FRI", "2013-01-07", "2019-12-27", 104),  # Monday to Friday: no partial week
    ("M", "ME", "2013-02-01", "2019-12-31", 36),       # February 1 2013 is a Friday
])
def test_compounding_matches_pandas_resample(rets, freq, alias, start, end, window):
    daily = rets.loc[start:end]
    y, x = daily[STOCKS], daily["SPY"]
    assert y.notna().all().all() and x.notna().all()

    def resample(frame):
        return frame.resample(alias).apply(lambda r: (1 + r).prod() - 1)

    ry, rx = resample(y), resample(x)
    ry.index.name = rx.index.name = "date"
    ref = _rolling_ols(ry, rx, window)
    fit = qf.fit_rolling(y, x, window, freq=freq)
    assert fit.meta.spec.sampling.freq == freq
    ref = {k: v.set_axis(fit.index, axis=0) for k, v in ref.items()}  # same dates, our dtype
    assert (fit.index == ry.index).all()
    _compare(fit, ref)
    # log returns: the sum over the period
    ly, lx = np.log1p(y), np.log1p(x)
    lfit = qf.fit_rolling(ly, lx, window, freq=freq, kind="log")
    lref = _rolling_ols(ly.resample(alias).sum(), lx.resample(alias).sum(), window)
    _compare(lfit, {k: v.set_axis(lfit.index, axis=0) for k, v in lref.items()})


def test_a_period_with_a_missing_day_is_missing(rets):
    """A week with a missing daily return is NaN for that asset (never compounded from the days
    present): that week is a missing row of its windows."""
    daily = rets.loc["2016-01-04":"2018-12-28", STOCKS + ["SPY"]].copy()
    daily.loc["2017-06-14", "XOM"] = np.nan
    fit = qf.fit_rolling(daily[STOCKS], daily["SPY"], "52W", freq="W")  # min_obs: 52 weeks
    week = pd.Timestamp("2017-06-16")
    holds = (fit.index >= week) & (fit.index < week + pd.Timedelta(weeks=52))
    assert fit.beta["XOM"][holds].isna().all() and fit.nobs["XOM"][holds].eq(51).all()
    assert fit.beta["AAPL"][holds].notna().all()


def test_monthly_factor_files_are_used_as_they_are(rets):
    """Daily stock returns and monthly Ken French-style factors dated on month ends: the stocks
    are compounded, the factors are not (compounding them again would change nothing here, but
    the rule is checked through a frame that is monthly already)."""
    daily = rets.loc["2013-02-01":"2019-12-31"]
    y = daily[STOCKS]
    monthly_x = qf.compound(daily[["SPY"]], "M")  # what factor_model(freq="M") looks like
    a = qf.fit_rolling(y, monthly_x, "36M", freq="M")
    b = qf.fit_rolling(y, daily["SPY"], "36M", freq="M")
    pd.testing.assert_frame_equal(a.beta, b.beta)
    # monthly returns dated on the last trading day are refused, not guessed at
    trading = monthly_x.set_axis(daily["SPY"].groupby(daily.index.to_period("M")).tail(1).index)
    with pytest.raises(FitError, match="one row per month"):
        qf.fit_rolling(y, trading, "36M", freq="M")


def test_frequency_errors_are_one_line(rets):
    daily = rets.loc["2018":"2019"]
    y, x = daily[STOCKS], daily["SPY"]
    for kw, match in [({"freq": "H"}, "freq must be"), ({"every": "D"}, "every must be"),
                      ({"kind": "log"}, "freq is not set"),
                      ({"freq": "M", "every": "W"}, "finer"),
                      ({"freq": "M", "window": "10W", "min_obs": 3}, None)]:
        if match is None:
            qf.fit_rolling(y, x, **kw)  # weeks of lookback on monthly rows: allowed
            continue
        with pytest.raises(FitError, match=match) as err:
            qf.fit_rolling(y, x, 12, **kw)
        assert "\n" not in str(err.value)
    with pytest.raises(FitError, match="DatetimeIndex"):
        qf.fit_rolling(y.reset_index(drop=True), x.reset_index(drop=True), 12, freq="M")


# ----------------------------------------------------------------------------- every=
CONFIGS = {
    "rows": dict(window=252),
    "rows-ragged": dict(window=126, min_obs=100),
    "calendar": dict(window="1Y", min_obs=200),
    "halflife": dict(window=252, halflife=63, min_obs=126),
    "expanding": dict(window=None, expanding=True, min_obs=60),
    "lbfgs": dict(window=126, solver="lbfgs"),
    "dimson": dict(window=126, lags=1),
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("every", ["M", "W", "Q"])
def test_every_equals_the_daily_fit_sampled_at_period_ends(rets, config, every):
    daily = rets.loc["2012":"2019"]
    y = daily[STOCKS + ["META", "GM"]]  # META and GM list mid-sample in this range: ragged
    kw = CONFIGS[config]
    full = qf.fit_rolling(y, daily["SPY"], **kw)
    part = qf.fit_rolling(y, daily["SPY"], every=every, **kw)
    alias = {"M": "M", "W": "W-FRI", "Q": "Q"}[every]
    last = pd.Series(y.index, index=y.index).groupby(y.index.to_period(alias)).max()
    assert part.index.equals(pd.DatetimeIndex(last.values, name=y.index.name))
    sampled = full.sel(dates=list(part.index))
    tol = dict(rtol=1e-6, atol=1e-9) if kw.get("solver") == "lbfgs" else \
        dict(rtol=1e-10, atol=1e-13)
    for term in full.terms:
        np.testing.assert_allclose(part.coef(term), sampled.coef(term), **tol)
        np.testing.assert_allclose(part.stderr(term), sampled.stderr(term), **tol)
    for name in ("r2", "resid_vol"):
        np.testing.assert_allclose(getattr(part, name), getattr(sampled, name), **tol)
    pd.testing.assert_frame_equal(part.nobs, sampled.nobs)
    pd.testing.assert_frame_equal(part.converged, sampled.converged)


def test_every_with_huber_equals_the_daily_fit_sampled(rets):
    daily = rets.loc["2018":"2019"]
    y, x = daily[["AAPL", "XOM"]], daily["SPY"]
    full = qf.fit_rolling(y, x, 60, loss="huber")
    part = qf.fit_rolling(y, x, 60, loss="huber", every="M")
    np.testing.assert_allclose(part.beta, full.beta.loc[part.index], rtol=1e-9, atol=1e-12)


def test_every_with_freq_and_unsorted_input(rets):
    daily = rets.loc["2012":"2019"]
    y, x = daily[STOCKS], daily["SPY"]
    monthly = qf.fit_rolling(y, x, "36M", freq="M")
    same = qf.fit_rolling(y, x, "36M", freq="M", every="M")
    pd.testing.assert_frame_equal(monthly.beta, same.beta, check_freq=False)
    quarterly = qf.fit_rolling(y, x, "36M", freq="M", every="Q")
    assert (quarterly.index.month % 3 == 0).all()
    pd.testing.assert_frame_equal(quarterly.beta, monthly.beta.loc[quarterly.index],
                                  check_freq=False)
    # dates in any order: fitted in date order, the period-end result comes back sorted
    shuffled = y.sample(frac=1.0, random_state=3)
    a = qf.fit_rolling(shuffled, x, 126, every="M")
    b = qf.fit_rolling(y, x, 126, every="M")
    pd.testing.assert_frame_equal(a.beta, b.beta)
