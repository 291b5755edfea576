"""qf.sources.factor_model: capm, ff3, ff5, carhart from the Ken French files.

tests/fixtures/french_models/ holds excerpts of the six library files a model can read, in
the library's layout (description lines, a header row opening with a comma, ``Mom`` padded
with spaces, CRLF line ends, the monthly files' annual sections and copyright lines; the
5-factor and momentum monthly files zipped as ``<name>_CSV.zip`` as the site serves them),
truncated to a few months: the three factors daily Jul-Sep and Nov 1926, momentum daily from
its first day (1926-11-03), the five factors daily from their first month (Jul 1963), and
monthly 1926-07..1927-03 and 1963-07..12. Values are copied from the library's files
(several vintages, 2018-2025). Downloads are injected (``fetch=``); nothing touches the network.
"""

from __future__ import annotations

import io
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import quantfit as qf
from quantfit.data.sources.factor_models import (
    FILES,
    MODELS,
    FactorDatesWarning,
    dataset_name,
)
from quantfit.data.sources.french import FTP_URL
from quantfit.errors import DataError

FIX = Path(__file__).parent / "fixtures" / "french_models"


def load(name, freq, **kw):
    return qf.sources.factor_model(name, freq, FIX, download=False, **kw)


@pytest.mark.parametrize("name, freq, columns, first, last, rows", [
    ("capm", "D", ["Mkt-RF", "RF"], "1926-07-01", "1926-11-30", 99),
    ("ff3", "D", ["Mkt-RF", "SMB", "HML", "RF"], "1926-07-01", "1926-11-30", 99),
    ("ff5", "D", ["Mkt-RF", "SMB", "HML", "RMW", "CMA", "RF"], "1963-07-01", "1963-07-31", 22),
    ("carhart", "D", ["Mkt-RF", "SMB", "HML", "MOM", "RF"], "1926-11-03", "1926-11-30", 23),
    ("capm", "M", ["Mkt-RF", "RF"], "1926-07-31", "1963-12-31", 15),
    ("ff3", "M", ["Mkt-RF", "SMB", "HML", "RF"], "1926-07-31", "1963-12-31", 15),
    ("ff5", "M", ["Mkt-RF", "SMB", "HML", "RMW", "CMA", "RF"], "1963-07-31", "1963-12-31", 6),
    ("carhart", "M", ["Mkt-RF", "SMB", "HML", "MOM", "RF"], "1927-01-31", "1963-12-31", 9),
])
def test_models_columns_and_dates(name, freq, columns, first, last, rows):
    ff = load(name, freq)
    assert list(ff.columns) == columns
    assert ff.index.name == "date" and ff.index.dtype == "datetime64[us]"
    assert ff.index.is_monotonic_increasing and not ff.index.has_duplicates
    assert (ff.index[0], ff.index[-1], len(ff)) == (pd.Timestamp(first), pd.Timestamp(last), rows)
    assert (ff.dtypes == "float64").all()
    assert ff.attrs["model"] == name and ff.attrs["freq"] == freq
    assert ff.attrs["factors"] == columns[:-1] == list(MODELS[name])
    assert [Path(s).name.split("_CSV")[0].split(".")[0] for s in ff.attrs["sources"]] == \
        [dataset_name(base, freq) for base in FILES[name]]
    if freq == "M":
        assert ff.index.is_month_end.all()   # the labels qf.compound(..., "M") gives


def test_values_are_decimals_from_the_files():
    d = load("carhart", "D")
    # 19261103 in the files: Mkt-RF 0.20, SMB -0.20, HML -0.33, RF 0.013; Mom 0.57 (percent)
    np.testing.assert_allclose(d.loc["1926-11-03"].to_numpy(), [0.0020, -0.0020, -0.0033, 0.0057, 0.00013])
    m = load("carhart", "M")
    np.testing.assert_allclose(m.loc["1963-12-31"].to_numpy(), [0.0183, -0.0216, -0.0002, 0.0175, 0.0029])
    f5 = load("ff5", "M")   # read from the zip; the annual row (1964: 12.54) stays out
    np.testing.assert_allclose(f5.loc["1963-07-31"].to_numpy(), [-0.0039, -0.0041, -0.0097, 0.0068, -0.0118, 0.0027])
    assert not np.isclose(f5.to_numpy(), 0.1254).any()
    assert not np.isclose(m["MOM"].to_numpy(), 0.2384).any()   # momentum's annual 1927


def test_carhart_starts_where_momentum_starts():
    ff3 = load("ff3", "D")
    carhart = load("carhart", "D")
    # 1926-11-01 is in the three-factor file but before the momentum series begins
    assert pd.Timestamp("1926-11-01") in ff3.index and pd.Timestamp("1926-11-01") not in carhart.index
    pd.testing.assert_frame_equal(carhart[["Mkt-RF", "SMB", "HML", "RF"]], ff3.loc[carhart.index, ["Mkt-RF", "SMB", "HML", "RF"]])
    monthly = load("carhart", "M")
    assert monthly.index[0] == pd.Timestamp("1927-01-31")   # Mom's first month; ff3 starts 1926-07


