"""qf.returns: simple/log returns vs pandas, gaps stay NaN, risk-free alignment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import quantfit as qf
from quantfit.errors import DataError


@pytest.fixture
def prices():
    idx = pd.DatetimeIndex(pd.bdate_range("2024-01-01", periods=6), name="date")
    return pd.DataFrame({"A": [100.0, 110.0, np.nan, 121.0, 120.0, 126.0],
                         "B": [np.nan, 50.0, 55.0, 44.0, 44.0, 66.0]}, index=idx)


def test_simple_matches_pandas_and_drops_first_row(prices):
    r = qf.returns(prices)
    expected = prices.pct_change(fill_method=None).iloc[1:]
    pd.testing.assert_frame_equal(r, expected)
    assert r.index[0] == prices.index[1]
    assert r.loc["2024-01-02", "A"] == pytest.approx(0.10)


def test_gap_gives_nan_not_zero(prices):
    r = qf.returns(prices)
    # A's price on 2024-01-03 is missing: both the return into and out of the gap are NaN.
    assert np.isnan(r.loc["2024-01-03", "A"]) and np.isnan(r.loc["2024-01-04", "A"])
    assert np.isnan(r.loc["2024-01-02", "B"])  # no previous price
    assert r.loc["2024-01-05", "B"] == 0.0       # a true zero return stays zero


def test_log(prices):
    r = qf.returns(prices, kind="log")
    expected = np.log(prices).diff().iloc[1:]
    pd.testing.assert_frame_equal(r, expected)
    assert r.loc["2024-01-02", "A"] == pytest.approx(np.log(1.1))


def test_series_in_series_out(prices):
    r = qf.returns(prices["A"])
    assert isinstance(r, pd.Series) and r.name == "A"
    pd.testing.assert_series_equal(r, prices["A"].pct_change(fill_method=None).iloc[1:])


def test_excess_over_rf_series_aligned_by_date(prices):
    rf = pd.Series([0.001, 0.002, 0.003, 0.004, 0.005, 0.006], index=prices.index)
    rf_shuffled = rf.iloc[::-1]  # alignment is by date, not position
    r = qf.returns(prices, rf=rf_shuffled)
    raw = prices.pct_change(fill_method=None).iloc[1:]
    pd.testing.assert_frame_equal(r, raw.sub(rf.iloc[1:], axis=0))
    rl = qf.returns(prices, kind="log", rf=rf)
    pd.testing.assert_frame_equal(rl, np.log(prices).diff().iloc[1:].sub(np.log1p(rf.iloc[1:]), axis=0))


def test_excess_over_scalar(prices):
    r = qf.returns(prices, rf=0.0001)
    pd.testing.assert_frame_equal(r, prices.pct_change(fill_method=None).iloc[1:] - 0.0001)


def test_rf_missing_dates_is_an_error(prices):
    rf = pd.Series(0.001, index=prices.index[:-1])
    with pytest.raises(DataError, match=r"rf has no value for 1 of 5 return dates \(first 2024-01-08\)"):
        qf.returns(prices, rf=rf)


@pytest.mark.parametrize("bad, match", [
    (lambda p: p.reset_index(drop=True), "DatetimeIndex"),
    (lambda p: p.iloc[::-1], "sorted"),
    (lambda p: p.assign(A=p["A"].where(p.index != p.index[1], -5.0)), r"A on 2024-01-02 is -5.0"),
    (lambda p: p.assign(B=p["B"].where(p.index != p.index[3], 0.0)), r"B on 2024-01-04"),
    (lambda p: p.iloc[:1], "at least 2 dates"),
    (lambda p: pd.concat([p, p.iloc[-1:]]), "duplicate date"),
    (lambda p: p.to_numpy(), "DataFrame or Series"),
])
def test_bad_prices(prices, bad, match):
    with pytest.raises(DataError, match=match):
        qf.returns(bad(prices))


def test_bad_kind(prices):
    with pytest.raises(DataError, match="kind"):
        qf.returns(prices, kind="pct")


def test_sample_against_pandas(sample_prices):
    r = qf.returns(sample_prices)
    pd.testing.assert_frame_equal(r, sample_prices.pct_change(fill_method=None).iloc[1:])
    assert r.shape == (len(sample_prices) - 1, sample_prices.shape[1])
