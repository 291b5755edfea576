"""qf.compound: daily -> weekly (Friday), month-end, quarter-end returns.

References: pandas ``resample("W-FRI" | "ME" | "QE").apply(lambda r: (1 + r).prod() - 1)`` and
``.sum()`` for log returns, on the real sample (ragged listings, gaps) and on the 1926 Ken
French daily excerpt (Saturday sessions); the library's own statement that its daily T-bill
rate compounds to the monthly one. pandas skips NaN inside a period and gives 0 for an empty
period, so the reference is masked with our documented rule before comparing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import quantfit as qf
from quantfit.data import frequency
from quantfit.errors import DataError

FIX = Path(__file__).parent / "fixtures" / "french_models"
ALIASES = {"W": "W-FRI", "M": "ME", "Q": "QE"}


@pytest.fixture(scope="module")
def sample_returns():
    return qf.returns(qf.load_sample())


@pytest.fixture(scope="module")
def french_1926():
    """Real daily returns with Saturday sessions and a missing month (Oct 1926 not in the excerpt)."""
    ff = qf.sources.factor_model("ff3", "D", FIX, download=False)
    return ff.assign(Mkt=ff["Mkt-RF"] + ff["RF"])


def reference(returns: pd.DataFrame, freq: str, kind: str, min_days: int | None,
              cache: dict | None = None) -> pd.DataFrame:
    """pandas resample, then our missing-day rule applied as a mask."""
    key = (freq, kind)
    if cache is None or key not in cache:
        grouped = returns.resample(ALIASES[freq])
        ref = grouped.apply(lambda r: (1 + r).prod() - 1) if kind == "simple" else grouped.sum()
        parts = (ref, grouped.count(), grouped.size())
        if cache is not None:
            cache[key] = parts
    ref, present, rows = cache[key] if cache is not None else parts
    required = rows if min_days is None else pd.Series(min_days, index=rows.index)
    return ref.mask(present.lt(required, axis=0) | present.eq(0))


_SAMPLE_REFERENCE: dict = {}  # pandas' weekly apply takes seconds: once per (freq, kind)


@pytest.mark.parametrize("freq", ["W", "M", "Q"])
@pytest.mark.parametrize("kind", ["simple", "log"])
@pytest.mark.parametrize("min_days", [None, 1, 15])
def test_matches_pandas_resample_on_the_sample(sample_returns, freq, kind, min_days):
    r = sample_returns if kind == "simple" else np.log1p(sample_returns)
    got = qf.compound(r, freq, kind, min_days=min_days, partial="keep")
    ref = reference(r, freq, kind, min_days, _SAMPLE_REFERENCE)
    assert list(got.index) == list(ref.index)          # calendar period ends, every period
    assert list(got.columns) == list(r.columns)
    np.testing.assert_array_equal(np.isnan(got.to_numpy()), np.isnan(ref.to_numpy()))
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("freq", ["W", "M", "Q"])
def test_matches_pandas_on_1926_saturdays_and_a_missing_month(french_1926, freq):
    got = qf.compound(french_1926, freq, partial="keep")
    ref = reference(french_1926, freq, "simple", None)
    pd.testing.assert_frame_equal(got, ref.astype("float64"), check_freq=False, rtol=1e-12, atol=1e-14)
    if freq == "W":   # Saturday 1926-07-10 belongs to the week ending Friday 1926-07-16
        days = french_1926.loc["1926-07-10":"1926-07-16", "Mkt"]
        assert list(days.index.day) == [10, 12, 13, 14, 15, 16]
        assert got.loc["1926-07-16", "Mkt"] == pytest.approx((1 + days).prod() - 1, rel=1e-13)
    if freq == "M":   # October 1926 has no rows in the excerpt: a NaN row, never a zero
        assert got.loc["1926-10-31"].isna().all()


def test_labels_are_calendar_period_ends(sample_returns):
    w, m, q = (qf.compound(sample_returns, f) for f in "WMQ")
    assert (w.index.day_of_week == 4).all()
    assert m.index.is_month_end.all() and q.index.is_quarter_end.all()
    for out in (w, m, q):
        assert out.index.name == "date" and out.index.dtype == "datetime64[us]"
        assert (out.index == out.index.normalize()).all()
    # the last trading day of Nov 2024 is Friday the 29th; the month is labelled the 30th
    assert m.index[-1] == pd.Timestamp("2024-11-30")
    assert sample_returns.index[-1] == pd.Timestamp("2024-11-29")


def test_monthly_lines_up_with_the_monthly_french_file():
    """Compounded daily factors sit on the monthly file's dates and match its values."""
    daily = qf.sources.factor_model("ff3", "D", FIX, download=False)
    monthly = qf.sources.factor_model("ff3", "M", FIX, download=False)
    market = qf.compound(daily["Mkt-RF"] + daily["RF"], "M").dropna()
    rf = qf.compound(daily["RF"], "M").dropna()
    assert list(market.index) == list(pd.to_datetime(["1926-07-31", "1926-08-31", "1926-09-30", "1926-11-30"]))
    assert market.index.isin(monthly.index).all()
    # "The Tbill return is the simple daily rate that, over the number of trading days in the
    # month, compounds to 1-month TBill rate": exact up to the files' rounding (0.001 % a day)
    np.testing.assert_allclose(rf, monthly.loc[rf.index, "RF"], atol=1.5e-4)
    # the market: daily and monthly series are built separately (and these rows come from
    # different file vintages), so within 0.1 percentage point; neighbouring months differ more
    expected = monthly.loc[market.index, "Mkt-RF"] + monthly.loc[market.index, "RF"]
    np.testing.assert_allclose(market, expected, atol=1e-3)
    assert abs(market["1926-09-30"] - expected["1926-08-31"]) > 0.02


