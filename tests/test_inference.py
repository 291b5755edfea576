"""Regression statistics formed on access (``quantfit.inference``): p-values, confidence
intervals, adjusted R², total and idiosyncratic volatility, against statsmodels' rolling and
per-window results (``RollingOLS(...).fit(use_t=True)``: ``pvalues``, ``conf_int()``,
``rsquared_adj``; ``WLS``, ``RLM`` and ``t_test`` per window)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.regression.rolling import RollingOLS

import quantfit as qf
from quantfit.errors import FitError

ASSETS = ["AAPL", "GM", "META", "XOM"]


@pytest.fixture(scope="module")
def data(sample_prices):
    r = sample_prices.pct_change(fill_method=None).loc["2010":"2016"]
    y = r[ASSETS].copy()
    rng = np.random.default_rng(42)
    y = y.mask(rng.random(y.shape) < 0.01)
    x = pd.DataFrame({"SPY": r["SPY"], "EW": r.drop(columns="SPY").mean(axis=1)})
    return y, x


@pytest.mark.parametrize("factors,window,min_obs", [(["SPY"], 126, 100), (["SPY", "EW"], 60, 60)])
def test_pvalues_conf_int_r2_adj_match_rolling_ols(data, factors, window, min_obs):
    y, x = data
    x = x[factors]
    fit = qf.fit_rolling(y, x, window, min_obs=min_obs)
    terms = ["alpha"] + factors
    for a in ASSETS:
        # use_t=True: Student t with n − p degrees of freedom, as OLS (RollingOLS's own default,
        # use_t=False, takes the normal distribution for its p-values and intervals)
        res = RollingOLS(y[a], sm.add_constant(x), window=window, min_nobs=min_obs,
                         missing="drop", expanding=True).fit(use_t=True)
        ci = res.conf_int(alpha=0.05)
        ci10 = res.conf_int(alpha=0.10)
        pvalues = pd.DataFrame(np.asarray(res.pvalues), index=y.index, columns=res.params.columns)
        for term, name in zip(terms, ["const"] + factors):
            p = fit.pvalue(term)[a]
            ref = pvalues[name]
            pd.testing.assert_series_equal(p.isna(), ref.isna(), check_names=False)
            np.testing.assert_allclose(p, ref, rtol=1e-8, atol=1e-12)
            lo, hi = fit.conf_int(term)
            np.testing.assert_allclose(lo[a], ci[(name, "lower")], rtol=1e-8, atol=1e-12)
            np.testing.assert_allclose(hi[a], ci[(name, "upper")], rtol=1e-8, atol=1e-12)
            lo, hi = fit.conf_int(term, alpha=0.10)
            np.testing.assert_allclose(lo[a], ci10[(name, "lower")], rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(fit.r2_adj[a], res.rsquared_adj, rtol=1e-8, atol=1e-10)
    assert fit.n_params == len(terms)


def test_weighted_and_robust_windows_match_wls_and_rlm(data):
    y, x = data
    y, x = y.loc["2015":"2016", ["AAPL", "XOM"]], x.loc["2015":"2016", "SPY"]
    wls = qf.fit_rolling(y, x, 120, min_obs=100, halflife=30)
    hub = qf.fit_rolling(y, x, 120, min_obs=100, loss="huber")
    for t in y.index[[150, 300, -1]]:
        rows = slice(y.index.get_loc(t) - 119, y.index.get_loc(t) + 1)
        for a in ("AAPL", "XOM"):
            yy, xx = y[a].iloc[rows], x.iloc[rows]
            ok = yy.notna().to_numpy() & xx.notna().to_numpy()
            age = np.arange(119, -1, -1)[ok]
            Z = sm.add_constant(xx[ok].to_numpy())
            w = sm.WLS(yy[ok].to_numpy(), Z, weights=0.5 ** (age / 30)).fit()
            np.testing.assert_allclose(wls.pvalue("SPY").loc[t, a], w.pvalues[1], rtol=1e-8)
            np.testing.assert_allclose(wls.conf_int("SPY")[0].loc[t, a], w.conf_int()[1, 0],
                                       rtol=1e-8)
            np.testing.assert_allclose(wls.r2_adj.loc[t, a], w.rsquared_adj, rtol=1e-8)
            r = sm.RLM(yy[ok].to_numpy(), Z, M=sm.robust.norms.HuberT(t=1.345)).fit()
            # RLM: normal distribution (its use_t is False)
            np.testing.assert_allclose(hub.pvalue("SPY").loc[t, a], r.pvalues[1], rtol=1e-5)
            np.testing.assert_allclose(hub.conf_int("SPY")[1].loc[t, a], r.conf_int()[1, 1],
                                       rtol=1e-6)


def test_dimson_sum_pvalue_matches_a_t_test(data):
    y, x = data
    y, x = y.loc["2014":"2015", ["AAPL"]], x.loc["2014":"2015", "SPY"]
    fit = qf.fit_rolling(y, x, 100, lags=2)
    t = y.index[-1]
    X = pd.DataFrame({"m": x, "l1": x.shift(1), "l2": x.shift(2)}).iloc[-100:]
    Y = y["AAPL"].iloc[-100:]
    ok = X.notna().all(axis=1) & Y.notna()
    res = sm.OLS(Y[ok], sm.add_constant(X[ok])).fit()
    test = res.t_test("m + l1 + l2 = 0")
    assert fit.n_params == 4
    np.testing.assert_allclose(fit.pvalue("beta_dimson").loc[t, "AAPL"], float(test.pvalue),
                               rtol=1e-8)
    np.testing.assert_allclose(fit.pvalue("SPY_lag1").loc[t, "AAPL"], res.pvalues["l1"],
                               rtol=1e-8)


def test_total_and_idiosyncratic_volatility(data):
    y, x = data
    fit = qf.fit_rolling(y, x["SPY"], 126, min_obs=100)
    wls = qf.fit_rolling(y, x["SPY"], 126, min_obs=100, halflife=40)
    for t in y.index[[200, 900, -1]]:
        i = y.index.get_loc(t)
        for a in ASSETS:
            yy = y[a].iloc[i - 125:i + 1]
            ok = yy.notna().to_numpy() & x["SPY"].iloc[i - 125:i + 1].notna().to_numpy()
            if ok.sum() < 100:
                continue
            v = yy[ok].to_numpy()
            np.testing.assert_allclose(fit.total_vol.loc[t, a], v.std(ddof=1), rtol=1e-9)
            w = 0.5 ** (np.arange(125, -1, -1)[ok] / 40)
            mean = (w * v).sum() / w.sum()
            tss = (w * (v - mean) ** 2).sum()
            np.testing.assert_allclose(wls.total_vol.loc[t, a], np.sqrt(tss / (ok.sum() - 1)),
                                       rtol=1e-9)
    pd.testing.assert_frame_equal(fit.idio_vol, fit.resid_vol)
    # 1 − adjusted R² = σ² / τ²
    np.testing.assert_allclose(1 - fit.r2_adj, fit.resid_vol ** 2 / fit.total_vol ** 2,
                               rtol=1e-9)


def test_degenerate_windows():
    idx = pd.bdate_range("2020-01-01", periods=80)
    rng = np.random.default_rng(0)
    x = pd.Series(rng.normal(size=80), idx, name="m")
    y = pd.DataFrame({"same": x, "flat": 0.01, "noise": rng.normal(size=80)}, index=idx)
    fit = qf.fit_rolling(y, x, 30)
    last = fit.index[-1]
    assert np.isnan(fit.total_vol.loc[last, "same"])  # an exact fit: TSS not recoverable
    assert fit.total_vol.loc[last, "flat"] == 0.0     # a constant y
    assert fit.total_vol.loc[last, "noise"] > 0
    assert fit.pvalue("m").loc[last, "same"] == 0.0
    assert fit.pvalue("m").iloc[:29].isna().all().all()  # no estimate, no p-value


def test_p_value_in_tidy_rows_and_after_a_round_trip(data, tmp_path):
    y, x = data
    fit = qf.fit_rolling(y, x["SPY"], 126, min_obs=100)
    long = fit.to_frame()
    assert "p_value" in long.columns
    one = long[long.term == "SPY"].pivot(index="date", columns="asset", values="p_value")
    ref = fit.pvalue("SPY").loc[one.index, one.columns]
    np.testing.assert_array_equal(one.to_numpy(), ref.to_numpy())
    # a fit rebuilt from its stored columns (no p-values stored) derives the same p-values
    back = qf.RollingFit.from_frame(long.drop(columns=["t_stat", "p_value"]), meta=fit.meta,
                                    index=fit.index, assets=fit.assets)
    np.testing.assert_allclose(back.pvalue("SPY"), fit.pvalue("SPY"), rtol=1e-12)
    np.testing.assert_allclose(back.conf_int("alpha")[0], fit.conf_int("alpha")[0], rtol=1e-12)
    fit.to_parquet(tmp_path / "f.parquet")
    again = qf.RollingFit.read_parquet(tmp_path / "f.parquet")
    pd.testing.assert_frame_equal(again.r2_adj, fit.r2_adj)


def test_bad_alpha(data):
    y, x = data
    fit = qf.fit_rolling(y.iloc[:200], x["SPY"].iloc[:200], 60)
    for bad in (0, 1, -0.1, "0.05", True, float("nan")):
        with pytest.raises(FitError, match="alpha"):
            fit.conf_int("SPY", alpha=bad)
