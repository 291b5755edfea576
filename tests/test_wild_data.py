"""Prices, dates and tickers as they come from the wild (issue 16), through the public API.

Every case either stores the intended values (compared with ``store.prices()``) or raises a
``DataError`` naming the problem and leaves every file of the store byte-identical.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import quantfit as qf
from quantfit.data import frames
from quantfit.errors import DataError


def digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``: equal before and after means untouched."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def store(tmp_path):
    """A store already holding something, so 'untouched' is a real check."""
    s = qf.PriceStore(tmp_path / "store")
    s.ingest(pd.DataFrame({"date": ["2023-12-28", "2023-12-29"], "ticker": ["OLD", "OLD"],
                           "close": [1.0, 2.0]}))
    return s


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def refused(store, make, match: str):
    """``make()`` (a source call or an ingest) raises DataError(match); the store is untouched."""
    before = digest(store.path)
    with pytest.raises(DataError, match=match):
        store.ingest(make())
    assert digest(store.path) == before


def stored(store, ticker: str) -> pd.Series:
    got = store.prices([ticker])
    assert list(got.columns) == [ticker.upper()]
    return got.iloc[:, 0].dropna()


def series(dates, values) -> pd.Series:
    return pd.Series(values, index=pd.DatetimeIndex(pd.to_datetime(dates), name="date"), dtype=float)


def assert_stored(store, ticker, dates, values):
    got = stored(store, ticker)
    want = series(dates, values)
    assert list(got.index.strftime("%Y-%m-%d")) == list(want.index.strftime("%Y-%m-%d"))
    np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())


# ----------------------------------------------------------------------------- dates
JAN_2024 = pd.bdate_range("2024-01-02", "2024-01-31")  # 22 rows, as in the issue


def test_german_day_first_column_is_stored_on_the_right_days(tmp_path, store):
    rows = "".join(f"{d:%d.%m.%Y},{100 + i}\n" for i, d in enumerate(JAN_2024))
    store.ingest(qf.sources.csv(write(tmp_path, "de.csv", "Datum,SAP\n" + rows)))
    assert len(JAN_2024) == 22
    assert_stored(store, "SAP", JAN_2024, 100 + np.arange(22))


def test_slashed_day_first_is_read_one_way_for_the_whole_column(tmp_path, store):
    # 13/01 can only be day-first, so 01/03 is 1 March too (not 3 January).
    p = write(tmp_path, "p.csv", "date,ticker,close\n01/03/2024,X,1\n13/01/2024,X,2\n")
    store.ingest(qf.sources.csv(p))
    assert_stored(store, "X", ["2024-01-13", "2024-03-01"], [2, 1])
    p = write(tmp_path, "q.csv", "date,ticker,close\n01/03/2024,Y,1\n01/13/2024,Y,2\n")
    store.ingest(qf.sources.csv(p))  # and month-first when only that fits
    assert_stored(store, "Y", ["2024-01-03", "2024-01-13"], [1, 2])


def test_ambiguous_column_is_refused_until_the_format_is_stated(tmp_path, store):
    days = JAN_2024[JAN_2024.day <= 12]
    p = write(tmp_path, "amb.csv", "Datum,SAP\n" + "".join(f"{d:%d.%m.%Y},{d.day}\n" for d in days))
    refused(store, lambda: qf.sources.csv(p),
            r"ambiguous date '02\.01\.2024' \(data row 1\).*--date-format %d\.%m\.%Y \(day first\) "
            r"or %m\.%d\.%Y \(month first\).*date_format='%d\.%m\.%Y'")
    store.ingest(qf.sources.csv(p, date_format="%d.%m.%Y"))
    assert_stored(store, "SAP", days, days.day)


BAD_DATE_COLUMNS = [
    ("date,ticker,close\n13/01/2024,X,1\n01/13/2024,X,2\n",
     r"mixes day-first '13/01/2024' for ticker X \(row 0\) and month-first '01/13/2024' for ticker X \(row 1\)"),
    ("date,ticker,close\n2024-01-02,X,1\n03.01.2024,X,2\n",
     r"mixes formats: '2024-01-02' for ticker X \(row 0\) and '03\.01\.2024' for ticker X \(row 1\)"),
    ("date,ticker,close\n2024-01-02,X,1\n4870-01-02,X,2\n",
     r"date '4870-01-02' for ticker X \(row 1\) is outside the supported range 1677-09-22 to 2262-04-11"),
    ("date,ticker,close\n2024-02-30,X,1\n", r"invalid date '2024-02-30' for ticker X \(row 0\): no such day"),
    ("date,ticker,close\n1/2/24,X,1\n", r"unparsable date '1/2/24' for ticker X \(row 0\).*--date-format FORMAT"),
    ("date,ticker,close\n,X,1\n", r"missing date for ticker X \(row 0\)"),
]


def test_timezone_offsets_keep_the_local_calendar_date(tmp_path, store):
    p = write(tmp_path, "tz.csv", "date,ticker,close\n2024-01-02T00:00:00+09:00,T,1\n"
                                  "2024-01-03T23:30:00-05:00,T,2\n2024-01-04 00:00:00Z,T,3\n")
    store.ingest(qf.sources.csv(p))
    assert_stored(store, "T", ["2024-01-02", "2024-01-03", "2024-01-04"], [1, 2, 3])
    # typed timestamps: an aware column, and objects in different zones
    tokyo = pd.to_datetime(["2024-01-05 00:30", "2024-01-08 23:30"]).tz_localize("Asia/Tokyo")
    store.ingest(pd.DataFrame({"date": tokyo, "ticker": "T", "close": [4.0, 5.0]}))
    mixed = [pd.Timestamp("2024-01-09 00:10", tz="Asia/Tokyo"), pd.Timestamp("2024-01-10 23:50", tz="America/New_York")]
    store.ingest(pd.DataFrame({"date": pd.Series(mixed, dtype=object), "ticker": "T", "close": [6.0, 7.0]}))
    assert_stored(store, "T", ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08",
                               "2024-01-09", "2024-01-10"], [1, 2, 3, 4, 5, 6, 7])


def test_dates_outside_pandas_range_in_a_frame_are_refused(store):
    far = np.array(["2024-01-02", "4870-01-01"], dtype="datetime64[s]")
    refused(store, lambda: pd.DataFrame({"date": far, "ticker": ["A", "B"], "close": [1.0, 2.0]}),
            r"date .*4870-01-01.* for ticker B \(row 1\) is outside the supported range")


@pytest.mark.parametrize("dates", [
    ["Jan 2, 2024", "Feb 29, 2024"], ["02-Jan-2024", "29-Feb-2024"], ["2 January 2024", "29 February 2024"],
    ["20240102", "20240229"], [20240102, 20240229], ["2024/1/2", "2024/2/29"],
])
def test_other_unambiguous_forms(store, dates):
    store.ingest(pd.DataFrame({"date": dates, "ticker": "F", "close": [1.0, 2.0]}))
    assert_stored(store, "F", ["2024-01-02", "2024-02-29"], [1, 2])


def test_date_bounds_of_prices_follow_the_same_rules(store):
    store.ingest(pd.DataFrame({"date": JAN_2024, "ticker": "B", "close": np.arange(1.0, 23.0)}))
    got = store.prices(["B"], start=20240110, end="Jan 12, 2024")
    assert list(got.index.strftime("%d")) == ["10", "11", "12"]
    assert store.prices(["B"], start="13.01.2024").index[0] == pd.Timestamp("2024-01-15")
    with pytest.raises(DataError, match=r"bad start date '05\.01\.2024': day and month could be either way"):
        store.prices(["B"], start="05.01.2024")
    with pytest.raises(DataError, match=r"bad end date 1704844800: .*YYYYMMDD"):
        store.prices(["B"], end=1704844800)
    with pytest.raises(DataError, match=r"bad start date True"):
        store.prices(["B"], start=True)


def test_yfinance_dates_follow_the_same_rules():
    from test_sources import FakeDownloader
    fake = FakeDownloader(good=["AAPL"])
    qf.sources.yfinance(["aapl"], start=20240102, end="Jan 31, 2024", downloader=fake)
    assert fake.calls[0][1]["start"] == "2024-01-02" and fake.calls[0][1]["end"] == "2024-01-31"
    with pytest.raises(DataError, match=r"bad start date '05\.01\.2024': day and month could be either way"):
        qf.sources.yfinance(["AAPL"], start="05.01.2024", downloader=fake)


def test_french_keys_outside_the_range_are_refused(tmp_path):
    p = write(tmp_path, "ff.csv", ",Mkt-RF,RF\n20240102,0.1,0.01\n30000103,0.2,0.01\n")
    with pytest.raises(DataError, match=r"date key: date '30000103' \(row 1\) is outside the supported range"):
        qf.sources.french(p)


# ----------------------------------------------------------------------------- tickers
def test_tickers_are_upper_cased_on_the_way_in_and_on_look_ups(tmp_path, store):
    p = write(tmp_path, "l.csv", "date,ticker,close\n2024-01-02,aapl,1\n2024-01-03,AAPL,2\n2024-01-04, Aapl ,3\n")
    store.ingest(qf.sources.csv(p))
    assert store.tickers() == ["AAPL", "OLD"]
    assert_stored(store, "aapl", ["2024-01-02", "2024-01-03", "2024-01-04"], [1, 2, 3])
    assert list(store.prices("aapl").columns) == ["AAPL"]
    q = write(tmp_path, "m.csv", "date,ticker,close\n2024-01-02,msft,1\n2024-01-02,MSFT,2\n")
    refused(store, lambda: qf.sources.csv(q),
            r"duplicate \(date, ticker\): ticker MSFT on 2024-01-02.*upper-cased: 'MSFT', 'msft' are one ticker")
    w = write(tmp_path, "w.csv", "date,ibm,IBM\n2024-01-02,1,2\n")
    refused(store, lambda: qf.sources.csv(w), r"ticker IBM appears twice in the header \('ibm' and 'IBM'\)")


def test_na_nan_null_are_tickers_in_long_and_wide_csvs(tmp_path, store):
    long = write(tmp_path, "long.csv", "date,ticker,close\n2024-01-02,NA,1\n2024-01-02,NaN,2\n"
                                       "2024-01-02,null,3\n2024-01-03,NA,4\n")
    wide = write(tmp_path, "wide.csv", "date,NA,None\n2024-01-04,5,6\n")
    store.ingest(qf.sources.csv(long))
    store.ingest(qf.sources.csv(wide))
    assert store.tickers() == ["NA", "NAN", "NONE", "NULL", "OLD"]
    assert_stored(store, "NA", ["2024-01-02", "2024-01-03", "2024-01-04"], [1, 4, 5])
    assert_stored(store, "nan", ["2024-01-02"], [2])
    assert_stored(store, "NULL", ["2024-01-02"], [3])


def test_allowed_ticker_characters(store):
    names = ["BRK/B", "BRK.B", "^GSPC", "RDS-A", "EURUSD=X", "M&M.NS", ".SPX", "7203.T"]
    store.ingest(pd.DataFrame({"date": "2024-01-02", "ticker": names, "close": 1.0 + np.arange(len(names))}))
    got = store.prices(names)
    assert sorted(got.columns) == sorted(names)
    assert got.loc["2024-01-02", "^GSPC"] == 3.0


@pytest.mark.parametrize("name, match", [
    ("has space", r"ticker 'has space' contains a space .* \(row 1\)"),
    ("AB\x01C", r"ticker 'AB\\x01C' contains a control character .*\(row 1\)"),
    ("A,B", r"contains ','"),
    ("X" * 33, r"longer than 32 characters"),
    ("ÄPFEL", r"contains 'Ä'"),
])
def test_invalid_tickers_are_refused_with_the_row(store, name, match):
    refused(store, lambda: pd.DataFrame({"date": ["2024-01-02"] * 2, "ticker": ["OK", name], "close": [1.0, 2.0]}),
            match)


def test_invalid_ticker_in_a_long_csv(tmp_path, store):
    p = write(tmp_path, "l.csv", "date,ticker,close\n2024-01-02,OK,1\n2024-01-02,has space,2\n")
    refused(store, lambda: qf.sources.csv(p), r"l\.csv: ticker 'has space' contains a space.*\(row 1\)")


def test_a_store_with_lower_case_tickers_says_to_migrate(tmp_path, monkeypatch):
    """A store written before tickers were upper-cased: its names are never silently unreachable."""
    old = qf.PriceStore(tmp_path / "legacy")
    with monkeypatch.context() as m:  # an older quantfit: names kept as given
        m.setattr(frames, "normalize_ticker", lambda name, where="": str(name).strip())
        old.ingest(pd.DataFrame({"date": ["2024-01-02"], "ticker": ["aapl"], "close": [1.0]}))
    assert old.tickers() == ["aapl"]
    for asked in ("aapl", "AAPL"):
        with pytest.raises(DataError, match=r"holds 'aapl', written before tickers were upper-cased; "
                                            r"run 'quantfit store migrate' to rename it to AAPL"):
            old.prices([asked])
    assert list(old.prices().columns) == ["aapl"]  # everything is still readable


# ----------------------------------------------------------------------------- frames
@pytest.mark.parametrize("make, match", [
    (lambda: pd.DataFrame({"date": ["2024-01-02"], "ticker": ["A"], "Close": [1.0], "close": [2.0]}),
     r"ambiguous columns: columns 'Close' and 'close' both mean close"),
    (lambda: pd.DataFrame([["2024-01-02", "A", 1.0, 2.0]], columns=["date", "ticker", "close", "close"]),
     r"ambiguous columns: two columns named 'close'"),
    (lambda: pd.DataFrame({"date": ["2024-01-02"], "ticker": ["A"], "close": [True]}),
     r"close must be numbers, not booleans"),
    (lambda: pd.DataFrame({"date": ["2024-01-02", "2024-01-03"], "ticker": ["A", "A"],
                           "close": pd.Series([1.5, True], dtype=object)}),
     r"close must be numbers, not booleans \(row 1 is True\)"),
    (lambda: pd.DataFrame({"date": ["2024-01-02"], "ticker": ["A"], "close": [1.0], "volume": [True]}),
     r"volume must be numbers, not booleans"),
])
def test_ambiguous_and_boolean_columns_are_refused(store, make, match):
    refused(store, make, match)


def test_boolean_prices_in_a_wide_csv(tmp_path, store):
    p = write(tmp_path, "b.csv", "date,A\n2024-01-02,true\n2024-01-03,false\n")
    refused(store, lambda: qf.sources.csv(p), r"prices of ticker A are true/false values")


# ----------------------------------------------------------------------------- vendor layouts
YAHOO = ("Date,Open,High,Low,Close,Adj Close,Volume\n"
         "2024-01-02,187.15,188.44,183.89,185.64,184.73,82488700\n"
         "2024-01-03,184.22,185.88,183.43,184.25,183.35,58414500\n"
         "2024-01-04,null,null,null,null,null,null\n")


def test_yahoo_download_is_one_tickers_history_with_adjusted_closes(tmp_path, store):
    frame = qf.sources.csv(write(tmp_path, "AAPL.csv", YAHOO))
    assert frame.attrs["layout"] == "history"
    assert frame.attrs["notes"] == [(f"{tmp_path / 'AAPL.csv'}: one ticker's history: ticker AAPL from the "
                                    "file name (--ticker sets it), prices from column 'Adj Close'")]
    store.ingest(frame)
    assert store.tickers() == ["AAPL", "OLD"]  # not Open, High, ... Volume
    assert_stored(store, "AAPL", ["2024-01-02", "2024-01-03"], [184.73, 183.35])  # null row: no price
    assert store.prices(["AAPL"], field="volume")["AAPL"].dropna().tolist() == [82488700, 58414500]
    store.ingest(qf.sources.csv(write(tmp_path, "download (1).csv", YAHOO), ticker="msft"))
    assert_stored(store, "MSFT", ["2024-01-02", "2024-01-03"], [184.73, 183.35])


def test_history_whose_file_name_is_not_a_ticker_needs_ticker(tmp_path, store):
    p = write(tmp_path, "download (1).csv", YAHOO)
    refused(store, lambda: qf.sources.csv(p), r"file name cannot be the ticker .*contains a space.*--ticker T")


@pytest.mark.parametrize("name, text, ticker, dates, closes", [
    ("spy.us.txt", "Date,Open,High,Low,Close,Volume\n2024-01-02,1,2,0.5,472.65,123\n2024-01-03,1,2,0.5,468.79,456\n",
     "SPY.US", ["2024-01-02", "2024-01-03"], [472.65, 468.79]),                      # stooq (English)
    ("wig.csv", "Data,Otwarcie,Najwyzszy,Najnizszy,Zamkniecie,Wolumen\n2024-01-02,1,2,0.5,10.5,12345\n",
     "WIG", ["2024-01-02"], [10.5]),                                                  # stooq (Polish)
    ("IBM.csv", ("timestamp,open,high,low,close,adjusted_close,volume,dividend_amount,split_coefficient\n"
                "2024-01-03,161.0,161.73,160.08,160.1,155.5,4086100,0.0000,1.0\n"
                "2024-01-02,162.83,163.29,160.38,161.5,156.9,3803600,0.0000,1.0\n"),
     "IBM", ["2024-01-02", "2024-01-03"], [156.9, 155.5]),                            # Alpha Vantage, newest first
    ("KO.csv", "timestamp,open,high,low,close,volume\n2024-01-02,1,2,0.5,59.2,10\n",
     "KO", ["2024-01-02"], [59.2]),                                                   # Alpha Vantage, not adjusted
    ("XOM.csv", ("Date,Open,High,Low,Close,Volume,Dividends,Stock Splits\n"
                "2024-01-02 00:00:00-05:00,1,2,0.5,98.5,10,0.0,0.0\n"), "XOM", ["2024-01-02"], [98.5]),  # yfinance history()
    ("GE.csv", "Date,Close\n2024-01-02,120.5\n", "GE", ["2024-01-02"], [120.5]),
])
def test_vendor_histories(tmp_path, store, name, text, ticker, dates, closes):
    store.ingest(qf.sources.csv(write(tmp_path, name, text)))
    assert store.tickers() == sorted([ticker, "OLD"])
    assert_stored(store, ticker, dates, closes)


def test_stooq_bulk_file_is_long_and_daily_only(tmp_path, store):
    head = "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>\n"
    p = write(tmp_path, "us.txt", head + "AAA.US,D,20240102,000000,10,11,9,10.5,1000,0\n"
                                         "AAA.US,D,20240103,000000,10.5,12,10,11.5,1200,0\n"
                                         "NA,D,20240102,000000,20,21,19,20.5,2000,0\n")
    store.ingest(qf.sources.csv(p))
    assert_stored(store, "AAA.US", ["2024-01-02", "2024-01-03"], [10.5, 11.5])
    assert_stored(store, "NA", ["2024-01-02"], [20.5])
    w = write(tmp_path, "weekly.txt", head + "AAA.US,W,20240105,000000,10,11,9,10.5,1000,0\n")
    refused(store, lambda: qf.sources.csv(w), r"period 'W' in data row 1: only daily data \(D\)")


def test_yfinance_download_to_csv_with_two_tickers(tmp_path, store):
    p = write(tmp_path, "yf.csv", "Price,Close,Close,High,High,Volume,Volume\n"
                                  "Ticker,AAPL,MSFT,AAPL,MSFT,AAPL,MSFT\nDate,,,,,,\n"
                                  "2024-01-02,184.73,370.87,188.44,371,82488700,25258600\n"
                                  "2024-01-03,183.35,,185.88,,58414500,\n")
    store.ingest(qf.sources.csv(p))
    assert_stored(store, "AAPL", ["2024-01-02", "2024-01-03"], [184.73, 183.35])
    assert_stored(store, "MSFT", ["2024-01-02"], [370.87])


BAD_HEADERS = [
    ("Date,Open,High,Low,Volume\n2024-01-02,1,2,0.5,10\n", r"'Open', 'High', 'Low', 'Volume' are price fields, not tickers"),
    ("date,Close,MSFT\n2024-01-02,1,2\n", r"mixes price fields \('Close'\) with other columns \('MSFT'\)"),
    ("date,Close,close\n2024-01-02,1,2\n", r"ambiguous columns 'Close' and 'close'"),
    ("date,ticker,symbol,close\n2024-01-02,A,A,1\n", r"ambiguous columns 'ticker' and 'symbol'"),
]


@pytest.mark.parametrize("text, match", BAD_DATE_COLUMNS + BAD_HEADERS)
def test_bad_date_columns_and_headers_are_refused_naming_the_problem(tmp_path, store, text, match):
    """Dates: mixed, out of range, impossible, unrecognized, missing. Headers: field names that
    are not one ticker's history (no close; a close next to a ticker), one field twice."""
    p = write(tmp_path, "X.csv", text)
    refused(store, lambda: qf.sources.csv(p), match)