def frame(dates, **columns):
    return pd.DataFrame(columns, index=pd.DatetimeIndex(pd.to_datetime(dates), name="date"))


def test_missing_day_makes_the_period_missing_unless_min_days():
    days = pd.bdate_range("2024-01-01", "2024-02-29")
    a = np.full(len(days), 0.01)
    a[5] = np.nan                                   # one missing day in January
    b = np.full(len(days), 0.01)
    b[:30] = np.nan                                 # listed in mid-February
    r = frame(days, A=a, B=b)
    strict = qf.compound(r, "M")
    assert np.isnan(strict.loc["2024-01-31", "A"])
    assert strict.loc["2024-02-29", "A"] == pytest.approx(1.01 ** 21 - 1)
    assert np.isnan(strict.loc["2024-01-31", "B"]) and np.isnan(strict.loc["2024-02-29", "B"])
    loose = qf.compound(r, "M", min_days=10)
    assert loose.loc["2024-01-31", "A"] == pytest.approx(1.01 ** 22 - 1)  # 23 weekdays, one missing
    assert np.isnan(loose.loc["2024-01-31", "B"])
    assert loose.loc["2024-02-29", "B"] == pytest.approx(1.01 ** (len(days) - 30) - 1)
    assert np.isnan(qf.compound(r, "M", min_days=22).loc["2024-02-29", "B"])


def test_total_loss_and_log_sums():
    r = frame(["2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07", "2024-03-08"],
              A=[0.5, -1.0, 0.2, 0.1, 0.0], B=[0.01, 0.02, -0.03, 0.0, 0.01])
    w = qf.compound(r, "W")
    assert w.loc["2024-03-08", "A"] == -1.0
    assert w.loc["2024-03-08", "B"] == pytest.approx(1.01 * 1.02 * 0.97 * 1.01 - 1)
    lg = qf.compound(np.log1p(r[["B"]]), "W", "log")
    assert lg.loc["2024-03-08", "B"] == pytest.approx(np.log(1.01 * 1.02 * 0.97 * 1.01))


