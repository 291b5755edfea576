"""newton's fast path (no asset misses a row the factors have: ``engine/shared_ols.py``).

On real sample returns without gaps (``clean_returns``; its RollingOLS comparison is in
test_fit_statsmodels.py) against statsmodels WLS, and against the general path on synthetic
edge cases (singular windows, constant y, exact fits, n = p, no intercept, Dimson lags),
through the engine's public functions (``select_path``, ``rolling_regression(path=...)``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import torch
from conftest import engine_path

import quantfit as qf
from quantfit.engine import RollingSpec, rolling_regression


def test_fast_path_weighted_windows_match_wls(clean_returns):
    y, x = clean_returns
    assert engine_path(y, x["SPY"], 126, 60, halflife=30.0) == "shared"
    fit = qf.fit_rolling(y, x["SPY"], window=126, min_obs=60, halflife=30.0)
    rng = np.random.default_rng(5)
    beta, se, r2 = fit.beta.to_numpy(), fit.stderr("SPY").to_numpy(), fit.r2.to_numpy()
    for t in rng.choice(np.arange(60, len(y)), 40, replace=False):
        lo = max(0, t - 125)
        xs = x["SPY"].iloc[lo:t + 1]
        w = 0.5 ** (np.arange(t - lo, -1, -1) / 30.0)
        ok = xs.notna().to_numpy()
        for a in rng.choice(y.shape[1], 2, replace=False):
            res = sm.WLS(y.iloc[lo:t + 1, a][ok], sm.add_constant(xs[ok]), weights=w[ok]).fit()
            assert beta[t, a] == pytest.approx(res.params.iloc[1], abs=1e-10)
            assert se[t, a] == pytest.approx(res.bse.iloc[1], rel=1e-8)
            assert r2[t, a] == pytest.approx(res.rsquared, abs=1e-10)


def _edge_data() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Synthetic returns with the windows that need care: a factor without variance (rows
    100-159), a constant asset C (rows 200-279), an exact linear fit D, a factor gap."""
    rng = np.random.default_rng(2)
    T = 420
    idx = pd.bdate_range("2020-01-01", periods=T)
    x = pd.DataFrame({"mkt": rng.normal(0, 0.01, T), "f2": rng.normal(0, 0.01, T)}, index=idx)
    x.iloc[100:160, 0] = 0.003
    x.iloc[300:305] = np.nan
    y = pd.DataFrame(rng.normal(0, 0.02, (T, 5)), index=idx, columns=list("ABCDE"))
    y["B"] = 1.2 * x["mkt"] + rng.normal(0, 0.005, T)
    y.iloc[200:280, 2] = 0.001
    y["D"] = 0.0004 + 0.9 * x["mkt"] - 0.3 * x["f2"]
    return y, x


def _run(y: pd.DataFrame, x: pd.DataFrame, path: str, **kw):
    spec = RollingSpec(**kw)
    return rolling_regression(torch.tensor(y.to_numpy().T), torch.tensor(x.to_numpy()), spec,
                              torch.device("cpu"), torch.float64, path=path)