def test_ticker_is_refused_for_files_that_name_their_tickers(tmp_path, store):
    p = write(tmp_path, "w.csv", "date,A,B\n2024-01-02,1,2\n")
    refused(store, lambda: qf.sources.csv(p, ticker="A"), r"is a wide file that names its tickers itself")


# ----------------------------------------------------------------------------- files
@pytest.mark.parametrize("read", [qf.sources.csv, qf.sources.french])
def test_fifo_and_devices_are_refused_without_blocking(tmp_path, read):
    fifo = tmp_path / "prices.csv"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"is a FIFO \(named pipe\); give a regular file"):
        read(fifo)
    with pytest.raises(DataError, match=r"/dev/zero: is a device"):
        read("/dev/zero")


def test_header_read_is_bounded(tmp_path):
    p = tmp_path / "huge.csv"
    p.write_bytes(b"x" * (3 << 20))  # 3 MiB without a line break
    with pytest.raises(DataError, match=r"no line break in the first 1,048,576 bytes"):
        qf.sources.csv(p)


# ----------------------------------------------------------------------------- returns
@pytest.fixture
def px():
    return pd.DataFrame({"A": [100.0, 101.0, 99.0, 102.0]}, index=pd.bdate_range("2024-01-02", periods=4))


@pytest.mark.parametrize("kind, rf, match", [
    ("simple", "series-inf", r"rf must be finite: rf on 2024-01-04 is inf"),
    ("log", "series-inf", r"rf must be finite"),
    ("log", -1, r"rf must be above -1 .* rf is -1\.0"),
    ("log", -2.0, r"rf must be above -1"),
    ("log", "series-minus-one", r"rf must be above -1 .* rf on 2024-01-04 is -1\.0"),
    ("simple", float("-inf"), r"rf must be finite"),
])
def test_unusable_risk_free_rates_are_refused(px, kind, rf, match):
    if isinstance(rf, str):
        rf = pd.Series([0.0, 0.0, -1.0 if rf.endswith("one") else np.inf, 0.0], index=px.index)
    with pytest.raises(DataError, match=match):
        qf.returns(px, kind=kind, rf=rf)


def test_log_excess_returns_with_a_valid_rf_series(px):
    rf = pd.Series([0.001, 0.002, -0.5, 0.003], index=px.index)
    got = qf.returns(px, kind="log", rf=rf)["A"]
    want = np.log(px["A"]).diff().iloc[1:] - np.log1p(rf.iloc[1:])
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-15)