def test_partial_edges_dropped_by_weekdays():
    # Wednesday 2024-01-03 to Wednesday 2024-02-14: both edge weeks and February are partial
    r = frame(pd.bdate_range("2024-01-03", "2024-02-14"), A=0.001)
    w = qf.compound(r, "W")
    assert w.index[0] == pd.Timestamp("2024-01-12") and w.index[-1] == pd.Timestamp("2024-02-09")
    m = qf.compound(r, "M")
    assert list(m.index) == []                      # January misses Jan 1-2, February its end
    kept = qf.compound(r, "M", partial="keep")
    assert list(kept.index) == list(pd.to_datetime(["2024-01-31", "2024-02-29"]))
    assert kept.iloc[0, 0] == pytest.approx(1.001 ** 21 - 1)
    # data covering every weekday of its edge periods keep them (Mon 2024-04-01 .. Fri 2024-05-31)
    full = frame(pd.bdate_range("2024-04-01", "2024-05-31"), A=0.001)
    assert list(qf.compound(full, "M").index) == list(pd.to_datetime(["2024-04-30", "2024-05-31"]))
    # documented limit: no exchange calendar, so a holiday on an edge weekday looks partial
    # (New Year's Day 2021 was a Friday; data starting Monday Jan 4 lose January)
    ny = frame(pd.bdate_range("2021-01-04", "2021-03-31"), A=0.001)
    assert qf.compound(ny, "M").index[0] == pd.Timestamp("2021-02-28")


def test_series_in_series_out_and_name_kept(sample_returns):
    s = sample_returns["AAPL"]
    out = qf.compound(s, "M")
    assert isinstance(out, pd.Series) and out.name == "AAPL"
    pd.testing.assert_series_equal(out, qf.compound(sample_returns, "M")["AAPL"])


def test_chunks_give_the_same_answer(sample_returns, monkeypatch):
    whole = qf.compound(sample_returns, "W")
    monkeypatch.setattr(frequency, "_CHUNK_CELLS", 3 * len(sample_returns))  # 3 columns a pass
    pd.testing.assert_frame_equal(qf.compound(sample_returns, "W"), whole)


@pytest.mark.parametrize("args, kwargs, match", [
    ((lambda r: r, "H"), {}, r"freq must be one of 'W', 'M', 'Q'.*got 'H'"),
    ((lambda r: r, "D"), {}, r"freq must be one of 'W', 'M', 'Q'"),
    ((lambda r: r, "ME"), {}, r"got 'ME'"),
    ((lambda r: r, "M"), {"kind": "pct"}, "kind must be 'simple' or 'log'"),
    ((lambda r: r, "M"), {"min_days": 0}, "min_days must be None or an integer >= 1"),
    ((lambda r: r, "M"), {"min_days": 2.5}, "min_days must be None or an integer"),
    ((lambda r: r, "M"), {"partial": "trim"}, "partial must be 'drop' or 'keep'"),
    ((lambda r: r.iloc[::-1], "M"), {}, "sorted"),
    ((lambda r: pd.concat([r, r.iloc[-1:]]), "M"), {}, "duplicate date"),
    ((lambda r: r.tz_localize("UTC"), "M"), {}, "tz-naive"),
    ((lambda r: r.reset_index(drop=True), "M"), {}, "DatetimeIndex"),
    ((lambda r: r.iloc[:0], "M"), {}, "no rows"),
    ((lambda r: r.to_numpy(), "M"), {}, "DataFrame or Series"),
    ((lambda r: r.assign(B="x"), "M"), {}, "returns must be numeric"),
    ((lambda r: r.assign(B=r["B"].where(r.index != r.index[2], -1.5)), "M"), {},
     r"finite and >= -1 \(simple returns\): B on 2024-01-03 is -1.5"),
    ((lambda r: r.assign(A=r["A"].where(r.index != r.index[1], np.inf)), "M"), {"kind": "log"},
     r"must be finite: A on 2024-01-02 is inf"),
])
def test_bad_input_is_a_data_error(args, kwargs, match):
    r = frame(pd.bdate_range("2024-01-01", periods=30), A=0.01, B=-0.01)
    make, freq = args
    with pytest.raises(DataError, match=match):
        qf.compound(make(r), freq, **kwargs)
