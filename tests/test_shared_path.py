"""newton's fast path (no asset misses a row the factors have: ``engine/shared_ols.py``).

On real sample returns without gaps (``clean_returns``; its RollingOLS comparison is in
test_fit_statsmodels.py) against statsmodels WLS, and against the general path on synthetic
edge cases (singular windows, constant y, exact fits, n = p, no intercept, Dimson lags).
The ``fast_calls`` spy proves which path ran.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import quantfit as qf


def test_fast_path_weighted_windows_match_wls(clean_returns, fast_calls):
    y, x = clean_returns
    fit = qf.fit_rolling(y, x["SPY"], window=126, min_obs=60, halflife=30.0)
    assert sum(fast_calls) == y.shape[1]
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


def _close(a: pd.DataFrame, b: pd.DataFrame, what: str, atol: float = 1e-12) -> None:
    pd.testing.assert_frame_equal(a.isna(), b.isna(), obj=what)
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-9, atol=atol,
                               equal_nan=True, err_msg=what)


@pytest.mark.parametrize("kw", [
    dict(window=40),
    dict(window=40, min_obs=3),  # n = p = 3: coefficients, but no SE / resid_vol
    dict(window=None, expanding=True, min_obs=3),
    dict(window=60, intercept=False),
    dict(window=50, halflife=10.0),
    dict(window=60, lags=2, market="mkt"),
], ids=["w40", "min_obs=p", "expanding", "no-intercept", "halflife", "dimson"])
def test_fast_path_equals_general_path(fast_calls, kw):
    y, x = _edge_data()
    fast = qf.fit_rolling(y, x, **kw)
    assert sum(fast_calls) == y.shape[1]
    # One missing return anywhere sends the whole fit down the general path; chunks of one
    # asset keep the other assets' Gram shared there too (the same formulas, other code).
    y_gap = y.assign(gap=y["A"].where(np.arange(len(y)) != 7))
    general = qf.fit_rolling(y_gap, x, chunk_size=1, **kw)
    assert sum(fast_calls) == y.shape[1]
    # Exact fits (D everywhere, C where it is constant) have σ and SE of rounding noise:
    # compared as "both tiny" instead of digit by digit.
    exact = general.resid_vol[y.columns] < 1e-6
    assert exact["D"].sum() > 200 or not kw.get("intercept", True)  # D has an intercept
    for term in fast.terms:
        _close(fast.coef(term), general.coef(term)[y.columns], f"coef({term!r})")
        ours, theirs = fast.stderr(term), general.stderr(term)[y.columns]
        _close(ours.mask(exact), theirs.mask(exact), f"stderr({term!r})")
        assert (ours[exact] < 1e-6).sum().sum() == (theirs[exact] < 1e-6).sum().sum()
    for name in ("r2", "resid_vol", "nobs", "converged", "n_iter"):
        ours, theirs = getattr(fast, name), getattr(general, name)[y.columns]
        if name == "resid_vol":
            assert (ours[exact] < 1e-6).equals(theirs[exact] < 1e-6)
            ours, theirs = ours.mask(exact), theirs.mask(exact)
        _close(ours, theirs, name, atol=1e-10 if name == "r2" else 1e-12)
    # The edge cases occurred and came out as documented.
    window = kw.get("window")
    if window and window <= 60 and kw.get("intercept", True):
        assert fast.coef("mkt").iloc[159].isna().all()  # mkt constant in the whole window
    if window and window <= 80:  # C constant in the whole window: no R² (an exact fit)
        assert np.isnan(fast.r2["C"].iloc[279])
        assert exact["C"].iloc[279] or not kw.get("intercept", True)
    if kw.get("min_obs") == 3:
        at_p = fast.nobs == 3
        assert at_p.to_numpy().any() and fast.coef("mkt")[at_p].notna().to_numpy().any()
        assert fast.stderr("mkt")[at_p].isna().all().all()


def test_shared_flags_are_read_only_rows(clean_returns):
    y, x = clean_returns
    fit = qf.fit_rolling(y, x["SPY"], window=252)
    arr = fit._stats["nobs"]
    assert arr.strides[0] == 0 and not arr.flags.writeable
    frame = fit.nobs
    frame.iloc[300, 0] = -1  # the caller's copy changes, not the fit or the other assets
    assert fit.nobs.iloc[300, 0] == 252 and frame.iloc[300, 1] == 252
    assert (fit.to_frame()["nobs"] == 252).all()
