"""Numbers that stay right where fits are hard (issue 14, part 1).

References nobody here wrote: exact rational arithmetic (``fractions``) for near-perfect fits in
the spirit of zipline's ``test_regression_of_returns_factor``; numpy least squares on each
window's rows; and, for a bad tick, the fit on the same data with that row missing — every
window that does not contain the row must equal it.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

import quantfit as qf

T, W = 400, 60
BAD = 100  # the row of the bad tick
OUTSIDE = (np.arange(T) < BAD) | (np.arange(T) >= BAD + W)  # windows without row BAD


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    idx = pd.bdate_range("2020-01-01", periods=T)
    x = pd.Series(rng.normal(3e-4, 0.01, T), index=idx, name="mkt")
    y = pd.DataFrame(rng.normal(0, 0.02, (T, 4)) + np.outer(x, [0.5, 1.0, 1.5, 2.0]),
                     index=idx, columns=list("ABCD"))
    return y, x


def _close(got: qf.RollingFit, ref: qf.RollingFit, rows: np.ndarray, rel: float) -> None:
    """Same NaN pattern and, where there are numbers, |Δ| ≤ rel·max(|ref|, SE) for every
    coefficient (alpha is small next to its SE), rel on SE and σ, rel absolute on R²."""
    for term in ref.terms:
        a, b = got.coef(term).to_numpy()[rows], ref.coef(term).to_numpy()[rows]
        se = ref.stderr(term).to_numpy()[rows]
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=term)
        ok = np.isfinite(b)
        assert ok.sum() > 100
        assert (np.abs(a - b)[ok] <= rel * np.maximum(np.abs(b), se)[ok]).all(), term
        s1, s2 = got.stderr(term).to_numpy()[rows], se
        np.testing.assert_allclose(s1[ok], s2[ok], rtol=rel, err_msg=f"stderr {term}")
    for name in ("resid_vol", "r2"):
        a, b = getattr(got, name).to_numpy()[rows], getattr(ref, name).to_numpy()[rows]
        ok = np.isfinite(b)
        kw = {"rtol": rel} if name == "resid_vol" else {"atol": rel}
        np.testing.assert_allclose(a[ok], b[ok], err_msg=name, **kw)
    np.testing.assert_array_equal(got.converged.to_numpy()[rows], ref.converged.to_numpy()[rows])


def _converged_windows_are_right(fit: qf.RollingFit, y: pd.DataFrame, x: pd.Series,
                                 rel: float, halflife: float | None = None) -> int:
    """Every converged window agrees with numpy least squares on its rows (bad tick included)."""
    conv = fit.converged.to_numpy()
    alpha, beta = fit.alpha.to_numpy(), fit.beta.to_numpy()
    se_a, se_b = fit.stderr("alpha").to_numpy(), fit.stderr(fit.terms[1]).to_numpy()
    w = np.ones(W) if halflife is None else 0.5 ** (np.arange(W - 1, -1, -1) / halflife)
    checked = 0
    for t in range(BAD - 5, BAD + W + 5):
        for a in range(y.shape[1]):
            if not conv[t, a]:
                continue
            ys, xs = y.iloc[t - W + 1:t + 1, a].to_numpy(), x.iloc[t - W + 1:t + 1].to_numpy()
            sw = np.sqrt(w)
            theta = np.linalg.lstsq(np.c_[sw, sw * xs], sw * ys, rcond=None)[0]
            got = np.array([alpha[t, a], beta[t, a]])
            scale = np.maximum(np.abs(theta), [se_a[t, a], se_b[t, a]])
            assert (np.abs(got - theta) <= rel * scale).all(), (t, a, got, theta)
            checked += 1
    return checked


# ---------------------------------------------------------------------------- bad ticks
@pytest.mark.parametrize("value", [1e4, 1e8, 1e155])
@pytest.mark.parametrize("kw,rel", [({}, 1e-8), ({"halflife": 20.0}, 1e-8),
                                    ({"dtype": "float32"}, 1e-5)],
                         ids=["f64", "halflife", "f32"])
def test_a_bad_tick_in_y_only_affects_the_windows_that_contain_it(data, value, kw, rel):
    y, x = data
    bad, gone = y.copy(), y.copy()
    bad.iloc[BAD, 1], gone.iloc[BAD, 1] = value, np.nan
    fit = qf.fit_rolling(bad, x, W, **kw)
    _close(fit, qf.fit_rolling(gone, x, W, **kw), OUTSIDE, rel)
    for frame in (fit.beta, fit.stderr("mkt"), fit.r2, fit.resid_vol):
        assert not np.isinf(frame.to_numpy()).any()
    if value < 1e150:  # sums of squares still representable: an ordinary (leveraged) fit
        assert _converged_windows_are_right(fit, bad, x, 1e-8 if rel == 1e-8 else 1e-5,
                                            kw.get("halflife")) > 200
    else:  # y² overflows: no estimate in the windows with the tick, never a wrong one
        inside = ~OUTSIDE
        assert not fit.converged.to_numpy()[inside, 1].any()
        assert np.isnan(fit.beta.to_numpy()[inside, 1]).all()
        assert fit.converged.to_numpy()[inside][:, [0, 2, 3]].all()


@pytest.mark.parametrize("value", [1e6, -99.99, 1e155])
@pytest.mark.parametrize("kw,rel", [({}, 1e-8), ({"halflife": 20.0}, 1e-8),
                                    ({"dtype": "float32"}, 1e-5), ({"solver": "gd"}, 1e-5),
                                    ({"solver": "adam"}, 1e-4), ({"solver": "lbfgs"}, 1e-5)],
                         ids=["f64", "halflife", "f32", "gd", "adam", "lbfgs"])
def test_a_bad_factor_row_only_affects_the_windows_that_contain_it(data, value, kw, rel):
    """x = −99.99 is the Ken French missing-value code; float32 is the default on a GPU.
    Iterative solvers agree to their tolerance (the working units move by rounding)."""
    y, x = data
    bad, gone = x.copy(), x.copy()
    bad.iloc[BAD], gone.iloc[BAD] = value, np.nan
    fit = qf.fit_rolling(y, bad, W, **kw)
    _close(fit, qf.fit_rolling(y, gone, W, **kw), OUTSIDE, rel)
    if value < 1e150:
        exact = "solver" not in kw and "dtype" not in kw
        assert _converged_windows_are_right(fit, y, bad, 1e-8 if exact else 1e-5,
                                            kw.get("halflife")) > 200
    else:  # x² overflows: no estimate where the row is, for any solver
        assert not fit.converged.to_numpy()[~OUTSIDE].any()
        assert np.isnan(fit.beta.to_numpy()[~OUTSIDE]).all()


# ---------------------------------------------------------------------------- scale
@pytest.mark.parametrize("ys,xs,kw", [
    (1.0, 1e-155, {}), (1.0, 1e-160, {"solver": "gd"}), (1e-300, 1.0, {"dtype": "float32"}),
    (1e40, 1.0, {"dtype": "float32"}), (1e200, 1.0, {}), (1.0, 1e250, {}),
    (1e-300, 1e-150, {"solver": "lbfgs"}),
], ids=["x*1e-155", "gd-x*1e-160", "f32-y*1e-300", "f32-y*1e40", "y*1e200", "x*1e250", "lbfgs"])
def test_results_do_not_depend_on_the_units_of_y_or_x(data, ys, xs, kw):
    y, x = data
    ref = qf.fit_rolling(y, x, W, **kw)
    fit = qf.fit_rolling(y * ys, x * xs, W, **kw)
    rel = 1e-12 if not kw else 1e-5
    for frame in (fit.beta, fit.alpha, fit.stderr("mkt"), fit.tstat("mkt"), fit.r2, fit.resid_vol):
        assert not np.isinf(frame.to_numpy()).any()
    pd.testing.assert_frame_equal(fit.beta.isna(), ref.beta.isna())
    ok = ref.beta.notna().to_numpy()
    for got, want in [(fit.beta * xs / ys, ref.beta), (fit.alpha / ys, ref.alpha),
                      (fit.stderr("mkt") * xs / ys, ref.stderr("mkt")),
                      (fit.resid_vol / ys, ref.resid_vol)]:
        g, w = got.to_numpy()[ok], want.to_numpy()[ok]
        assert (np.abs(g - w) <= rel * np.maximum(np.abs(w), ref.stderr("mkt").to_numpy()[ok])).all()
    np.testing.assert_allclose(fit.r2.to_numpy()[ok], ref.r2.to_numpy()[ok], atol=1e-6 if kw else 1e-12)


def test_factors_beyond_1e155_do_not_crash_the_iterative_solvers(data):
    y, x = data
    huge = x.copy()
    huge.iloc[BAD] = 3e155
    ref = qf.fit_rolling(y, x.where(np.arange(T) != BAD), W)
    for solver in ("gd", "adam", "lbfgs"):
        fit = qf.fit_rolling(y, huge, W, solver=solver)
        assert not fit.converged.to_numpy()[~OUTSIDE].any()
        d = np.abs(fit.beta.to_numpy() - ref.beta.to_numpy())[OUTSIDE]
        assert np.nanmax(d) < 1e-5


# ---------------------------------------------------------------------------- near-perfect fits
def _exact_fit(Y: list[Fraction], X: list[Fraction]) -> dict[str, float]:
    n = len(X)
    mx, my = sum(X) / n, sum(Y) / n
    sxx = sum((a - mx) ** 2 for a in X)
    sxy = sum((a - mx) * (b - my) for a, b in zip(X, Y))
    syy = sum((b - my) ** 2 for b in Y)
    beta = sxy / sxx
    rss = syy - beta * sxy
    s2 = rss / (n - 2)
    return {"beta": float(beta), "alpha": float(my - beta * mx), "se": float(s2 / sxx) ** 0.5,
            "vol": float(s2) ** 0.5, "r2": float(1 - rss / syy) if syy else float("nan")}


@pytest.mark.parametrize("returns_length", [2, 3])
@pytest.mark.parametrize("window", [3, 4])
@pytest.mark.parametrize("path", ["shared", "ragged"])
def test_near_perfect_fits_match_exact_arithmetic(returns_length, window, path):
    """zipline's case: closes of three assets are arange(3·T).reshape(T, 3); each asset's
    returns over ``returns_length`` rows are regressed on asset A's over ``window`` rows —
    fits with R² within 1e-6 of 1, and A on itself (SE 0, R² 1). Exact rational arithmetic
    is the reference: stderr, resid_vol and R² to 1e-10 absolute, R² in [0, 1]."""
    n = 24
    dates = pd.bdate_range("2015-02-02", periods=n)
    prices = pd.DataFrame(np.arange(3 * n, dtype=float).reshape(n, 3), index=dates,
                          columns=["A", "B", "C"])
    rets = prices.pct_change(returns_length - 1, fill_method=None).iloc[1:]
    if path == "ragged":  # an asset with a hole sends the fit down the general path
        rets = rets.assign(D=rets["C"].where(np.arange(len(rets)) != 12))
    fit = qf.fit_rolling(rets, rets["A"], window)
    r2 = fit.r2.to_numpy()
    assert np.nanmin(r2) >= 0.0 and np.nanmax(r2) <= 1.0
    checked = 0
    for t in range(len(rets)):
        lo = t - window + 1  # rets row r is the return into price row r + 1
        if lo < 0 or lo + 1 - (returns_length - 1) < 1:  # before A's first non-zero close
            continue
        rows = range(lo + 1, t + 2)  # price rows whose returns are in the window
        X = [Fraction(3 * i) / Fraction(3 * (i - returns_length + 1)) - 1 for i in rows]
        for j, col in enumerate(["A", "B", "C"]):
            Y = [Fraction(3 * i + j) / Fraction(3 * (i - returns_length + 1) + j) - 1 for i in rows]
            ref = _exact_fit(Y, X)
            assert fit.beta[col].iloc[t] == pytest.approx(ref["beta"], abs=1e-10)
            assert abs(fit.stderr("A")[col].iloc[t] - ref["se"]) <= 1e-10
            assert abs(fit.resid_vol[col].iloc[t] - ref["vol"]) <= 1e-10
            if window > 2 and not np.isnan(ref["r2"]):
                assert abs(fit.r2[col].iloc[t] - ref["r2"]) <= 1e-10
            checked += 1
    assert checked >= 40
    assert np.nanmax(fit.stderr("A")["A"].to_numpy()) == 0.0  # A on itself: exactly 0


@pytest.mark.parametrize("kw", [{}, {"halflife": 30.0}, {"dtype": "float32"}, {"solver": "lbfgs"}])
def test_an_asset_on_itself_and_exact_lines(data, kw):
    """y = x and y = 0.3 + 2x: σ and SE are 0 (to 1e-10), R² is 1; a tiny residual of 1e-9
    is measured, not lost in the cancellation of yy − θ·zy."""
    y, x = data
    rng = np.random.default_rng(3)
    noise = 1e-9 * rng.normal(size=T)
    yy = pd.DataFrame({"self": x, "line": 0.3 + 2 * x, "tiny": x + noise}, index=x.index)
    fit = qf.fit_rolling(yy, x, W, **kw)
    # newton in float64 is exact to 1e-10; float32 refits these windows in float64 from their
    # rows; an iterative solver's θ is only as good as its tol (σ measures that θ's residuals).
    tol = 1e-8 if "solver" in kw else 1e-9 if "dtype" in kw else 1e-10
    for col in ("self", "line"):
        assert np.nanmax(fit.resid_vol[col].to_numpy()) <= tol
        assert np.nanmax(fit.stderr("mkt")[col].to_numpy()) <= tol
        assert np.nanmin(fit.r2[col].to_numpy()) >= 1.0 - 1e-10
    assert np.nanmax(fit.r2.to_numpy()) <= 1.0
    if kw.get("dtype") != "float32" and "solver" not in kw:
        t = T - 1
        xs, ys = x.iloc[t - W + 1:].to_numpy(), yy["tiny"].iloc[t - W + 1:].to_numpy()
        w = np.ones(W) if not kw else 0.5 ** (np.arange(W - 1, -1, -1) / kw["halflife"])
        Z = np.c_[np.ones(W), xs] * np.sqrt(w)[:, None]
        theta, *_ = np.linalg.lstsq(Z, ys * np.sqrt(w), rcond=None)
        r = ys - np.c_[np.ones(W), xs] @ theta
        vol = np.sqrt((w * r * r).sum() / (W - 2))
        assert fit.resid_vol["tiny"].iloc[t] == pytest.approx(vol, rel=1e-6)


def test_a_constant_y_has_no_r2_and_zero_vol(data):
    y, x = data
    yy = pd.DataFrame({"flat": np.full(T, 0.001), "big": np.full(T, 1e8)}, index=x.index)
    fit = qf.fit_rolling(yy, x, W)
    assert fit.r2.isna().all().all()
    est = fit.beta.notna()
    assert est.to_numpy().sum() > 600
    assert (fit.resid_vol.to_numpy()[est.to_numpy()] <= 1e-10).all()
    assert (fit.beta.abs().to_numpy()[est.to_numpy()] <= 1e-6).all()


# ---------------------------------------------------------------------------- on a GPU
@pytest.mark.gpu
@pytest.mark.parametrize("solver", ["newton", "adam"])
def test_bad_ticks_and_units_on_cuda_float32(data, solver):
    """float32 is the default on a GPU: a −99.99 factor row and a 1e8 return stay in their
    windows, and y in units of 1e40 gives the same betas."""
    y, x = data
    kw = {"device": "cuda", "solver": solver}
    bad, gone = x.copy(), x.copy()
    bad.iloc[BAD], gone.iloc[BAD] = -99.99, np.nan
    _close(qf.fit_rolling(y, bad, W, **kw), qf.fit_rolling(y, gone, W, **kw), OUTSIDE,
           1e-5 if solver == "newton" else 1e-4)
    ybad = y.copy()
    ybad.iloc[BAD, 1] = 1e8
    yok = y.copy()
    yok.iloc[BAD, 1] = np.nan
    _close(qf.fit_rolling(ybad, x, W, **kw), qf.fit_rolling(yok, x, W, **kw), OUTSIDE,
           1e-5 if solver == "newton" else 1e-4)
    big = qf.fit_rolling(y * 1e40, x, W, **kw)
    ref = qf.fit_rolling(y, x, W, device="cpu")
    ok = ref.beta.notna().to_numpy()
    assert np.abs(big.beta.to_numpy()[ok] * 1e-40 - ref.beta.to_numpy()[ok]).max() < 1e-4
    assert not np.isinf(big.stderr("mkt").to_numpy()).any()


@pytest.mark.gpu
def test_near_perfect_fits_on_cuda(data):
    y, x = data
    yy = pd.DataFrame({"self": x, "line": 0.3 + 2 * x}, index=x.index)
    fit = qf.fit_rolling(yy, x, W, device="cuda")
    assert np.nanmax(fit.resid_vol.to_numpy()) <= 1e-9
    assert np.nanmax(fit.stderr("mkt").to_numpy()) <= 1e-9
    assert np.nanmin(fit.r2.to_numpy()) >= 1 - 1e-9