def copy_fixtures(tmp_path, *names):
    for name in names:
        shutil.copy(FIX / name, tmp_path / name)
    return tmp_path


def test_date_inside_the_common_range_in_one_file_only_warns_and_drops(tmp_path):
    copy_fixtures(tmp_path, "F-F_Research_Data_Factors_daily.CSV")
    text = (FIX / "F-F_Momentum_Factor_daily.CSV").read_bytes().decode("latin-1")
    assert "19261115,  -0.06\r\n" in text
    (tmp_path / "F-F_Momentum_Factor_daily.CSV").write_bytes(
        text.replace("19261115,  -0.06\r\n", "").encode("latin-1"))
    with pytest.warns(FactorDatesWarning, match=r"1 date\(s\) inside 1926-11-03 to 1926-11-30 .* \(first 1926-11-15\)"):
        ff = qf.sources.factor_model("carhart", "D", tmp_path, download=False)
    assert pd.Timestamp("1926-11-15") not in ff.index and len(ff) == 22


def zip_of(csv_path: Path, member: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(member or csv_path.name, csv_path.read_bytes())
    return buf.getvalue()


def test_files_by_the_librarys_names_zip_preferred_over_csv(tmp_path):
    daily = FIX / "F-F_Research_Data_Factors_daily.CSV"
    # the csv as extracted, lower-case extension: found
    shutil.copy(daily, tmp_path / "F-F_Research_Data_Factors_daily.csv")
    a = qf.sources.factor_model("ff3", "D", tmp_path, download=False)
    assert a.attrs["sources"] == [str(tmp_path / "F-F_Research_Data_Factors_daily.csv")]
    # the zip as downloaded, beside it, holding different data: the zip wins (documented order)
    text = daily.read_bytes().decode("latin-1").replace("19260701,    0.10,", "19260701,    9.99,")
    changed = tmp_path / "changed" / "F-F_Research_Data_Factors_daily.CSV"
    changed.parent.mkdir()
    changed.write_bytes(text.encode("latin-1"))
    (tmp_path / "F-F_Research_Data_Factors_daily_CSV.zip").write_bytes(zip_of(changed))
    b = qf.sources.factor_model("ff3", "D", tmp_path, download=False)
    assert b.attrs["sources"] == [str(tmp_path / "F-F_Research_Data_Factors_daily_CSV.zip")]
    assert b.loc["1926-07-01", "Mkt-RF"] == pytest.approx(0.0999)
    pd.testing.assert_frame_equal(b.iloc[1:], a.iloc[1:])


def test_two_files_differing_only_in_case_are_refused(tmp_path):
    shutil.copy(FIX / "F-F_Research_Data_Factors_daily.CSV", tmp_path / "F-F_Research_Data_Factors_daily.CSV")
    shutil.copy(FIX / "F-F_Research_Data_Factors_daily.CSV", tmp_path / "F-F_Research_Data_Factors_daily.csv")
    with pytest.raises(DataError, match="2 files match F-F_Research_Data_Factors_daily.csv"):
        qf.sources.factor_model("ff3", "D", tmp_path, download=False)


def test_downloads_what_the_folder_lacks_through_fetch(tmp_path):
    copy_fixtures(tmp_path, "F-F_Research_Data_Factors.CSV")     # momentum missing locally
    urls = []

    def fetch(url):
        urls.append(url)
        return (FIX / "F-F_Momentum_Factor_CSV.zip").read_bytes()

    ff = qf.sources.factor_model("carhart", "M", tmp_path, fetch=fetch)
    assert urls == [FTP_URL.format(name="F-F_Momentum_Factor")]
    assert urls[0] == "https://mba.tuck.dartmouth.edu/pages/faculty/ken.french/ftp/F-F_Momentum_Factor_CSV.zip"
    assert ff.attrs["sources"] == [str(tmp_path / "F-F_Research_Data_Factors.CSV"), urls[0]]
    pd.testing.assert_frame_equal(ff, load("carhart", "M"))
    assert list(tmp_path.iterdir()) == [tmp_path / "F-F_Research_Data_Factors.CSV"]  # nothing written


def test_missing_folder_downloads_every_file(tmp_path):
    blobs = {FTP_URL.format(name=n): zip_of(FIX / f"{n}.CSV")
             for n in ("F-F_Research_Data_Factors_daily", "F-F_Momentum_Factor_daily")}
    ff = qf.sources.factor_model("carhart", "D", tmp_path / "nope", fetch=blobs.__getitem__)
    assert ff.attrs["sources"] == list(blobs)
    pd.testing.assert_frame_equal(ff, load("carhart", "D"))


@pytest.mark.parametrize("error", [
    DataError("could not download https://x: <urlopen error [Errno -3] Temporary failure\nin name resolution>"),
    OSError("Network is unreachable"),
])
def test_offline_without_the_file_is_one_line_naming_file_folder_and_url(tmp_path, error):
    copy_fixtures(tmp_path, "F-F_Research_Data_Factors_daily.CSV")

    def fetch(url):
        raise error

    with pytest.raises(DataError) as info:
        qf.sources.factor_model("carhart", "D", tmp_path, fetch=fetch)
    msg = str(info.value)
    assert "\n" not in msg
    url = "https://mba.tuck.dartmouth.edu/pages/faculty/ken.french/ftp/F-F_Momentum_Factor_daily_CSV.zip"
    assert msg.startswith(f"Ken French dataset F-F_Momentum_Factor_daily is not in {tmp_path}/ and could not be downloaded (")
    assert msg.endswith(f"place F-F_Momentum_Factor_daily_CSV.zip (or the F-F_Momentum_Factor_daily.csv "
                        f"inside it) in {tmp_path}/ (download it from {url})")


def test_offline_through_the_default_downloader(tmp_path, monkeypatch):
    def no_network(url, timeout=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(DataError, match=r"^Ken French dataset F-F_Research_Data_5_Factors_2x3 is not in .*"
                                        r"Temporary failure in name resolution.*place "
                                        r"F-F_Research_Data_5_Factors_2x3_CSV.zip"):
        qf.sources.factor_model("ff5", "M", tmp_path)


def test_download_false_never_fetches(tmp_path):
    def fetch(url):
        raise AssertionError("must not be called")

    with pytest.raises(DataError, match=r"is not in .* and download=False: place F-F_Research_Data_Factors_CSV.zip"):
        qf.sources.factor_model("capm", "M", tmp_path, fetch=fetch, download=False)


def test_a_downloaded_page_that_is_not_a_zip(tmp_path):
    with pytest.raises(DataError, match=r"could not be downloaded \(.*not a zip file\): place"):
        qf.sources.factor_model("ff3", "D", tmp_path, fetch=lambda url: b"<html>moved</html>")


def test_monthly_file_under_the_daily_name_is_refused(tmp_path):
    shutil.copy(FIX / "F-F_Research_Data_Factors.CSV", tmp_path / "F-F_Research_Data_Factors_daily.CSV")
    with pytest.raises(DataError, match=r"expected daily rows keyed YYYYMMDD, found YYYYMM keys \(wrong file\?\)"):
        qf.sources.factor_model("ff3", "D", tmp_path, download=False)


def test_file_without_the_models_columns_is_refused(tmp_path):
    shutil.copy(FIX / "F-F_Research_Data_Factors_daily.CSV", tmp_path / "F-F_Research_Data_5_Factors_2x3_daily.csv")
    with pytest.raises(DataError, match=r"no column RMW, CMA \(has Mkt-RF, SMB, HML, RF; wrong file\?\)"):
        qf.sources.factor_model("ff5", "D", tmp_path, download=False)
    shutil.copy(FIX / "F-F_Research_Data_Factors_daily.CSV", tmp_path / "F-F_Research_Data_Factors_daily.CSV")
    shutil.copy(FIX / "F-F_Research_Data_Factors_daily.CSV", tmp_path / "F-F_Momentum_Factor_daily.CSV")
    with pytest.raises(DataError, match=r"expected one momentum column 'Mom'"):
        qf.sources.factor_model("carhart", "D", tmp_path, download=False)


@pytest.mark.parametrize("name, freq, match", [
    ("ff4", "D", r"unknown factor model 'ff4'; choose one of capm, ff3, ff5, carhart"),
    ("", "D", r"unknown factor model ''; choose one of capm, ff3, ff5, carhart"),
    (None, "D", r"unknown factor model None"),
    ("ff3", "W", r"freq must be 'D' \(daily files\) or 'M' \(monthly files\), got 'W'"),
    ("ff3", "d", r"got 'd'"),
])
def test_unknown_model_or_freq(name, freq, match):
    with pytest.raises(DataError, match=match):
        qf.sources.factor_model(name, freq, FIX, download=False)


def test_factors_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "factors").write_text("not a folder")
    with pytest.raises(DataError, match=r"factors_dir .*factors is not a directory"):
        qf.sources.factor_model("ff3", "D", tmp_path / "factors", download=False)


def test_model_names_are_case_insensitive():
    pd.testing.assert_frame_equal(qf.sources.factor_model("FF3", "M", FIX, download=False), load("ff3", "M"))


def test_excess_returns_against_the_models_rf():
    ff = load("ff5", "M")
    monthly = pd.DataFrame({"A": [0.02, -0.01, 0.03, np.nan, 0.01, 0.00]}, index=ff.index)
    ex = qf.excess_returns(monthly, ff["RF"])
    pd.testing.assert_frame_equal(ex, monthly.sub(ff["RF"], axis=0))
    lg = qf.excess_returns(np.log1p(monthly["A"]), ff["RF"], kind="log")
    pd.testing.assert_series_equal(lg, (np.log1p(monthly["A"]) - np.log1p(ff["RF"])).rename("A"))
    # a return date the factor file does not cover is an error, never a silent NaN
    later = monthly.set_axis(ff.index.shift(1, freq="ME"))
    with pytest.raises(DataError, match=r"rf has no value for 1 of 6 return dates \(first 1964-01-31\)"):
        qf.excess_returns(later, ff["RF"])
