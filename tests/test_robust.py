"""Issue 4: Huber, priors, Welch winsorizing, Dimson lags, vasicek on a real fit, history.

Every estimate is checked against an independent straightforward computation on the real
sample (daily returns of stocks vs SPY, with NaN holes injected, covering 2008 and 2020):
statsmodels RLM per window for Huber, a per-window numpy solve for the prior, np.clip +
lstsq for Welch, statsmodels OLS with lagged regressors for Dimson, the published formula for
Vasicek.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import quantfit as qf

ASSETS = ["AAPL", "AMD", "JPM", "XOM", "GE", "BAC"]


@pytest.fixture(scope="module")
def data(sample_prices):
    rets = qf.returns(sample_prices).loc["2006":"2021"]
    y = rets[ASSETS].copy()
    rng = np.random.default_rng(7)
    y = y.mask(rng.random(y.shape) < 0.01)  # ~1% holes
    x = rets["SPY"].mask(rng.random(len(rets)) < 0.002)
    return y, x


def _windows(y, x, fit_ok, n, rng, W):
    t_idx, a_idx = np.nonzero(fit_ok)
    pick = rng.choice(len(t_idx), size=min(n, len(t_idx)), replace=False)
    for i in pick:
        t, a = t_idx[i], a_idx[i]
        t0 = max(0, t - W + 1)
        yy, xx = y.iloc[t0:t + 1, a].to_numpy(), x.iloc[t0:t + 1].to_numpy()
        ok = np.isfinite(yy) & np.isfinite(xx)
        yield t, a, yy[ok], xx[ok]


@pytest.fixture(scope="module")
def huber_fit(data):
    y, x = data
    return qf.fit_rolling(y, x, window=252, min_obs=200, loss="huber")


def test_huber_matches_statsmodels_rlm_on_real_windows(data, huber_fit):
    y, x = data
    W = 252
    beta, se = huber_fit.beta.to_numpy(), huber_fit.stderr("SPY").to_numpy()
    alpha = huber_fit.alpha.to_numpy()
    assert huber_fit.converged.to_numpy()[np.isfinite(beta)].all()
    ok = np.isfinite(beta)
    # Include fat-tail windows on purpose: 2008-09..2009-06 and 2020-03..2020-12.
    crisis = y.index.to_series().between("2008-09-01", "2009-06-30") | \
        y.index.to_series().between("2020-03-01", "2020-12-31")
    rng = np.random.default_rng(0)
    checked = 0
    for mask in (ok & crisis.to_numpy()[:, None], ok):
        for t, a, yy, xx in _windows(y, x, mask, 150, rng, W):
            res = sm.RLM(yy, sm.add_constant(xx), M=sm.robust.norms.HuberT(t=1.345)).fit()
            assert abs(res.params[1] - beta[t, a]) < 1e-4
            assert abs(res.params[0] - alpha[t, a]) < 1e-4
            assert se[t, a] == pytest.approx(res.bse[1], rel=1e-3)  # RLM's H1 covariance
            checked += 1
    assert checked == 300
    assert (np.nanmax(np.abs(huber_fit.beta - qf.fit_rolling(y, x, 252, min_obs=200).beta).to_numpy())
            > 0.05)  # it is not OLS


def test_huber_first_order_solvers_reach_the_same_estimator(data, huber_fit):
    y, x = data
    ys, xs = y.iloc[-400:], x.iloc[-400:]
    ref = qf.fit_rolling(ys, xs, 252, min_obs=200, loss="huber")
    for solver in ("gd", "lbfgs"):
        fit = qf.fit_rolling(ys, xs, 252, min_obs=200, loss="huber", solver=solver)
        conv = fit.converged.to_numpy()
        assert conv.sum() >= 0.99 * ref.converged.to_numpy().sum()
        d = np.abs(fit.beta.to_numpy() - ref.beta.to_numpy())[conv]
        assert d.max() < 1e-5


def test_huber_weights_tuning_and_errors(data):
    y, x = data
    ys, xs = y.iloc[-300:], x.iloc[-300:]
    big_t = qf.fit_rolling(ys, xs, 252, min_obs=230, loss="huber", huber_t=1e6)  # ρ quadratic: OLS
    ols = qf.fit_rolling(ys, xs, 252, min_obs=230)
    np.testing.assert_allclose(big_t.beta.to_numpy(), ols.beta.to_numpy(), atol=1e-9, equal_nan=True)
    hl = qf.fit_rolling(ys, xs, 252, min_obs=230, loss="huber", halflife=63)
    assert hl.beta.notna().to_numpy().sum() == ols.beta.notna().to_numpy().sum()
    with pytest.raises(qf.FitError, match="fixed window"):
        qf.fit_rolling(ys, xs, None, expanding=True, loss="huber")
    with pytest.raises(qf.FitError, match="huber_t"):
        qf.fit_rolling(ys, xs, 252, min_obs=230, loss="huber", huber_t=0)
    few = qf.fit_rolling(ys, xs, 252, min_obs=230, loss="huber", max_iter=1, tol=1e-14)
    m = few.nobs.to_numpy() >= 230
    assert (~few.converged.to_numpy()[m]).any()
    assert np.isnan(few.beta.to_numpy()[~few.converged.to_numpy()]).all()  # NaN when not converged


@pytest.mark.parametrize("solver,atol", [("newton", 1e-8), ("gd", 1e-5), ("adam", 1e-5), ("lbfgs", 1e-5)])
def test_prior_matches_the_penalized_normal_equations(data, solver, atol):
    y, x = data
    ys, xs = y.iloc[-320:], x.iloc[-320:]
    lam, b0 = 0.02, pd.Series(np.linspace(0.5, 1.5, len(ASSETS)), index=ASSETS)
    fit = qf.fit_rolling(ys, xs, 252, min_obs=240, prior=b0, prior_strength=lam, solver=solver)
    beta, alpha = fit.beta.to_numpy(), fit.alpha.to_numpy()
    rng = np.random.default_rng(1)
    for t, a, yy, xx in _windows(ys, xs, np.isfinite(beta) & fit.converged.to_numpy(), 60, rng, 252):
        Z = np.c_[np.ones_like(xx), xx]
        P = np.diag([0.0, lam])
        theta = np.linalg.solve(Z.T @ Z + P, Z.T @ yy + P @ [0.0, b0.iloc[a]])
        assert abs(theta[1] - beta[t, a]) < atol and abs(theta[0] - alpha[t, a]) < atol
        if solver == "newton":
            s2 = np.sum((yy - Z @ theta) ** 2) / (len(yy) - 2)
            se = np.sqrt(s2 * np.linalg.inv(Z.T @ Z + P)[1, 1])
            assert fit.stderr("SPY").iloc[t, a] == pytest.approx(se, rel=1e-8)


def test_prior_forms_shrink_and_huber(data):
    y, x = data
    ys, xs = y.iloc[-300:], x.iloc[-300:]
    ols = qf.fit_rolling(ys, xs, 252, min_obs=230).beta
    strong = qf.fit_rolling(ys, xs, 252, min_obs=230, prior=1.0, prior_strength=1e6).beta
    assert np.nanmax(np.abs(strong.to_numpy() - 1.0)) < 1e-3
    by_factor = qf.fit_rolling(ys, xs, 252, min_obs=230, prior={"SPY": 1.0}, prior_strength=0.05).beta
    scalar = qf.fit_rolling(ys, xs, 252, min_obs=230, prior=1.0, prior_strength=0.05).beta
    np.testing.assert_allclose(by_factor.to_numpy(), scalar.to_numpy(), equal_nan=True)
    assert (np.abs(scalar - 1.0) <= np.abs(ols - 1.0) + 1e-12).to_numpy()[ols.notna().to_numpy()].all()
    hub = qf.fit_rolling(ys, xs, 252, min_obs=230, loss="huber", prior=1.0, prior_strength=1e6).beta
    assert np.nanmax(np.abs(hub.to_numpy() - 1.0)) < 1e-3
    with pytest.raises(qf.FitError, match="needs prior="):
        qf.fit_rolling(ys, xs, 252, min_obs=230, prior_strength=1.0)
    with pytest.raises(qf.FitError, match="prior_strength"):
        qf.fit_rolling(ys, xs, 252, min_obs=230, prior=1.0, prior_strength=-1)
    with pytest.raises(qf.FitError, match="lacks assets"):
        qf.fit_rolling(ys, xs, 252, min_obs=230, prior=pd.Series({"AAPL": 1.0, "JPM": 1.2}), prior_strength=1.0)


def test_welch_winsorized_beta_matches_clip_then_lstsq(data):
    y, x = data
    ys, xs = y.loc["2019-06":"2021"], x.loc["2019-06":"2021"]
    fit = qf.fit_rolling(ys, xs, 252, min_obs=240, winsorize="welch")
    beta = fit.beta.to_numpy()
    rng = np.random.default_rng(2)
    for t, a, yy, xx in _windows(ys, xs, np.isfinite(beta), 60, rng, 252):
        lo, hi = np.minimum(-2 * xx, 4 * xx), np.maximum(-2 * xx, 4 * xx)
        coef = np.linalg.lstsq(np.c_[np.ones_like(xx), xx], np.clip(yy, lo, hi), rcond=None)[0]
        assert abs(coef[1] - beta[t, a]) < 1e-10
    hl = qf.fit_rolling(ys, xs, 252, min_obs=230, winsorize="welch", halflife=84)
    assert hl.settings["winsorize"] == "welch" and hl.beta.notna().to_numpy().any()
    with pytest.raises(qf.FitError, match="winsorize"):
        qf.fit_rolling(ys, xs, 252, min_obs=230, winsorize="clip")
    two = pd.DataFrame({"SPY": xs, "other": xs.shift(1)})
    with pytest.raises(qf.FitError, match="market="):
        qf.fit_rolling(ys, two, 252, min_obs=230, winsorize="welch")
    a = qf.fit_rolling(ys, two, 252, min_obs=230, winsorize="welch", market="SPY")
    assert a.terms == ["alpha", "SPY", "other"]


def test_dimson_beta_is_the_summed_coefficient_with_its_standard_error(data):
    y, x = data
    ys, xs = y.loc["2007":"2009"], x.loc["2007":"2009"]
    L = 2
    fit = qf.fit_rolling(ys, xs, 252, min_obs=230, lags=L)
    assert fit.terms == ["alpha", "SPY", "SPY_lag1", "SPY_lag2", "beta_dimson"]
    assert fit.factors == ["SPY", "SPY_lag1", "SPY_lag2"]
    X = pd.DataFrame({"SPY": xs, "l1": xs.shift(1), "l2": xs.shift(2)})
    beta = fit.beta.to_numpy()
    rng = np.random.default_rng(3)
    t_idx, a_idx = np.nonzero(np.isfinite(beta))
    c = np.array([0.0, 1.0, 1.0, 1.0])
    for i in rng.choice(len(t_idx), 60, replace=False):
        t, a = t_idx[i], a_idx[i]
        t0 = max(0, t - 251)
        res = sm.OLS(ys.iloc[t0:t + 1, a], sm.add_constant(X.iloc[t0:t + 1]),
                     missing="drop").fit()
        assert beta[t, a] == pytest.approx(res.params.iloc[1:].sum(), abs=1e-10)
        assert fit.coef("SPY_lag2").iloc[t, a] == pytest.approx(res.params["l2"], abs=1e-10)
        se = np.sqrt(c @ res.cov_params().to_numpy() @ c)
        assert fit.stderr("beta_dimson").iloc[t, a] == pytest.approx(se, rel=1e-8)
    # the huber path reports the same derived term
    hub = qf.fit_rolling(ys.iloc[-300:], xs.iloc[-300:], 252, min_obs=230, loss="huber", lags=1)
    np.testing.assert_allclose(hub.beta.to_numpy(),
                               (hub.coef("SPY") + hub.coef("SPY_lag1")).to_numpy(), equal_nan=True)
    with pytest.raises(qf.FitError, match="lags"):
        qf.fit_rolling(ys, xs, 252, min_obs=230, lags=-1)
    with pytest.raises(qf.FitError, match="lags"):
        qf.fit_rolling(ys, xs, 252, min_obs=230, lags=1.5)


def test_vasicek_on_a_real_rolling_fit(data):
    y, x = data
    fit = qf.fit_rolling(y.loc["2019":"2020"], x.loc["2019":"2020"], 252, min_obs=230)
    adj = qf.adjust.vasicek(fit)
    b, se = fit.beta, fit.stderr("SPY")
    for date in [b.dropna(how="all").index[-1], pd.Timestamp("2020-03-31")]:
        bb, ss = b.loc[date].dropna(), se.loc[date].dropna()
        m, v = bb.mean(), bb.var(ddof=1)
        w = v / (v + ss**2)
        np.testing.assert_allclose(adj.loc[date, bb.index], w * bb + (1 - w) * m, rtol=1e-12)


def test_history_records_the_mean_loss_per_iteration(data):
    y, x = data
    ys, xs = y.iloc[-300:], x.iloc[-300:]
    newton = qf.fit_rolling(ys, xs, 252, min_obs=230, history=True)
    assert newton.history.shape == (1,)
    assert newton.history[0] == pytest.approx(qf.report.mean_window_loss(newton), rel=1e-9)
    assert qf.fit_rolling(ys, xs, 252, min_obs=230).history is None
    for solver in ("gd", "adam", "lbfgs"):
        h = qf.fit_rolling(ys, xs, 252, min_obs=230, solver=solver, history=True).history
        assert h.dtype == np.float64 and h.ndim == 1 and len(h) > 3
        assert h[-1] == pytest.approx(newton.history[0], rel=1e-6)
    hub = qf.fit_rolling(ys, xs, 252, min_obs=230, loss="huber", history=True)
    assert len(hub.history) == hub.n_iter.to_numpy().max() and np.isfinite(hub.history).all()


@pytest.mark.gpu
def test_huber_on_cuda_matches_the_cpu(data):
    y, x = data
    ys, xs = y.iloc[-400:], x.iloc[-400:]
    cpu = qf.fit_rolling(ys, xs, 252, min_obs=200, loss="huber", device="cpu")
    gpu = qf.fit_rolling(ys, xs, 252, min_obs=200, loss="huber", device="cuda")
    both = cpu.converged.to_numpy() & gpu.converged.to_numpy()
    assert both.sum() >= 0.99 * cpu.converged.to_numpy().sum()
    assert np.abs(gpu.beta.to_numpy() - cpu.beta.to_numpy())[both].max() < 1e-4
    rel = np.abs(gpu.stderr("SPY").to_numpy() / cpu.stderr("SPY").to_numpy() - 1)[both]
    assert rel.max() < 1e-3
