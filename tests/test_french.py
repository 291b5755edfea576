"""Ken French data-library loader: parser on fixture files in the library's exact format.

The fixtures in tests/fixtures/french/ copy the library's layout: description lines, a column
row starting with a comma, CRLF line ends, YYYYMMDD or YYYYMM keys, an "Annual Factors"
section in the monthly file, the copyright footer, and the daily file zipped as
``<name>_CSV.zip`` like the ftp site serves it. Downloading is injected (``fetch=``).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import quantfit as qf
from quantfit.data.sources.french import FTP_URL, parse_french_csv
from quantfit.errors import DataError

FIX = Path(__file__).parent / "fixtures" / "french"
DAILY = FIX / "F-F_Research_Data_Factors_daily.CSV"
MONTHLY = FIX / "F-F_Research_Data_Factors.CSV"
DAILY_ZIP = FIX / "F-F_Research_Data_Factors_daily_CSV.zip"


def test_daily_csv_percent_to_decimal():
    ff = qf.sources.french(DAILY)
    assert list(ff.columns) == ["Mkt-RF", "SMB", "HML", "RF"]
    assert ff.index.name == "date" and isinstance(ff.index, pd.DatetimeIndex)
    assert len(ff) == 6  # footer dropped
    assert ff.index[0] == pd.Timestamp("1926-07-01") and ff.index[-1] == pd.Timestamp("2024-01-31")
    assert ff.loc["1926-07-01", "Mkt-RF"] == pytest.approx(0.0010)
    assert ff.loc["2024-01-31", "Mkt-RF"] == pytest.approx(-0.0174)
    assert ff.loc["2024-01-30", "RF"] == pytest.approx(0.00021)
    assert (ff.dtypes == "float64").all()


def test_monthly_csv_annual_section_dropped_month_end_dates():
    ff = qf.sources.french(MONTHLY)
    assert len(ff) == 5
    assert list(ff.index) == list(pd.to_datetime(["1926-07-31", "1926-08-31", "1926-09-30",
                                                  "2023-11-30", "2023-12-31"]))
    assert ff.loc["2023-12-31", "SMB"] == pytest.approx(0.0634)
    # values from the annual rows (29.47 in 1927) must not leak in
    assert not np.isclose(ff.to_numpy(), 0.2947).any()


def test_zip_equals_csv():
    pd.testing.assert_frame_equal(qf.sources.french(DAILY_ZIP), qf.sources.french(DAILY))


def test_download_by_name_uses_ftp_url_and_injected_fetch():
    urls = []

    def fetch(url):
        urls.append(url)
        return DAILY_ZIP.read_bytes()

    ff = qf.sources.french("F-F_Research_Data_Factors_daily", fetch=fetch)
    assert urls == ["https://mba.tuck.dartmouth.edu/pages/faculty/ken.french/ftp/"
                    "F-F_Research_Data_Factors_daily_CSV.zip"]
    assert urls[0] == FTP_URL.format(name="F-F_Research_Data_Factors_daily")
    pd.testing.assert_frame_equal(ff, qf.sources.french(DAILY))


def test_download_error_is_data_error():
    def fetch(url):
        raise DataError(f"could not download {url}: HTTP 404")

    with pytest.raises(DataError, match="HTTP 404"):
        qf.sources.french("No_Such_Dataset", fetch=fetch)
    with pytest.raises(DataError, match="not a zip"):
        qf.sources.french("Some_Dataset", fetch=lambda url: b"<html>not found</html>")
    with pytest.raises(DataError, match="bad Ken French dataset name"):
        qf.sources.french("bad name; rm", fetch=lambda url: b"")


def test_portfolio_file_first_section_missing_codes(tmp_path):
    """Portfolio files have several sections and -99.99 for missing: first section, NaN."""
    text = ("This file was created using the 202401 CRSP database.\r\n"
            "  Average Value Weighted Returns -- Monthly\r\n"
            ",SMALL LoBM,ME1 BM2,BIG HiBM\r\n"
            "192607,   1.20, -99.99,   0.50\r\n"
            "192608,   2.00,   1.00, -999\r\n"
            "\r\n"
            "  Average Equal Weighted Returns -- Monthly\r\n"
            ",SMALL LoBM,ME1 BM2,BIG HiBM\r\n"
            "192607,   9.00,   9.00,   9.00\r\n")
    p = tmp_path / "25_Portfolios.csv"
    p.write_text(text, newline="")
    ff = qf.sources.french(p)
    assert list(ff.columns) == ["SMALL LoBM", "ME1 BM2", "BIG HiBM"]
    assert len(ff) == 2
    assert np.isnan(ff.iloc[0, 1]) and np.isnan(ff.iloc[1, 2])
    assert ff.iloc[0, 0] == pytest.approx(0.012)


@pytest.mark.parametrize("text, match", [
    ("just some text\nno data here\n", "no data rows"),
    ("19260701,0.1,0.2\n", "no column header"),
    (",A,B\n19260701,0.1\n", "has 1 values, header has 2"),
    (",A,B\n19261301,0.1,0.2\n", "date key: date '19261301' \\(row 0\\) does not match date_format '%Y%m%d'"),
])
def test_malformed(text, match):
    with pytest.raises(DataError, match=match):
        parse_french_csv(text, "x.csv")


def test_missing_file_and_zip_without_csv(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        qf.sources.french(tmp_path / "nope.zip")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "hi")
    p = tmp_path / "x.zip"
    p.write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="no .csv file"):
        qf.sources.french(p)


def test_rf_feeds_returns():
    ff = qf.sources.french(DAILY)
    prices = pd.DataFrame({"A": [100.0, 101, 99, 100, 102, 103]}, index=ff.index)
    ex = qf.returns(prices, rf=ff["RF"])
    raw = prices["A"].pct_change(fill_method=None).iloc[1:]
    np.testing.assert_allclose(ex["A"].to_numpy(), (raw - ff["RF"].iloc[1:]).to_numpy())
