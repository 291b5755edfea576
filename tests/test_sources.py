"""Price sources: yfinance (with fakes in yfinance 1.x's exact shapes), csv, sample.

No test touches the network. Two kinds of yfinance fakes are used:

* hand-built frames that mirror ``yfinance.multi.download``'s assembly (concat of per-ticker
  OHLCV frames keyed ``Ticker``/``Price``, swapped and sorted for ``group_by="column"``; an
  all-NaN block, including an ``Adj Close`` column, for a ticker that failed);
* the installed ``yfinance.multi.download`` itself with its ``Ticker`` class replaced by a
  fake whose ``history()`` returns what yfinance's history returns offline, so the shapes are
  produced by the real library code.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import quantfit as qf
from quantfit.data.sources.yahoo import MissingTickersWarning, closes_from_download
from quantfit.errors import DataError

DATES = pd.bdate_range("2024-01-02", periods=5)


def history_frame(ticker: str, dates=DATES, tz="America/New_York") -> pd.DataFrame:
    """What ``Ticker.history(auto_adjust=True, actions=False)`` returns for a good ticker."""
    base = 10.0 + (sum(map(ord, ticker)) % 50)
    close = base + np.arange(len(dates), dtype=float)
    idx = pd.DatetimeIndex(dates, name="Date").tz_localize(tz)
    return pd.DataFrame({"Open": close - 0.5, "High": close + 1, "Low": close - 1, "Close": close,
                         "Volume": (np.arange(len(dates)) + 1).astype(np.int64) * 1000}, index=idx)


def empty_history() -> pd.DataFrame:
    """yfinance.utils.empty_df(): what a failed ticker contributes (note the Adj Close)."""
    df = pd.DataFrame(index=[], data={"Open": np.nan, "High": np.nan, "Low": np.nan,
                                      "Close": np.nan, "Adj Close": np.nan, "Volume": np.nan})
    df.index.name = "Date"
    return df


def yf_download_shape(per_ticker: dict, group_by="column", multi_level_index=True) -> pd.DataFrame:
    """Assemble per-ticker frames exactly as yfinance/multi.py `_download_impl` does (daily)."""
    dfs = {}
    for t, df in per_ticker.items():
        if len(df):
            df = df.copy()
            df.index = df.index.tz_localize(None)  # ignore_tz=True for daily intervals
        dfs[t] = df
    idx = None
    for df in dfs.values():
        if not df.empty:
            idx = df.index if idx is None else idx.union(df.index)
    idx = pd.DatetimeIndex([]) if idx is None else idx
    dfs = {k: v.reindex(idx) for k, v in dfs.items()}
    data = pd.concat(dfs.values(), axis=1, sort=True, keys=dfs.keys(), names=["Ticker", "Price"])
    if group_by == "column":
        data.columns = data.columns.swaplevel(0, 1)
        data = data.sort_index(level=0, axis=1)
    if not multi_level_index and len(per_ticker) == 1:
        data = data.droplevel(0 if group_by == "ticker" else 1, axis=1).rename_axis(None, axis=1)
    return data


class FakeDownloader:
    """A ``yfinance.download`` stand-in: records calls, can fail or return empties on cue."""

    def __init__(self, good=(), fail_times=0, error=None, empty_first=(), **shape):
        self.good = set(good)
        self.fail_times = fail_times
        self.error = error
        self.empty_first = set(empty_first)
        self.shape = shape
        self.calls: list[tuple[list[str], dict]] = []

    def __call__(self, tickers, **kwargs):
        self.calls.append((list(tickers), kwargs))
        if self.fail_times:
            self.fail_times -= 1
            raise self.error
        per = {}
        for t in (t.upper() for t in tickers):
            if t in self.empty_first:  # e.g. rate-limited inside download: comes back empty once
                self.empty_first.discard(t)
                per[t] = empty_history()
            else:
                per[t] = history_frame(t) if t in self.good else empty_history()
        return yf_download_shape(per, **self.shape)


# ----------------------------------------------------------------------------- yfinance
def fake_ticker_class(bad: str, check_kwargs=None):
    """A stand-in for ``yfinance.Ticker`` whose ``history`` returns our fixture frames (an empty
    one, with yfinance's "possibly delisted" error recorded, for ticker ``bad``)."""

    class PH:
        _last_error = None

    class FakeTicker:
        def __init__(self, ticker, *a, **k):
            self.ticker = ticker
            self._price_history = PH()

        def history(self, **kwargs):
            if check_kwargs is not None:
                check_kwargs(kwargs)
            if self.ticker == bad:
                self._price_history._last_error = "possibly delisted; no price data found"
                return empty_history()
            return history_frame(self.ticker)

    return FakeTicker


def test_shape_helper_matches_installed_yfinance(monkeypatch):
    """Our hand-built shape equals what the installed yfinance assembles from the same parts."""
    import yfinance.multi as multi

    monkeypatch.setattr(multi, "Ticker", fake_ticker_class("BAD"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        real = multi.download(["AAPL", "MSFT", "BAD"], progress=False, threads=False)
        real1 = multi.download(["AAPL"], progress=False, threads=False, multi_level_index=False)
    ours = yf_download_shape({"AAPL": history_frame("AAPL"), "MSFT": history_frame("MSFT"),
                              "BAD": empty_history()})
    assert list(real.columns.names) == ["Price", "Ticker"]
    assert ("Adj Close", "BAD") in real.columns  # the failed ticker drags in an Adj Close level
    pd.testing.assert_frame_equal(real[sorted(real.columns)], ours[sorted(ours.columns)],
                                  check_dtype=False)
    ours1 = yf_download_shape({"AAPL": history_frame("AAPL")}, multi_level_index=False)
    assert list(real1.columns) == list(ours1.columns) == ["Close", "High", "Low", "Open", "Volume"]


def test_yfinance_through_installed_download_with_fake_ticker(monkeypatch):
    """End to end through the real yfinance.multi.download, a bad ticker reported by name."""
    import yfinance.multi as multi

    def check(kwargs):
        assert kwargs["auto_adjust"] is True and kwargs["actions"] is False

    monkeypatch.setattr(multi, "Ticker", fake_ticker_class("NOPE", check))
    with pytest.warns(MissingTickersWarning, match="NOPE"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            long = qf.sources.yfinance(["aapl", "nope", "spy"], downloader=multi.download,
                                       threads=False, sleep=lambda s: None)
    assert long.attrs["missing"] == ["NOPE"]
    assert sorted(long["ticker"].unique()) == ["AAPL", "SPY"]
    aapl = long[long["ticker"] == "AAPL"].set_index("date")["close"]
    expected = history_frame("AAPL")["Close"]
    np.testing.assert_array_equal(aapl.to_numpy(), expected.to_numpy())
    assert list(aapl.index) == list(DATES)  # tz dropped, calendar dates kept


def test_yfinance_multiindex_long_frame_and_missing_report():
    fake = FakeDownloader(good=["AAPL", "MSFT"])
    with pytest.warns(MissingTickersWarning, match=r"1 ticker: ZZZZ"):
        long = qf.sources.yfinance(["AAPL", "MSFT", "ZZZZ"], start="2024-01-01", downloader=fake,
                                   sleep=lambda s: None)
    assert list(long.columns) == ["date", "ticker", "close", "volume"]
    assert long.attrs["missing"] == ["ZZZZ"]
    assert len(long) == 2 * len(DATES)
    msft = long[long["ticker"] == "MSFT"]
    np.testing.assert_array_equal(msft["close"], history_frame("MSFT")["Close"].to_numpy())
    np.testing.assert_array_equal(msft["volume"], history_frame("MSFT")["Volume"].to_numpy())
    tickers, kwargs = fake.calls[0]
    assert kwargs["auto_adjust"] is True and kwargs["start"] == "2024-01-01"
    # The empty ticker was asked for once more before being reported.
    assert fake.calls[1][0] == ["ZZZZ"]


def test_yfinance_single_ticker_flat_shape():
    fake = FakeDownloader(good=["SPY"], multi_level_index=False)
    long = qf.sources.yfinance("spy", downloader=fake)
    assert long["ticker"].unique().tolist() == ["SPY"]
    np.testing.assert_array_equal(long["close"], history_frame("SPY")["Close"].to_numpy())
    assert long.attrs["missing"] == []


def test_yfinance_group_by_ticker_shape():
    data = yf_download_shape({"AAPL": history_frame("AAPL"), "X": empty_history()}, group_by="ticker")
    close, volume = closes_from_download(data, ["AAPL", "X"])
    assert close["X"].isna().all()
    np.testing.assert_array_equal(close["AAPL"], history_frame("AAPL")["Close"].to_numpy())
    np.testing.assert_array_equal(volume["AAPL"], history_frame("AAPL")["Volume"].to_numpy())


def test_yfinance_batches():
    names = [f"T{i:02d}" for i in range(7)]
    fake = FakeDownloader(good=names)
    long = qf.sources.yfinance(names, batch_size=3, downloader=fake)
    assert [len(c[0]) for c in fake.calls] == [3, 3, 1]
    assert sorted(long["ticker"].unique()) == names


def test_yfinance_retries_rate_limit_with_backoff():
    from yfinance.exceptions import YFRateLimitError
    slept: list[float] = []
    fake = FakeDownloader(good=["AAPL"], fail_times=2, error=YFRateLimitError())
    long = qf.sources.yfinance(["AAPL"], downloader=fake, backoff=1.5, sleep=slept.append)
    assert len(fake.calls) == 3
    assert slept == [1.5, 3.0]
    assert len(long) == len(DATES)


def test_yfinance_retries_network_error_then_gives_up():
    slept: list[float] = []
    fake = FakeDownloader(good=["AAPL"], fail_times=10, error=ConnectionError("reset by peer"))
    with pytest.raises(DataError, match=r"AAPL after 3 attempts: reset by peer"):
        qf.sources.yfinance(["AAPL"], downloader=fake, retries=2, backoff=1, sleep=slept.append)
    assert slept == [1, 2]


def test_yfinance_ticker_empty_once_is_retried_not_reported():
    """yfinance swallows a per-ticker rate limit into an empty column; ask again."""
    fake = FakeDownloader(good=["AAPL", "MSFT"], empty_first=["MSFT"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingTickersWarning)
        long = qf.sources.yfinance(["AAPL", "MSFT"], downloader=fake, sleep=lambda s: None)
    assert sorted(long["ticker"].unique()) == ["AAPL", "MSFT"]
    assert long.attrs["missing"] == []


def test_yfinance_all_empty_is_an_error():
    fake = FakeDownloader(good=[])
    with pytest.raises(DataError, match="no prices for any of: BAD1, BAD2"):
        qf.sources.yfinance(["BAD1", "BAD2"], downloader=fake, sleep=lambda s: None)


@pytest.mark.parametrize("bad", [[], [""], ["AAPL", "  "], ["A B"]])
def test_yfinance_bad_ticker_list(bad):
    with pytest.raises(DataError):
        qf.sources.yfinance(bad, downloader=FakeDownloader())


# ----------------------------------------------------------------------------- csv
def test_csv_wide(tmp_path):
    p = tmp_path / "wide.csv"
    p.write_text("date,AAA,BBB\n2024-01-02,10,20\n2024-01-03,,21\n2024-01-04,11.5,22\n")
    long = qf.sources.csv(p)
    assert list(long.columns) == ["date", "ticker", "close", "volume"]
    assert len(long) == 5  # the empty cell is dropped, not zero
    got = long.pivot(index="date", columns="ticker", values="close")
    assert got.loc["2024-01-04", "AAA"] == 11.5
    assert np.isnan(got.loc["2024-01-03", "AAA"])
    assert long.attrs["has_volume"] is False


def test_csv_long_with_volume_any_case(tmp_path):
    p = tmp_path / "long.csv"
    p.write_text("Date,Ticker,Close,Volume\n2024-01-02,AAA,10,100\n2024-01-02,007,5,\n"
                 "2024-01-03,AAA,11,200\n")
    long = qf.sources.csv(p)
    assert sorted(long["ticker"].astype(str).unique()) == ["007", "AAA"]  # kept as text
    assert long.attrs["has_volume"] is True
    row = long[(long["ticker"] == "AAA") & (long["date"] == "2024-01-03")]
    assert row["volume"].item() == 200 and row["close"].item() == 11


@pytest.mark.parametrize("text, match", [
    ("date,AAA\n2024-01-02,10\n2024-01-03,-1\n", r"positive.*AAA on 2024-01-03"),
    ("date,AAA\n2024-01-02,10\n2024-01-03,abc\n", r"non-numeric price 'abc' for ticker AAA on 2024-01-03"),
    ("date,AAA\n2024-01-02,10\nnot-a-date,11\n", r"unparsable date 'not-a-date' \(data row 2\)"),
    ("date,AAA,AAA\n2024-01-02,10,11\n", r"ticker AAA appears twice"),
    ("date,AAA\n2024-01-02,10\n2024-01-02,11\n", r"date 2024-01-02 appears twice \(data rows 1 and 2\)"),
    ("date\n2024-01-02\n", r"at least one ticker column"),
    ("date,AAA\n", r"header only"),
    ("", r"empty file"),
    ("date,ticker,close\n2024-01-02,AAA,0\n", r"positive finite.*AAA on 2024-01-02 \(row 0\)"),
    ("date,ticker,close\n2024-01-02,AAA,10\n2024-01-02,AAA,11\n", r"duplicate.*AAA on 2024-01-02"),
    ("date,ticker,close\n2024-01-02,AAA,inf\n", r"positive finite.*AAA"),
    ("date,ticker,close,volume\n2024-01-02,AAA,1,-5\n", r"volume.*AAA"),
    ("date,ticker,close\n2024-01-02,,10\n", r"missing ticker in row 0"),
    ("date,ticker,close\n2024-01-02,AAA,10,99\n", r"malformed CSV"),
])
def test_csv_bad_inputs_name_the_problem(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=match) as err:
        qf.sources.csv(p)
    assert str(p) in str(err.value)


def test_csv_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        qf.sources.csv(tmp_path / "nope.csv")


# ----------------------------------------------------------------------------- sample
def test_sample_long_round_trips_to_load_sample(sample_prices):
    long = qf.sources.sample()
    assert list(long.columns) == ["date", "ticker", "close", "volume"]
    assert int(sample_prices.notna().sum().sum()) == len(long)
    wide = long.assign(ticker=long["ticker"].astype(str)).pivot(index="date", columns="ticker", values="close")
    expected = sample_prices.dropna(how="all")
    pd.testing.assert_frame_equal(wide[list(expected.columns)], expected,
                                  check_names=False, check_column_type=False)
