"""fit_rolling against statsmodels' RollingOLS on the real sample.

Daily stock returns (ragged histories: BABA, GM, GOOG, MA, META, UAA list mid-sample) on SPY,
with NaN holes injected into y and x; one factor and three (SPY, SPY lagged one day, an
equal-weight basket of the stocks). statsmodels' ``missing="drop"`` drops NaN rows inside each
window and, with ``expanding=True`` and ``min_nobs``, starts estimating as soon as ``min_nobs``
rows exist -- the semantics of ``fit_rolling`` -- so its params, bse, rsquared and nobs are the
reference. Comparisons are made where both sides have a value, after checking that the NaN
patterns of the estimates are identical.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from conftest import engine_path
from statsmodels.regression.rolling import RollingOLS

import quantfit as qf

ASSETS = ["AAPL", "AMZN", "BABA", "GM", "GOOG", "META", "UAA", "XOM"]

# (name, factors, window, min_obs, expanding)
CASES = {
    "1f-w252": (["SPY"], 252, 252, False),
    "1f-w126-min40": (["SPY"], 126, 40, False),
    "1f-expanding": (["SPY"], None, 30, True),
    "3f-w252-min200": (["SPY", "SPY_lag1", "EW"], 252, 200, False),
    "3f-expanding": (["SPY", "SPY_lag1", "EW"], None, 60, True),
}


@pytest.fixture(scope="module")
def data(sample_prices):
    rets = sample_prices.pct_change(fill_method=None)
    stocks = rets.drop(columns="SPY")
    factors = pd.DataFrame({
        "SPY": rets["SPY"],
        "SPY_lag1": rets["SPY"].shift(1),
        "EW": stocks.mean(axis=1, skipna=True),
    })
    y = stocks[ASSETS].copy()
    rng = np.random.default_rng(20240601)
    holes = rng.random(y.shape) < 0.004  # ~0.4% random missing returns
    y = y.mask(holes)
    xholes = rng.random(len(factors)) < 0.001
    factors.loc[xholes, "SPY"] = np.nan
    factors.loc[rng.random(len(factors)) < 0.001, "EW"] = np.nan
    return y, factors


def _reference(y: pd.DataFrame, x: pd.DataFrame, window, min_obs, expanding):
    """statsmodels RollingOLS per asset: dict of DataFrames dates × assets."""
    params, bse, r2, nobs, vol = {}, {}, {}, {}, {}
    for a in y.columns:
        exog = sm.add_constant(x, has_constant="add")
        w = len(y) if window is None else window
        res = RollingOLS(y[a], exog, window=w, min_nobs=min_obs, missing="drop",
                         expanding=expanding or min_obs < w).fit()
        params[a], bse[a] = res.params, res.bse
        r2[a], nobs[a] = res.rsquared, pd.Series(res.nobs, index=y.index)
        vol[a] = np.sqrt(res.mse_resid)
    terms = ["const"] + list(x.columns)
    out = {t: pd.DataFrame({a: params[a][t] for a in y.columns}) for t in terms}
    out.update({f"bse_{t}": pd.DataFrame({a: bse[a][t] for a in y.columns}) for t in terms})
    out["r2"] = pd.DataFrame(r2)
    out["nobs"] = pd.DataFrame(nobs)
    out["resid_vol"] = pd.DataFrame(vol)
    return out


@pytest.fixture(scope="module")
def references(data):
    y, factors = data
    return {name: _reference(y, factors[f], w, m, e) for name, (f, w, m, e) in CASES.items()}


def _fit(data, case, **kw):
    y, factors = data
    f, w, m, e = CASES[case]
    return qf.fit_rolling(y, factors[f], window=w, min_obs=m, expanding=e, **kw)


def _assert_close(ours: pd.DataFrame, ref: pd.DataFrame, tol: float, what: str):
    both = ours.notna() & ref.notna()
    diff = (ours - ref).abs()[both].max().max()
    assert both.to_numpy().sum() > 1000, f"{what}: too few overlapping values to compare"
    assert diff <= tol, f"{what}: max abs diff {diff:.3g} > {tol:g}"


@pytest.fixture(scope="module")
def clean_references(clean_returns):
    y, factors = clean_returns
    return {name: _reference(y, factors[f], w, m, e) for name, (f, w, m, e) in CASES.items()}


@pytest.mark.parametrize("rows", ["ragged", "shared"])
@pytest.mark.parametrize("case", list(CASES))
def test_newton_matches_statsmodels(request, case, rows):
    """ragged: the sample with holes (the general path); shared: no asset misses a row
    the factors have (newton's fast path, engine/shared_ols.py)."""
    data, refs = (("data", "references") if rows == "ragged" else
                  ("clean_returns", "clean_references"))
    data, ref = request.getfixturevalue(data), request.getfixturevalue(refs)[case]
    fit = _fit(data, case)
    factors, w, m, _ = CASES[case]
    assert engine_path(data[0], data[1][factors], w, m) == ("general" if rows == "ragged" else "shared")
    for term, sm_term in [("alpha", "const")] + [(f, f) for f in factors]:
        est = fit.coef(term)
        # Same windows have an estimate (statsmodels: NaN params where it has none).
        pd.testing.assert_frame_equal(est.isna(), ref[sm_term].isna(), check_names=False)
        _assert_close(est, ref[sm_term], 1e-8, f"{case} params {term}")
        _assert_close(fit.stderr(term), ref[f"bse_{sm_term}"], 1e-8, f"{case} bse {term}")
    _assert_close(fit.r2, ref["r2"], 1e-8, f"{case} rsquared")
    _assert_close(fit.resid_vol, ref["resid_vol"], 1e-10, f"{case} sqrt(mse_resid)")
    has = ref[factors[0]].notna().to_numpy()
    nobs = fit.nobs.to_numpy()
    np.testing.assert_array_equal(nobs[has], ref["nobs"].to_numpy()[has])
    # Where there is no estimate, every window has fewer than min_obs rows.
    assert (nobs[~has] < CASES[case][2]).all()


def test_nan_holes_are_dropped_only_inside_their_window(data, references):
    """A hole removes one row from the windows that contain it and nothing else."""
    y, factors = data
    fit = qf.fit_rolling(y, factors["SPY"], window=126, min_obs=40)
    valid = (y.notna() & factors["SPY"].notna().to_numpy()[:, None]).astype(int)
    expected = valid.rolling(126, min_periods=1).sum().astype(int)
    pd.testing.assert_frame_equal(fit.nobs.astype(int), expected, check_names=False)


@pytest.mark.parametrize("solver", ["gd", "adam", "lbfgs"])
@pytest.mark.parametrize("case", ["1f-w126-min40", "3f-w252-min200", "3f-expanding"])
def test_first_order_solvers_match_statsmodels(data, references, case, solver):
    """Cold-start first-order solvers reach the statsmodels β within 1e-5 and report it."""
    ref = references[case]
    fit = _fit(data, case, solver=solver)
    factors = CASES[case][0]
    for f in factors:
        pd.testing.assert_frame_equal(fit.coef(f).isna(), ref[f].isna(), check_names=False)
        _assert_close(fit.coef(f), ref[f], 1e-5, f"{case} {solver} beta {f}")
    est = fit.coef(factors[0]).notna()
    assert fit.converged[est].all().all(), f"{solver}: some estimated windows did not converge"
    assert not fit.converged[~est].any().any()
    iters = fit.n_iter.to_numpy()[est.to_numpy()]
    assert iters.min() >= 1 and iters.max() <= {"gd": 1000, "adam": 1000, "lbfgs": 200}[solver]


@pytest.fixture(scope="module")
def listed(sample_prices):
    """Real histories that start (BABA, GM, GOOG, META, UAA) mid-sample, without holes."""
    rets = sample_prices.pct_change(fill_method=None)
    y = rets[ASSETS]
    factors = pd.DataFrame({"SPY": rets["SPY"], "SPY_lag1": rets["SPY"].shift(1),
                            "EW": rets.drop(columns="SPY").mean(axis=1, skipna=True)})
    return y, factors


@pytest.mark.parametrize("factors", [["SPY"], ["SPY", "SPY_lag1", "EW"]], ids=["1f", "3f"])
def test_newton_on_histories_listed_mid_sample_matches_statsmodels(listed, factors):
    """Leading NaN only and min_obs = window: newton's fast path with per-asset runs."""
    y, x = listed
    assert engine_path(y, x[factors], 252, 252) == "shared"
    fit = qf.fit_rolling(y, x[factors], window=252)
    ref = _reference(y, x[factors], 252, 252, False)
    for term, sm_term in [("alpha", "const")] + [(f, f) for f in factors]:
        pd.testing.assert_frame_equal(fit.coef(term).isna(), ref[sm_term].isna(), check_names=False)
        _assert_close(fit.coef(term), ref[sm_term], 1e-8, f"params {term}")
        _assert_close(fit.stderr(term), ref[f"bse_{sm_term}"], 1e-8, f"bse {term}")
    _assert_close(fit.r2, ref["r2"], 1e-8, "rsquared")
    _assert_close(fit.resid_vol, ref["resid_vol"], 1e-10, "sqrt(mse_resid)")
    has = ref[factors[0]].notna().to_numpy()
    np.testing.assert_array_equal(fit.nobs.to_numpy()[has], ref["nobs"].to_numpy()[has])
    assert (fit.converged.to_numpy() == has).all()
