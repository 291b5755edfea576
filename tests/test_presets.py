"""Presets (``quantfit.presets``): each against a regression computed by hand from its published
definition, on the daily sample; explicit options override a preset's; bad names fail in one
line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import quantfit as qf
from quantfit.errors import FitError
from quantfit.spec import WindowSpec

ASSETS = ["AAPL", "XOM", "META"]


@pytest.fixture(scope="module")
def daily(sample_prices):
    r = sample_prices.pct_change(fill_method=None).loc["2009-01-05":"2019-12-27"]
    return r[ASSETS], r["SPY"]


def _compound(s, alias):
    """pandas resample: ∏(1 + r) − 1 per period; a period with a missing day is missing (the
    documented rule, which also keeps the weeks before a listing missing rather than 0)."""
    return s.resample(alias).apply(lambda r: (1 + r).prod() - 1 if r.notna().all() else np.nan)


def _lstsq(y, x, w=None):
    Z = np.c_[np.ones(len(x)), x]
    if w is not None:
        Z, y = Z * np.sqrt(w)[:, None], y * np.sqrt(w)
    return np.linalg.lstsq(Z, y, rcond=None)[0]


def test_bloomberg_is_104_weeks_of_weekly_returns_and_blume(daily):
    y, x = daily
    fit = qf.fit_rolling(y, x, preset="bloomberg")
    assert fit.meta.preset == "bloomberg" and fit.meta.spec.sampling.freq == "W"
    wy, wx = _compound(y, "W-FRI"), _compound(x, "W-FRI")
    assert fit.index.equals(wy.index.rename("date").as_unit(fit.index.unit))
    for t in fit.index[[150, 300, -1]]:
        rows = (wy.index > t - pd.Timedelta(weeks=104)) & (wy.index <= t)
        assert rows.sum() == 104
        for a in ASSETS:
            ok = rows & wy[a].notna().to_numpy()
            if ok.sum() < 52:
                assert np.isnan(fit.beta.loc[t, a])
                continue
            b = _lstsq(wy.loc[ok, a].to_numpy(), wx[ok].to_numpy())[1]
            np.testing.assert_allclose(fit.beta.loc[t, a], b, rtol=1e-9)
            np.testing.assert_allclose(fit.beta_adjusted.loc[t, a], 0.67 * b + 0.33, rtol=1e-9)
    # META lists in May 2012: its first beta needs 52 weekly returns
    first = fit.beta["META"].first_valid_index()
    assert fit.nobs.loc[first, "META"] == 52


def test_monthly60_is_60_months_at_least_24(daily):
    y, x = daily
    fit = qf.fit_rolling(y, x, preset="monthly60")
    my, mx = _compound(y, "ME"), _compound(x, "ME")
    # the data start on 2009-01-05: January 2009 is partial (January 2 is missing) and dropped
    assert fit.index[0] == pd.Timestamp("2009-02-28")
    my, mx = my.loc["2009-02":], mx.loc["2009-02":]
    assert (fit.index.is_month_end).all() and fit.meta.spec.window.min_obs == 24
    for t in fit.index[[30, 80, -1]]:
        rows = (my.index.to_period("M") > t.to_period("M") - 60) & (my.index <= t)
        for a in ASSETS:
            ok = rows & my[a].notna().to_numpy()
            if ok.sum() < 24:
                assert np.isnan(fit.beta.loc[t, a])
                continue
            res = sm.OLS(my.loc[ok, a].to_numpy(), sm.add_constant(mx[ok].to_numpy())).fit()
            np.testing.assert_allclose(fit.beta.loc[t, a], res.params[1], rtol=1e-9)
            np.testing.assert_allclose(fit.pvalue("SPY").loc[t, a], res.pvalues[1], rtol=1e-8)
    assert fit.nobs.loc[fit.beta["META"].first_valid_index(), "META"] == 24


@pytest.mark.parametrize("preset", ["ewma", "welch"])
def test_daily_presets_are_weighted_least_squares(daily, preset):
    y, x = daily
    fit = qf.fit_rolling(y, x, preset=preset)
    h = 63.0 if preset == "ewma" else 126 * np.log(2)
    for i in (400, 1500, len(y) - 1):
        t = y.index[i]
        rows = slice(i - 251, i + 1)
        xx = x.iloc[rows].to_numpy()
        for a in ASSETS:
            yy = y[a].iloc[rows].to_numpy()
            if preset == "welch":  # slope-winsorized: between -2 and 4 times the market
                yy = np.clip(yy, np.minimum(-2 * xx, 4 * xx), np.maximum(-2 * xx, 4 * xx))
            ok = np.isfinite(yy) & np.isfinite(xx)
            if ok.sum() < 126:
                assert np.isnan(fit.beta.loc[t, a])
                continue
            age = np.arange(251, -1, -1)[ok]
            w = 0.5 ** (age / h) if preset == "ewma" else np.exp(-2 * age / 252)
            b = _lstsq(yy[ok], xx[ok], w)[1]
            np.testing.assert_allclose(fit.beta.loc[t, a], b, rtol=1e-9)


def test_explicit_options_override_a_preset(daily):
    y, x = daily
    fit = qf.fit_rolling(y, x, preset="bloomberg", window="52W", min_obs=40)
    s = fit.meta.spec
    assert (s.window.length, s.window.min_obs, s.sampling.freq, s.estimator.adjust) == \
        ("52W", 40, "W", "blume")
    plain = qf.fit_rolling(y, x, preset="bloomberg", adjust=None)
    with pytest.raises(FitError, match="no adjusted beta"):
        _ = plain.beta_adjusted
    ew = qf.fit_rolling(y, x, preset="ewma", every="M", window=126)
    assert ew.meta.spec.window == WindowSpec(126, 126, 63.0)
    assert ew.index.is_unique and len(ew.index) < len(y) / 20
    m = qf.fit_rolling(y, x, preset="monthly60", window=WindowSpec("36M", min_obs=12))
    assert m.meta.spec.window == WindowSpec("36M", 12) and m.meta.spec.sampling.freq == "M"
    explicit_default = qf.fit_rolling(y, x, 252, preset="monthly60")  # 252 rows, given
    assert explicit_default.meta.spec.window.length == 252
    assert qf.fit_rolling(y, x, preset="ewma", halflife=None).meta.spec.window.halflife is None


def test_bad_presets_and_adjustments_fail_in_one_line(daily):
    y, x = daily
    cases = [({"preset": "barra"}, "unknown preset 'barra'; choose one of bloomberg"),
             ({"preset": "bloomberg", "spec": qf.FitSpec()}, "replaces every other option"),
             ({"adjust": "vasicek"}, "adjust must be"),
             ({"adjust": "blume", "x": pd.DataFrame({"SPY": x, "EW": y.mean(axis=1)})},
              "market=")]
    for kw, match in cases:
        xx = kw.pop("x", x)
        with pytest.raises(FitError, match=match) as err:
            qf.fit_rolling(y, xx, **kw)
        assert "\n" not in str(err.value)


def test_blume_with_several_factors_names_the_market(daily):
    y, x = daily
    X = pd.DataFrame({"SPY": x, "EW": y.mean(axis=1)})
    fit = qf.fit_rolling(y, X, 252, adjust="blume", market="SPY")
    pd.testing.assert_frame_equal(fit.beta_adjusted, 0.67 * fit.coef("SPY") + 0.33)
    dimson = qf.fit_rolling(y, x, 252, adjust="blume", lags=1)
    pd.testing.assert_frame_equal(dimson.beta_adjusted, 0.67 * dimson.beta + 0.33)
