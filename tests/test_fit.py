"""fit_rolling semantics: weighted windows, start-up, NaN windows, precision, chunking, inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import torch

import quantfit as qf
from quantfit.errors import FitError

SOLVERS = ["newton", "gd", "adam", "lbfgs"]


@pytest.fixture(scope="module")
def rets(sample_prices):
    r = sample_prices.pct_change(fill_method=None)
    rng = np.random.default_rng(7)
    y = r.drop(columns="SPY")[["AAPL", "GE", "META", "WMT", "BABA"]]
    y = y.mask(rng.random(y.shape) < 0.01)  # holes
    x = r["SPY"].mask(rng.random(len(r)) < 0.002)
    return y, x


def _direct_wls(y: pd.Series, x: pd.DataFrame, t: int, window, halflife, intercept=True):
    """statsmodels WLS on the valid rows of the window ending at row t (age 0 = row t)."""
    lo = 0 if window is None else max(0, t - window + 1)
    ys, xs = y.iloc[lo : t + 1], x.iloc[lo : t + 1]
    age = np.arange(t - lo, -1, -1, dtype=float)
    w = np.ones_like(age) if halflife is None else 0.5 ** (age / halflife)
    ok = ys.notna().to_numpy() & xs.notna().all(axis=1).to_numpy()
    X = sm.add_constant(xs[ok], has_constant="add") if intercept else xs[ok]
    return sm.WLS(ys[ok], X, weights=w[ok]).fit(), int(ok.sum())


@pytest.mark.parametrize("window,halflife,min_obs", [(126, 30.0, 60), (252, 5.0, 100), (None, 250.0, 40)])
def test_weighted_windows_match_direct_wls(rets, window, halflife, min_obs):
    y, x = rets
    fit = qf.fit_rolling(y, x, window=window, expanding=window is None, halflife=halflife,
                         min_obs=min_obs)
    rng = np.random.default_rng(1)
    checked = 0
    for a in y.columns:
        est = fit.beta[a]
        rows = np.flatnonzero(est.notna().to_numpy())
        picks = np.unique(np.r_[rows[:2], rng.choice(rows, 6, replace=False)])
        for t in picks:
            res, n = _direct_wls(y[a], x.to_frame(), int(t), window, halflife)
            assert fit.nobs[a].iloc[t] == n
            np.testing.assert_allclose([fit.alpha[a].iloc[t], fit.beta[a].iloc[t]], res.params, atol=1e-8)
            np.testing.assert_allclose([fit.stderr("alpha")[a].iloc[t], fit.stderr("SPY")[a].iloc[t]],
                                       res.bse, atol=1e-8)
            np.testing.assert_allclose(fit.r2[a].iloc[t], res.rsquared, atol=1e-8)
            np.testing.assert_allclose(fit.resid_vol[a].iloc[t], np.sqrt(res.scale), atol=1e-10)
            checked += 1
    assert checked >= 30
    # lbfgs on the same weighted objective
    fit_l = qf.fit_rolling(y, x, window=window, expanding=window is None, halflife=halflife,
                           min_obs=min_obs, solver="lbfgs")
    assert (fit_l.beta - fit.beta).abs().max().max() <= 1e-5


def test_halflife_weights_by_age_in_rows_not_valid_rows():
    """A hole still ages the rows behind it: weights are 0.5**(rows since t / h)."""
    idx = pd.RangeIndex(8)
    x = pd.Series([1.0, 2, 3, 4, 5, 6, 7, 9], index=idx, name="f")
    y = pd.Series([1.0, 3, 2, 5, 4, np.nan, 8, 7], index=idx, name="a")
    fit = qf.fit_rolling(y, x, window=8, min_obs=4, halflife=2.0)
    res, n = _direct_wls(y, x.to_frame(), 7, 8, 2.0)
    assert n == 7 and fit.nobs["a"].iloc[7] == 7
    np.testing.assert_allclose(fit.beta["a"].iloc[7], res.params["f"], atol=1e-12)


@pytest.mark.parametrize("solver", SOLVERS)
def test_one_regression_classic_gradient_descent_example(solver):
    """N = 1 asset, one window: y = w·x + b, the textbook gradient-descent example."""
    rng = np.random.default_rng(0)
    x = pd.Series(rng.uniform(-2, 3, 200), name="x")
    y = pd.Series(2.5 * x.to_numpy() - 1.0 + rng.normal(0, 0.3, 200), name="y")
    fit = qf.fit_rolling(y, x, window=200, solver=solver)
    assert fit.beta.shape == (200, 1)
    assert fit.beta["y"].iloc[:-1].isna().all()  # min_obs = window: only the last date
    w, b = np.polyfit(x, y, 1)
    tol = 1e-10 if solver == "newton" else 1e-5
    assert abs(fit.beta["y"].iloc[-1] - w) <= tol
    assert abs(fit.alpha["y"].iloc[-1] - b) <= tol
    assert bool(fit.converged["y"].iloc[-1])
    # noise-free: the exact line
    exact = qf.fit_rolling(2.5 * x - 1.0, x, window=200, solver=solver)
    assert abs(exact.beta.iloc[-1, 0] - 2.5) <= tol and abs(exact.alpha.iloc[-1, 0] + 1.0) <= tol


@pytest.mark.parametrize("solver", SOLVERS)
def test_window_without_factor_variance_is_nan(rets, solver):
    y, x = rets
    x = x.copy()
    x.iloc[3000:3400] = 0.0  # a factor stuck at a constant for 400 rows
    fit = qf.fit_rolling(y, x, window=100, min_obs=80, solver=solver)
    inside = slice(3099, 3400)  # windows entirely within the flat stretch
    for frame in (fit.beta, fit.alpha, fit.stderr("SPY"), fit.tstat("SPY"), fit.r2, fit.resid_vol):
        assert frame.iloc[inside].isna().all().all()
        vals = frame.to_numpy()
        assert not np.isinf(vals).any()
    assert not fit.converged.iloc[inside].any().any()
    assert fit.beta.iloc[3500:].notna().any().all()  # estimates resume after


def test_min_obs_startup_and_default(rets):
    y, x = rets
    full = y[["AAPL"]].iloc[2000:2400].fillna(0.0)  # SPY exists from 1993
    xx = x.iloc[2000:2400].fillna(0.0)
    f = qf.fit_rolling(full, xx, window=100, min_obs=30)
    assert f.beta["AAPL"].first_valid_index() == full.index[29]
    assert list(f.nobs["AAPL"].iloc[:3]) == [1, 2, 3]
    d = qf.fit_rolling(full, xx, window=100)  # min_obs defaults to the window
    assert d.beta["AAPL"].first_valid_index() == full.index[99]
    assert d.settings["min_obs"] == 100


def test_float32_within_1e5_of_float64(rets):
    y, x = rets
    for kw in ({"window": 252}, {"window": 126, "halflife": 40.0, "min_obs": 60},
               {"window": None, "expanding": True, "min_obs": 50}):
        f64 = qf.fit_rolling(y, x, dtype=torch.float64, **kw)
        f32 = qf.fit_rolling(y, x, dtype=torch.float32, **kw)
        pd.testing.assert_frame_equal(f32.beta.isna(), f64.beta.isna())
        assert (f32.beta - f64.beta).abs().max().max() <= 1e-5
        assert (f32.alpha - f64.alpha).abs().max().max() <= 1e-6
        rel_se = ((f32.stderr("SPY") - f64.stderr("SPY")) / f64.stderr("SPY")).abs().max().max()
        assert rel_se <= 1e-4
        assert (f32.r2 - f64.r2).abs().max().max() <= 1e-5


@pytest.mark.parametrize("solver", ["newton", "gd"])
def test_chunking_does_not_change_results(rets, solver):
    y, x = rets
    one = qf.fit_rolling(y, x, window=60, min_obs=40, solver=solver, chunk_size=len(y.columns))
    many = qf.fit_rolling(y, x, window=60, min_obs=40, solver=solver, chunk_size=2)
    for a, b in [(one.beta, many.beta), (one.stderr("alpha"), many.stderr("alpha")),
                 (one.r2, many.r2), (one.nobs, many.nobs), (one.n_iter, many.n_iter)]:
        pd.testing.assert_frame_equal(a, b, rtol=1e-12, atol=1e-14)


def test_series_inputs_and_alignment(rets):
    y, x = rets
    ya = y["AAPL"]
    fit = qf.fit_rolling(ya, x, window=60)
    assert list(fit.beta.columns) == ["AAPL"] and fit.terms == ["alpha", "SPY"]
    # x is aligned to y's index: a shuffled, longer x gives the same fit
    x_shuffled = pd.concat([x, pd.Series([0.5], index=[pd.Timestamp("2030-01-01")])])
    x_shuffled = x_shuffled.sample(frac=1.0, random_state=0).rename("SPY")
    again = qf.fit_rolling(ya, x_shuffled, window=60)
    pd.testing.assert_frame_equal(fit.beta, again.beta)
    # x missing some of y's dates: those rows are missing rows
    short = qf.fit_rolling(ya, x.iloc[::2], window=60, min_obs=20)
    assert short.nobs.max().max() <= 30


def test_no_intercept_matches_statsmodels(rets):
    y, x = rets
    fit = qf.fit_rolling(y, x, window=120, intercept=False, min_obs=100)
    assert fit.terms == ["SPY"]
    with pytest.raises(FitError):
        _ = fit.alpha
    t = 5000
    res, n = _direct_wls(y["GE"], x.to_frame(), t, 120, None, intercept=False)
    np.testing.assert_allclose(fit.beta["GE"].iloc[t], res.params.iloc[0], atol=1e-10)
    np.testing.assert_allclose(fit.stderr("SPY")["GE"].iloc[t], res.bse.iloc[0], atol=1e-10)
    # R² is centred (1 − RSS/Σ(y − ȳ)²) even without an intercept
    yy = y["GE"].iloc[t - 119 : t + 1]
    ok = yy.notna() & x.iloc[t - 119 : t + 1].notna()
    tss = ((yy[ok] - yy[ok].mean()) ** 2).sum()
    np.testing.assert_allclose(fit.r2["GE"].iloc[t], 1 - res.ssr / tss, atol=1e-10)


def test_unconverged_windows_are_reported(rets):
    y, x = rets
    fit = qf.fit_rolling(y, x, window=126, solver="gd", max_iter=2, tol=1e-12)
    est = fit.beta.notna()
    assert est.to_numpy().sum() > 1000
    m = est.to_numpy()
    assert not fit.converged.to_numpy()[m].any()
    assert (fit.n_iter.to_numpy()[m] == 2).all()


@pytest.mark.parametrize("kwargs,match", [
    ({"solver": "sgd"}, "unknown solver"),
    ({"loss": "l1"}, "unknown loss"),
    ({"window": 1}, "shorter than"),
    ({"window": 50, "min_obs": 60}, "min_obs"),
    ({"window": 50, "min_obs": 1}, "min_obs"),
    ({"expanding": True}, "window=None"),
    ({"window": None}, "expanding"),
    ({"window": 2.5}, "integer"),
    ({"halflife": -3}, "halflife"),
    ({"tol": 0}, "tol"),
    ({"max_iter": 0}, "max_iter"),
    ({"dtype": torch.int32}, "dtype"),
    ({"device": "tpu"}, "device"),
    ({"chunk_size": 0}, "chunk_size"),
])
def test_bad_parameters_raise_fit_error(rets, kwargs, match):
    y, x = rets
    kw = {"window": 60} | kwargs
    with pytest.raises(FitError, match=match):
        qf.fit_rolling(y, x, **kw)


def test_bad_inputs_raise_fit_error(rets):
    y, x = rets
    with pytest.raises(FitError, match="DataFrame or Series"):
        qf.fit_rolling(y.to_numpy(), x, window=60)
    with pytest.raises(FitError, match="no dates"):
        qf.fit_rolling(y, pd.Series([1.0, 2.0], name="f"), window=60)
    with pytest.raises(FitError, match="alpha"):
        qf.fit_rolling(y, x.rename("alpha"), window=60)
    with pytest.raises(FitError, match="numbers"):
        qf.fit_rolling(y.assign(AAPL="a"), x, window=60)
    with pytest.raises(FitError, match="duplicate"):
        qf.fit_rolling(y, pd.concat([x, x]), window=60)
    with pytest.raises(FitError, match="empty"):
        qf.fit_rolling(y.iloc[:0], x, window=60)


def test_device_auto_is_cpu_without_cuda(rets):
    y, x = rets
    fit = qf.fit_rolling(y.iloc[:300], x.iloc[:300], window=60)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert fit.settings["device"].startswith(expected)
    assert fit.settings["dtype"] == ("float32" if expected == "cuda" else "float64")


@pytest.mark.gpu
@pytest.mark.parametrize("solver", SOLVERS)
def test_cuda_float32_matches_cpu_float64(rets, solver):
    y, x = rets
    cpu = qf.fit_rolling(y, x, window=252, device="cpu", dtype=torch.float64)
    gpu = qf.fit_rolling(y, x, window=252, device="cuda", solver=solver)
    assert gpu.settings["dtype"] == "float32"
    pd.testing.assert_frame_equal(gpu.beta.isna(), cpu.beta.isna())
    assert (gpu.beta - cpu.beta).abs().max().max() <= 1e-5 if solver == "newton" else 1e-4


@pytest.mark.gpu
def test_cuda_float64_newton_matches_cpu(rets):
    y, x = rets
    cpu = qf.fit_rolling(y, x, window=126, halflife=30.0, device="cpu")
    gpu = qf.fit_rolling(y, x, window=126, halflife=30.0, device="cuda", dtype=torch.float64)
    assert (gpu.beta - cpu.beta).abs().max().max() <= 1e-10
    assert (gpu.stderr("alpha") - cpu.stderr("alpha")).abs().max().max() <= 1e-10
