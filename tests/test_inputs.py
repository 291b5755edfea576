"""Every pandas input a user passes (issue 14, part 2): layouts, date order, dtypes, polars.

The reference is the fit of the same numbers passed plainly (sorted dates, stored column order,
float64), which the statsmodels tests pin down; what is checked here is that no other way of
handing over those numbers changes them, raises a raw error, or fits backwards in time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import quantfit as qf
from quantfit.errors import FitError


@pytest.fixture(scope="module")
def data(sample_prices):
    r = sample_prices.pct_change(fill_method=None).loc["2015":"2019"]
    return r.drop(columns="SPY")[["AAPL", "XOM", "PFE", "GE", "JPM"]], r["SPY"]


@pytest.fixture(scope="module")
def ref(data):
    y, x = data
    return qf.fit_rolling(y, x, 60)


def _same(fit: qf.RollingFit, ref: qf.RollingFit) -> None:
    """``fit`` has ``ref``'s numbers for its own (date, asset) labels, in its own order."""
    for term in ("alpha", "SPY"):
        want = ref.coef(term).loc[fit.index, fit.assets]
        pd.testing.assert_frame_equal(fit.coef(term), want, check_freq=False)
        pd.testing.assert_frame_equal(fit.stderr(term), ref.stderr(term).loc[fit.index, fit.assets],
                                      check_freq=False)
    pd.testing.assert_frame_equal(fit.r2, ref.r2.loc[fit.index, fit.assets], check_freq=False)
    pd.testing.assert_frame_equal(fit.nobs, ref.nobs.loc[fit.index, fit.assets], check_freq=False)


@pytest.mark.parametrize("make", [
    lambda y: y[["XOM", "PFE"]],  # columns out of stored order
    lambda y: y.loc[:, ["GE", "AAPL", "JPM"]],
    lambda y: y.filter(like="E"),
    lambda y: y.reindex(columns=["JPM", "AAPL"]),
    lambda y: y.iloc[:, ::-1],
    lambda y: y.astype(float),
    lambda y: y.T.copy().T,  # another memory layout
    lambda y: pd.DataFrame(np.asfortranarray(y.to_numpy()), index=y.index, columns=y.columns),
    lambda y: pd.DataFrame(y.to_numpy()[:, ::-1], index=y.index, columns=y.columns[::-1]),
], ids=["select", "loc", "filter", "reindex", "reversed-cols", "astype", "transposed",
        "fortran", "negative-strides"])
def test_any_column_selection_or_layout_fits_the_same(data, ref, make):
    y, x = data
    _same(qf.fit_rolling(make(y), x, 60), ref)


def test_reversed_factor_columns(data):
    y, x = data
    xx = pd.DataFrame({"SPY": x, "LAG": x.shift(1)})
    a = qf.fit_rolling(y, xx, 60)
    b = qf.fit_rolling(y, xx.iloc[:, ::-1], 60)
    for t in ("SPY", "LAG", "alpha"):
        pd.testing.assert_frame_equal(a.coef(t), b.coef(t), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("order", ["descending", "shuffled"])
def test_dates_in_any_order_are_fitted_in_date_order(data, ref, order):
    """The beta 'on' a date always comes from the window ending on it (no look-ahead); the
    results come back in the caller's row order."""
    y, x = data
    yy = y[::-1] if order == "descending" else y.sample(frac=1.0, random_state=3)
    xx = x[::-1] if order == "descending" else x.sample(frac=1.0, random_state=4)
    fit = qf.fit_rolling(yy, xx, 60)
    assert fit.index.equals(yy.index)
    _same(fit, ref)
    # the first 59 dates (in time) have no estimate, wherever they sit in the caller's order
    early = y.index[:59]
    assert fit.beta.loc[early].isna().all().all()


def test_subsets_that_survive_pandas_operations(data, ref):
    y, x = data
    for yy in (y.dropna(), y.loc["2016":], y.iloc[100:700]):
        fit = qf.fit_rolling(yy, x, 60)
        assert fit.index.equals(yy.index) and fit.beta.notna().to_numpy().any()


@pytest.mark.parametrize("make,match", [
    (lambda y: y.apply(lambda c: pd.to_timedelta(c.fillna(0) * 1e9, unit="ns")), "timedelta"),
    (lambda y: y.assign(AAPL=pd.date_range("2000-01-01", periods=len(y))), "datetime"),
    (lambda y: y.astype(complex), "complex"),
    (lambda y: y.assign(AAPL="1.5"), "numbers only"),
    (lambda y: y.assign(AAPL=pd.Categorical(np.zeros(len(y)))), "category"),
])
def test_values_that_are_not_numbers_are_refused(data, make, match):
    y, x = data
    with pytest.raises(FitError, match=match):
        qf.fit_rolling(make(y), x, 60)
    with pytest.raises(FitError, match=match):
        qf.fit_rolling(x.to_frame(), make(y), 60)


def test_integer_boolean_and_nullable_columns_are_numbers(data):
    y, x = data
    yi = (y * 1e4).round().astype("Int64")  # nullable: NA is a missing value
    fit = qf.fit_rolling(yi, x, 60)
    ref = qf.fit_rolling(yi.astype(float), x, 60)
    pd.testing.assert_frame_equal(fit.beta, ref.beta)
    dummy = pd.DataFrame({"SPY": x, "monday": x.index.day_of_week == 0})
    two = qf.fit_rolling(y, dummy, 60)
    assert two.coef("monday").notna().to_numpy().any()


def test_polars_frames_with_a_date_column(data, ref):
    pl = pytest.importorskip("polars")
    y, x = data
    py = pl.from_pandas(y.reset_index())  # the index becomes a 'date' column
    px = pl.from_pandas(x.reset_index())
    _same(qf.fit_rolling(py, px, 60), ref)
    renamed = pl.from_pandas(y.reset_index().rename(columns={"date": "day"}))  # its only date column
    fit = qf.fit_rolling(renamed, px, 60)
    assert fit.index.name == "day"
    pd.testing.assert_frame_equal(fit.beta.rename_axis("date"), ref.beta, check_freq=False)
    with pytest.raises(FitError, match="no dates"):
        qf.fit_rolling(py, pl.Series("SPY", x.to_numpy()), 60)
    with pytest.raises(FitError, match="date column"):
        qf.fit_rolling(pl.DataFrame({"a": [1.0, 2.0]}), px, 60)


def test_index_problems_are_refused(data):
    y, x = data
    with pytest.raises(FitError, match="duplicate"):
        qf.fit_rolling(pd.concat([y, y.iloc[:3]]), x, 60)
    nat = y.copy()
    nat.index = nat.index.where(np.arange(len(nat)) != 5, pd.NaT)
    with pytest.raises(FitError, match="NaT"):
        qf.fit_rolling(nat, x, 60)
    mixed = y.iloc[:80].set_axis([*range(40), *map(str, range(40))])
    with pytest.raises(FitError, match="order"):
        qf.fit_rolling(mixed.iloc[::-1], x.iloc[:80].set_axis(mixed.index), 60)
