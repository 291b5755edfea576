"""RollingFit: accessors, the tidy long frame and the parquet round trip."""

from __future__ import annotations

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
        fit3.beta
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
                                  "r2", "resid_vol", "nobs", "converged", "n_iter"]
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
