"""Command-line input from the wild (issue 16): files, dates, tickers and numbers that must end in
exit 2 and one line ``quantfit: error: ...`` with the store byte-identical, or in the right data."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import quantfit as qf
from quantfit.cli import main


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_process(argv, timeout=120):
    """A real process, for inputs that could block (a FIFO): a hang fails instead of hanging."""
    done = subprocess.run([sys.executable, "-m", "quantfit.cli", *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout, check=False)
    return done.returncode, done.stdout, done.stderr


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def one_line_error(code: int, err: str, match: str):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quantfit: error: "), err
    assert match in lines[0], err
    assert "Traceback" not in err


@pytest.fixture
def store(tmp_path):
    """A store holding BRK/B and SPY on 80 business days (enough for a 20-row window)."""
    dates = pd.bdate_range("2024-01-02", periods=80)
    rng = np.random.default_rng(3)
    rows = [pd.DataFrame({"date": dates, "ticker": t, "close": 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 80)))})
            for t in ("BRK/B", "SPY")]
    path = tmp_path / "store"
    qf.PriceStore(path).ingest(pd.concat(rows, ignore_index=True))
    return path


def refused(argv, capsys, store: Path, match: str):
    before = digest(store)
    code, _, err = run(argv, capsys)
    one_line_error(code, err, match)
    assert digest(store) == before


# ----------------------------------------------------------------------------- ingest csv
def test_ambiguous_dates_refused_then_read_with_date_format(tmp_path, capsys, store):
    days = pd.bdate_range("2024-01-02", "2024-01-12")
    p = tmp_path / "de.csv"
    p.write_text("Datum,SAP\n" + "".join(f"{d:%d.%m.%Y},{d.day}\n" for d in days))
    refused(["ingest", "csv", p, "--store", store], capsys, store, "--date-format %d.%m.%Y (day first)")
    code, _, err = run(["ingest", "csv", p, "--date-format", "%d.%m.%Y", "--store", store], capsys)
    assert code == 0, err
    got = qf.PriceStore(store).prices(["SAP"])["SAP"]
    assert list(got.index) == list(days) and got.tolist() == list(days.day.astype(float))


def test_yahoo_download_ticker_from_file_name_said_in_one_line(tmp_path, capsys, store):
    p = tmp_path / "AAPL.csv"
    p.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-02,1,2,0.5,185.64,184.73,82488700\n")
    code, _, err = run(["ingest", "csv", p, "--store", store], capsys)
    assert code == 0
    assert err.splitlines() == [(f"quantfit: note: {p}: one ticker's history: ticker AAPL from the file "
                                 "name (--ticker sets it), prices from column 'Adj Close'")]
    assert qf.PriceStore(store).tickers() == ["AAPL", "BRK/B", "SPY"]
    code, _, err = run(["ingest", "csv", p, "--ticker", "brk.a", "--store", store], capsys)
    assert code == 0 and "ticker BRK.A, prices from column 'Adj Close'" in err
    assert qf.PriceStore(store).prices(["BRK.A"])["BRK.A"].tolist() == [184.73]


@pytest.mark.parametrize("content, match", [
    ("date,A,B\n2024-01-02,1,2\n", "is a wide file that names its tickers itself"),
])
def test_ticker_option_with_a_file_that_names_tickers(tmp_path, capsys, store, content, match):
    p = tmp_path / "w.csv"
    p.write_text(content)
    refused(["ingest", "csv", p, "--ticker", "X", "--store", store], capsys, store, match)


def test_dev_zero_directory_and_unbounded_header_are_refused(tmp_path, capsys, store):
    refused(["ingest", "csv", "/dev/zero", "--store", store], capsys, store, "/dev/zero: is a device")
    refused(["ingest", "csv", tmp_path, "--store", store], capsys, store, "is a directory")
    huge = tmp_path / "huge.csv"
    huge.write_bytes(b"date" + b"," * (2 << 20))
    refused(["ingest", "csv", huge, "--store", store], capsys, store, "no line break in the first")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("date,CAFÉ\n2024-01-02,1\n".encode("latin-1"))
    refused(["ingest", "csv", latin, "--store", store], capsys, store, "not UTF-8 text (byte 0xc9 on line 1)")


def test_fifo_is_refused_not_waited_on(tmp_path, store):
    fifo = tmp_path / "prices.csv"
    os.mkfifo(fifo)
    before = digest(store)
    code, _, err = run_process(["ingest", "csv", fifo, "--store", store])
    one_line_error(code, err, "is a FIFO (named pipe); give a regular file")
    assert digest(store) == before


# ----------------------------------------------------------------------------- prices
def test_prices_tickers_and_dates(capsys, store):
    code, out, err = run(["prices", "--store", store, "--tickers", "brk/b,spy", "--start", "Jan 10, 2024",
                          "--end", "20240111"], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == "date,BRK/B,SPY" and len(out.splitlines()) == 3
    refused(["prices", "--store", store, "--start", "05.01.2024"], capsys, store,
            "bad date '05.01.2024': day and month could be either way round")
    refused(["prices", "--store", store, "--tickers", "has space"], capsys, store, "contains a space")
    refused(["prices", "--store", store, "--start", "4870-01-01"], capsys, store, "outside the supported range")


# ----------------------------------------------------------------------------- report
@pytest.mark.parametrize("years", ["nan", "inf", "1e9", "0", "-1", "ten"])
def test_report_years_must_be_a_sane_number(tmp_path, capsys, years):
    code, _, err = run(["report", "--out", tmp_path / "out", "--years", years], capsys)
    one_line_error(code, err, f"expected a number of years in (0, 500], got '{years}'")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- refresh
def test_universe_value_that_is_not_a_file_is_a_ticker_list(tmp_path, capsys, store, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no file called BRK/B here
    out = tmp_path / "out"
    code, _, err = run(["refresh", "--store", store, "--out", out, "--universe", "brk/b",
                        "--benchmark", "spy", "--window", "20", "--no-report", "-q"], capsys)
    assert code == 0, err
    betas = qf.read_betas(out)
    assert list(betas.index) == ["BRK/B"] and betas.name == "SPY"


@pytest.mark.parametrize("content, match", [
    ("# tickers\nSPY\nhas space\n", "line 3: ticker 'has space' contains a space"),
    ("BRK/B, BRK.B\n\tCTRL\x01\n", "line 2: ticker 'CTRL\\x01' contains a control character"),
    ("# nothing\n\n", "lists no tickers"),
])
def test_universe_file_lines_are_checked(tmp_path, capsys, store, content, match):
    u = tmp_path / "universe.txt"
    u.write_text(content)
    refused(["refresh", "--store", store, "--out", tmp_path / "out", "--universe", u], capsys, store, match)
    assert not (tmp_path / "out").exists()


def test_universe_and_config_fifos_are_refused(tmp_path, store):
    fifo = tmp_path / "universe.txt"
    os.mkfifo(fifo)
    code, _, err = run_process(["refresh", "--store", store, "--out", tmp_path / "out", "--universe", fifo])
    one_line_error(code, err, "universe file")
    assert "is a FIFO" in err
    code, _, err = run_process(["refresh", "--config", fifo])
    one_line_error(code, err, "is a FIFO")
    assert not (tmp_path / "out").exists()


def test_latin1_config_is_one_line_error(tmp_path, capsys, store):
    cfg = tmp_path / "qf.toml"
    cfg.write_bytes('# Société\nstore = "store"\n'.encode("latin-1"))
    refused(["refresh", "--config", cfg], capsys, store, "not UTF-8 text (byte 0xe9 on line 1); save the file as UTF-8")
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (2 << 20))
    refused(["refresh", "--config", big], capsys, store, "larger than the 1,048,576 allowed")
