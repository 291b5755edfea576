"""RollingFit: accessors, the tidy long frame and the parquet round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import quantfit as qf
from quantfit.errors import FitError


@pytest.fixture(scope="module")
def rets(sample_prices):
    return sample_prices.pct_change(fill_method=None)


@pytest.fixture(scope="module")
def fit3(rets):
    x = pd.DataFrame({"SPY": rets["SPY"], "LAG": rets["SPY"].shift(1)})
    return qf.fit_rolling(rets[["AAPL", "META", "XOM"]], x, window=60, min_obs=40, solver="lbfgs")


def test_accessors_shapes_and_errors(fit3, rets):
    assert fit3.terms == ["alpha", "SPY", "LAG"] and fit3.factors == ["SPY", "LAG"]
    for frame in (fit3.coef("SPY"), fit3.stderr("alpha"), fit3.tstat("LAG"), fit3.r2,
                  fit3.resid_vol, fit3.nobs, fit3.converged, fit3.n_iter):
        assert frame.shape == (len(rets), 3)
        assert frame.index.equals(rets.index) and list(frame.columns) == ["AAPL", "META", "XOM"]
    with pytest.raises(FitError, match="exactly one factor"):
        _ = fit3.beta
    with pytest.raises(FitError, match="unknown term"):
        fit3.coef("MKT")
    pd.testing.assert_frame_equal(fit3.tstat("SPY"), fit3.coef("SPY") / fit3.stderr("SPY"))
    assert "RollingFit" in repr(fit3) and "lbfgs" in repr(fit3)


def test_returned_frames_do_not_write_through(fit3):
    before = fit3.coef("SPY").copy()
    got = fit3.coef("SPY")
    got.iloc[:, 0] = 123.0
    got["META"] *= 2
    pd.testing.assert_frame_equal(fit3.coef("SPY"), before)


def test_to_frame_is_tidy_and_consistent(fit3):
    long = fit3.to_frame()
    assert list(long.columns) == ["date", "asset", "term", "estimate", "std_error", "t_stat",
                                  "p_value", "r2", "resid_vol", "nobs", "converged", "n_iter"]
    assert long["estimate"].notna().all()
    n_est = fit3.coef("SPY").notna().to_numpy().sum()
    assert len(long) == 3 * n_est
    # sorted by date, asset, term (terms in fit order)
    assert long["date"].is_monotonic_increasing
    assert list(long["term"].iloc[:3]) == ["alpha", "SPY", "LAG"]
    wide = long.pivot_table(index="date", columns="asset", values="estimate",
                            aggfunc="first").reindex(columns=["AAPL", "META", "XOM"])
    one = long[long["term"] == "SPY"].pivot(index="date", columns="asset", values="estimate")
    ref = fit3.coef("SPY").loc[one.index, one.columns]
    np.testing.assert_array_equal(one.to_numpy(), ref.to_numpy())
    row = long.iloc[4]
    d, a, t = row["date"], row["asset"], row["term"]
    assert row["std_error"] == fit3.stderr(t).loc[d, a]
    assert row["nobs"] == fit3.nobs.loc[d, a] and row["r2"] == fit3.r2.loc[d, a]
    assert np.isclose(row["t_stat"], row["estimate"] / row["std_error"])
    assert row["p_value"] == fit3.pvalue(t).loc[d, a]
    assert len(wide) == long["date"].nunique()
    everything = fit3.to_frame(dropna=False)
    assert len(everything) > len(long) and everything["estimate"].isna().any()


def _assert_same_fit(a: qf.RollingFit, b: qf.RollingFit):
    assert a.terms == b.terms and a.settings == b.settings
    assert a.index.equals(b.index) and a.assets.equals(b.assets)
    for t in a.terms:
        pd.testing.assert_frame_equal(a.coef(t), b.coef(t))
        pd.testing.assert_frame_equal(a.stderr(t), b.stderr(t))
    for k in ("r2", "resid_vol", "nobs", "converged", "n_iter"):
        pd.testing.assert_frame_equal(getattr(a, k), getattr(b, k))


def test_parquet_round_trip(fit3, tmp_path):
    path = tmp_path / "fit.parquet"
    fit3.to_parquet(path)
    back = qf.RollingFit.read_parquet(path)
    _assert_same_fit(fit3, back)
    # the file is an ordinary tidy parquet table for other tools
    table = pq.read_table(path)
    assert {"date", "asset", "term", "estimate", "std_error", "t_stat"} <= set(table.column_names)


def test_parquet_round_trip_other_indexes(rets, tmp_path):
    y = rets["GE"].iloc[2000:2600].reset_index(drop=True)
    x = rets["SPY"].iloc[2000:2600].reset_index(drop=True)
    fit = qf.fit_rolling(y, x, window=50, halflife=20.0)
    fit.to_parquet(tmp_path / "a.parquet")
    _assert_same_fit(fit, qf.RollingFit.read_parquet(tmp_path / "a.parquet"))
    tz = rets[["GE"]].iloc[2000:2300].tz_localize("America/New_York")
    fit_tz = qf.fit_rolling(tz, rets["SPY"].iloc[2000:2300].tz_localize("America/New_York"),
                            window=None, expanding=True)
    fit_tz.to_parquet(tmp_path / "b.parquet")
    _assert_same_fit(fit_tz, qf.RollingFit.read_parquet(tmp_path / "b.parquet"))


def test_read_parquet_rejects_foreign_files(tmp_path):
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "other.parquet")
    with pytest.raises(FitError, match="not a quantfit"):
        qf.RollingFit.read_parquet(tmp_path / "other.parquet")


# ---------------------------------------------------------------------------- issue 14
@pytest.fixture(scope="module")
def small(rets):
    return rets[["AAPL", "XOM", "GE"]].loc["2018":"2019"], rets["SPY"].loc["2018":"2019"]


@pytest.mark.parametrize("make", [
    lambda y, x: (y.set_axis([10, 20, 30], axis=1), x),
    lambda y, x: (y.set_axis(y.index.to_period("D")), x.set_axis(y.index.to_period("D"))),
    lambda y, x: (y.reset_index(drop=True), x.reset_index(drop=True)),
    lambda y, x: (y.tz_localize("Asia/Tokyo"), x.tz_localize("Asia/Tokyo")),
], ids=["int-assets", "period-dates", "range-dates", "tz-dates"])
def test_parquet_round_trips_other_labels_exactly(small, tmp_path, make):
    y, x = make(*small)
    fit = qf.fit_rolling(y, x, 60, lags=1)
    fit.to_parquet(tmp_path / "f.parquet")
    back = qf.RollingFit.read_parquet(tmp_path / "f.parquet")
    _assert_same_fit(fit, back)
    assert back.index.dtype == fit.index.dtype and back.assets.dtype == fit.assets.dtype
    assert back.meta == fit.meta and back.beta.equals(fit.beta)


@pytest.mark.parametrize("make,match", [
    (lambda y, x: (y.set_axis(["A", "A", "B"], axis=1), x), "unique"),
    (lambda y, x: (y.set_axis([1, "b", "c"], axis=1), x), "mix numbers and strings"),
    (lambda y, x: (y.set_axis([("a", 1), ("b", 2), ("c", 3)], axis=1), x), "tuples"),
    (lambda y, x: (y.set_axis(pd.MultiIndex.from_tuples([("a", 1), ("b", 2), ("c", 3)]), axis=1), x),
     "MultiIndex"),
    (lambda y, x: (y.set_axis(pd.MultiIndex.from_arrays([y.index.year, y.index.day_of_year])),
                   x.set_axis(pd.MultiIndex.from_arrays([y.index.year, y.index.day_of_year]))),
     "MultiIndex"),
], ids=["duplicate-assets", "mixed-assets", "tuple-assets", "multiindex-assets", "multiindex-dates"])
def test_parquet_refuses_labels_it_cannot_round_trip_before_writing(small, tmp_path, make, match):
    y, x = make(*small)
    fit = qf.fit_rolling(y, x, 60)
    path = tmp_path / "f.parquet"
    with pytest.raises(FitError, match=match):
        fit.to_parquet(path)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_windows_and_tidy_are_one_conversion(fit3):
    w = fit3.windows()
    cols = w.columns()
    assert list(cols)[:2] == ["date", "asset"] and "estimate:LAG" in cols and "std_error:SPY" in cols
    assert list(cols)[-5:] == ["r2", "resid_vol", "nobs", "converged", "n_iter"]
    n_est = fit3.coef("SPY").notna().to_numpy().sum()
    assert len(w) == n_est and w.estimate.shape == (n_est, 3)
    # every window row matches the accessors at its (date, asset)
    rng = np.random.default_rng(0)
    for i in rng.choice(len(w), 25, replace=False):
        d, a = fit3.index[w.date_pos[i]], fit3.assets[w.asset_pos[i]]
        assert cols["estimate:SPY"][i] == fit3.coef("SPY").loc[d, a]
        assert cols["std_error:alpha"][i] == pytest.approx(fit3.stderr("alpha").loc[d, a], rel=1e-15)
        assert cols["nobs"][i] == fit3.nobs.loc[d, a] and cols["r2"][i] == fit3.r2.loc[d, a]
    tidy = fit3.tidy()
    frame = fit3.to_frame()
    for c in frame.columns:
        np.testing.assert_array_equal(frame[c].to_numpy(), tidy[c])
    np.testing.assert_array_equal(tidy["estimate"].reshape(-1, 3), w.estimate)
    assert len(fit3.windows("valid")) == (fit3.nobs.to_numpy() > 0).sum()


def test_sel_and_concat(small):
    y, x = small
    fit = qf.fit_rolling(y, x, 60, min_obs=40)
    part = fit.sel(dates=slice("2019-01-01", "2019-06-30"), assets=["GE", "AAPL"])
    assert list(part.assets) == ["GE", "AAPL"] and part.index[0] >= pd.Timestamp("2019-01-01")
    pd.testing.assert_frame_equal(part.beta, fit.beta.loc["2019-01-01":"2019-06-30", ["GE", "AAPL"]])
    pd.testing.assert_frame_equal(part.stderr("SPY"),
                                  fit.stderr("SPY").loc["2019-01-01":"2019-06-30", ["GE", "AAPL"]])
    pd.testing.assert_frame_equal(part.nobs, fit.nobs.loc["2019-01-01":"2019-06-30", ["GE", "AAPL"]])
    with pytest.raises(FitError, match="not in the fit"):
        fit.sel(assets=["MSFT"])
    by_asset = qf.RollingFit.concat([qf.fit_rolling(y[["AAPL"]], x, 60, min_obs=40),
                                     qf.fit_rolling(y[["XOM", "GE"]], x, 60, min_obs=40)])
    _assert_same_fit(by_asset, fit)
    by_date = qf.RollingFit.concat([fit.isel(dates=slice(0, 200)), fit.isel(dates=slice(200, None))],
                                   axis="dates")
    _assert_same_fit(by_date, fit)
    with pytest.raises(FitError, match="assets appear"):
        qf.RollingFit.concat([fit, fit])
    with pytest.raises(FitError, match="different settings"):
        qf.RollingFit.concat([fit, qf.fit_rolling(y[["AAPL"]].add_suffix("2"), x, 61)])
    with pytest.raises(FitError, match="increase"):
        qf.RollingFit.concat([fit, fit], axis="dates")


def test_meta_is_typed_and_json(fit3):
    m = fit3.meta
    assert isinstance(m, qf.FitMeta)
    assert m.spec.solver.name == "lbfgs" and m.spec.window.length == 60 and m.spec.window.min_obs == 40
    back = qf.FitMeta.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back == m
    assert fit3.settings["window"] == 60 and fit3.settings["solver"] == "lbfgs"  # the flat view


def test_transforms_are_public_and_match_fit_rolling(small):
    y, x = small
    clipped = qf.transforms.welch_winsorize(y, x)
    lo, hi = np.minimum(-2 * x, 4 * x), np.maximum(-2 * x, 4 * x)
    pd.testing.assert_frame_equal(clipped, y.clip(lo, hi, axis=0))
    a = qf.fit_rolling(y, x, 60, winsorize="welch")
    pd.testing.assert_frame_equal(a.beta, qf.fit_rolling(clipped, x, 60).beta)
    lagged = qf.transforms.dimson_lags(x, 2)
    assert list(lagged.columns) == ["SPY", "SPY_lag1", "SPY_lag2"]
    pd.testing.assert_series_equal(lagged["SPY_lag2"], x.shift(2).rename("SPY_lag2"))
    d = qf.fit_rolling(y, x, 60, lags=2)
    b = qf.fit_rolling(y, lagged, 60)
    pd.testing.assert_frame_equal(d.coef("SPY_lag1"), b.coef("SPY_lag1"))