@pytest.mark.parametrize("kw", [
    dict(window=40, min_obs=40),
    dict(window=40, min_obs=3),  # n = p = 3: coefficients, but no SE / resid_vol
    dict(window=None, min_obs=3),
    dict(window=60, min_obs=60, intercept=False),
    dict(window=50, min_obs=50, halflife=10.0),
    dict(window=60, min_obs=60, lags=2),
], ids=["w40", "min_obs=p", "expanding", "no-intercept", "halflife", "dimson"])
def test_fast_path_equals_general_path(kw):
    """The same inputs through both paths give the same numbers, edge windows included."""
    y, x = _edge_data()
    lags = kw.pop("lags", 0)
    if lags:
        x = qf.transforms.dimson_lags(x, lags, "mkt")
        kw["sums"] = ((1, 3, 4),)  # mkt + its two lags (alpha is 0, f2 is 2)
    assert engine_path(y, x, kw["window"], kw["min_obs"]) == "shared"
    fast, general = _run(y, x, "auto", **kw), _run(y, x, "general", **kw)
    P = fast.coef.shape[0]
    pairs = [(f"coef[{i}]", fast.coef[i], general.coef[i]) for i in range(P)]
    pairs += [(f"stderr[{i}]", fast.stderr(i), general.stderr(i)) for i in range(P)]
    pairs += [(n, getattr(fast, n), getattr(general, n))
              for n in ("r2", "resid_vol", "nobs", "converged", "n_iter")]
    for name, a, b in pairs:
        a, b = a.numpy().astype(float), b.numpy().astype(float)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)
    # The edge cases occurred and came out as documented.
    window, intercept = kw["window"], kw.get("intercept", True)
    beta = fast.coef[1 if intercept else 0].numpy()  # mkt
    if window and window <= 60 and intercept:
        assert np.isnan(beta[:, 159]).all()  # mkt constant in the whole window
    if window and window <= 80 and intercept:  # C constant in the whole window: no R²
        assert np.isnan(fast.r2[2, 279].item()) and fast.resid_vol[2, 279].item() <= 1e-15
    if intercept:  # D is an exact linear fit: σ and every SE exactly 0 (to rounding)
        exact = np.isfinite(fast.resid_vol[3].numpy())
        assert exact.sum() > 200 and fast.resid_vol[3].numpy()[exact].max() <= 1e-15
    if kw["min_obs"] == 3:
        at_p = fast.nobs.numpy() == 3
        assert at_p.any() and np.isfinite(beta[at_p]).any()
        assert np.isnan(fast.stderr(1).numpy()[at_p]).all()


def test_shared_flags_cannot_be_written_through(clean_returns):
    y, x = clean_returns
    fit = qf.fit_rolling(y, x["SPY"], window=252)
    frame = fit.nobs
    frame.iloc[300, 0] = -1  # the caller's copy changes, not the fit or the other assets
    assert fit.nobs.iloc[300, 0] == 252 and frame.iloc[300, 1] == 252
    assert (fit.to_frame()["nobs"] == 252).all()


@pytest.mark.parametrize("kw", [dict(window=40, min_obs=40), dict(window=50, min_obs=50, halflife=10.0),
                                dict(window=60, min_obs=60, intercept=False)],
                         ids=["w40", "halflife", "no-intercept"])
def test_assets_listed_or_delisted_mid_sample_take_the_fast_path(kw):
    """Leading and trailing NaN only (the normal case at scale) with min_obs = window: every
    window with an estimate holds the factors' rows, so the shared Gram matrices serve it."""
    y, x = _edge_data()
    y = y.copy()
    y.iloc[:70, 0] = np.nan  # lists late
    y.iloc[350:, 1] = np.nan  # delisted
    y.iloc[:30, 3] = np.nan
    y.iloc[380:, 3] = np.nan
    y["E"] = np.nan  # never traded
    assert engine_path(y, x, kw["window"], kw["min_obs"]) == "shared"
    fast, general = _run(y, x, "auto", **kw), _run(y, x, "general", **kw)
    for name, a, b in [("coef", fast.coef, general.coef), ("stderr", fast.stderr(1), general.stderr(1)),
                       ("r2", fast.r2, general.r2), ("resid_vol", fast.resid_vol, general.resid_vol),
                       ("nobs", fast.nobs, general.nobs), ("converged", fast.converged, general.converged),
                       ("n_iter", fast.n_iter, general.n_iter)]:
        a, b = a.numpy().astype(float), b.numpy().astype(float)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)
    assert np.isnan(fast.coef[0, 0, :70 + kw["window"] - 1].numpy()).all()
    assert np.isfinite(fast.coef[0, 0, 70 + kw["window"] + 10].item())


def test_holes_inside_a_history_or_min_obs_below_the_window_take_the_general_path():
    y, x = _edge_data()
    y = y.copy()
    y.iloc[:70, 0] = np.nan
    assert engine_path(y, x, 40, 30) == "general"  # partial windows would count
    y.iloc[200, 1] = np.nan
    assert engine_path(y, x, 40, 40) == "general"  # a hole inside B's history
