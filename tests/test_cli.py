"""The quantfit CLI: exit codes (0 ok, 1 warnings, 2 user error), one-line errors, output."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import quantfit as qf
from quantfit.cli import main
from quantfit.data.sources import yahoo

from test_sources import FakeDownloader, history_frame


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, match: str):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("quantfit: error: ") and match in lines[0], err
    assert "Traceback" not in err


def test_ingest_sample_and_prices(tmp_path, capsys, sample_prices):
    st = str(tmp_path / "st")
    code, out, err = run(["ingest", "sample", "--store", st], capsys)
    assert code == 0 and err == ""
    assert "20 tickers" in out and "143,680 rows added" in out
    code, out, err = run(["prices", "--store", st, "--tickers", "SPY,AAPL", "--start", "2020-01-02",
                          "--end", "2020-01-31", "--tail", "3"], capsys)
    assert code == 0, err
    got = pd.read_csv(io.StringIO(out), index_col="date", parse_dates=True)
    expected = sample_prices.loc["2020-01-02":"2020-01-31", ["AAPL", "SPY"]].tail(3)
    assert list(got.columns) == ["AAPL", "SPY"] and len(got) == 3
    pd.testing.assert_frame_equal(got, expected, check_names=False, check_index_type=False,
                                  check_freq=False, rtol=1e-9)
    # re-ingesting is a no-op
    code, out, _ = run(["ingest", "sample", "--store", st], capsys)
    assert code == 0 and "0 rows added, 0 replaced, 143,680 unchanged" in out


def test_ingest_csv(tmp_path, capsys):
    p = tmp_path / "w.csv"
    p.write_text("date,AAA,BBB\n2024-01-02,10,20\n2024-01-03,11,21\n")
    st = str(tmp_path / "st")
    assert run(["ingest", "csv", str(p), "--store", st], capsys)[0] == 0
    assert qf.PriceStore(st).tickers() == ["AAA", "BBB"]


@pytest.mark.parametrize("argv, match", [
    (["ingest", "csv", "{tmp}/missing.csv", "--store", "{tmp}/st"], "missing.csv: no such file"),
    (["ingest", "csv", "{tmp}/bad.csv", "--store", "{tmp}/st"], "ticker AAA on 2024-01-03"),
    (["prices", "--store", "{tmp}/nostore"], "no store at"),
    (["prices", "--store", "{tmp}/good", "--tickers", "AAA", "NOPE"], "unknown ticker in store"),
    (["prices", "--store", "{tmp}/good", "--tickers", "AAA,,B"], "empty ticker name"),
    (["prices", "--store", "{tmp}/good", "--start", "2024-02-30"], "bad date '2024-02-30'"),
    (["prices", "--store", "{tmp}/good", "--start", "2025-01-01", "--end", "2024-01-01"], "is after end"),
    (["prices", "--store", "{tmp}/good", "--tail", "0"], "positive integer"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["ingest"], "required: SOURCE"),
    (["ingest", "csv"], "required: PATH"),
    (["ingest", "yfinance", "--store", "{tmp}/st"], "required: TICKER"),
    ([], "required: COMMAND"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, argv, match):
    (tmp_path / "bad.csv").write_text("date,AAA\n2024-01-02,10\n2024-01-03,-4\n")
    qf.PriceStore(tmp_path / "good").ingest(
        pd.DataFrame({"date": ["2024-01-02"], "ticker": ["AAA"], "close": [1.0]}))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, out, err = run([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert code == 2
    assert_one_line_error(err, match)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing created or changed


def test_store_path_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, _, err = run(["ingest", "sample", "--store", str(tmp_path / "f")], capsys)
    assert code == 2
    assert_one_line_error(err, str(tmp_path / "f"))


def test_yfinance_partial_failure_exits_1_and_lists_tickers(tmp_path, capsys, monkeypatch):
    fake = FakeDownloader(good=["AAPL", "MSFT"])
    monkeypatch.setattr(yahoo, "_default_downloader", lambda: fake)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    st = str(tmp_path / "st")
    code, out, err = run(["ingest", "yfinance", "AAPL", "bad1", "MSFT", "BAD2", "--start", "2024-01-01",
                          "--store", st], capsys)
    assert code == 1
    assert "no prices for 2 tickers: BAD1, BAD2" in err and "done with warnings" in err
    assert "Traceback" not in err
    assert "2 tickers (AAPL, MSFT)" in out
    assert fake.calls[0][1]["start"] == "2024-01-01"
    assert qf.PriceStore(st).tickers() == ["AAPL", "MSFT"]
    assert qf.PriceStore(st).prices()["AAPL"].tolist() == history_frame("AAPL")["Close"].tolist()


def test_yfinance_all_ok_exit_0_and_all_bad_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(yahoo, "_default_downloader", lambda: FakeDownloader(good=["SPY"]))
    monkeypatch.setattr(time, "sleep", lambda s: None)
    st = str(tmp_path / "st")
    assert run(["ingest", "yfinance", "SPY", "--store", st], capsys)[0] == 0
    code, _, err = run(["ingest", "yfinance", "XX1", "XX2", "--store", st], capsys)
    assert code == 2
    assert_one_line_error(err, "no prices for any of: XX1, XX2")


def test_console_script_subprocess(tmp_path):
    """The installed entry point: real process, real exit codes, no traceback."""
    exe = Path(sys.executable).parent / "quantfit"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "quantfit.cli"]
    st = str(tmp_path / "st")
    ok = subprocess.run(cmd + ["ingest", "sample", "--store", st], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(cmd + ["prices", "--store", st, "--tickers", "NOPE"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"quantfit: error: unknown ticker in store {st}: NOPE"


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "ingest" in capsys.readouterr().out
