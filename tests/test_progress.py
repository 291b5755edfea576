"""quantfit.progress: a bar with ETA on a terminal, nothing elsewhere; the CLI's --quiet."""

from __future__ import annotations

import io

import pandas as pd

from quantfit.cli import main
from quantfit.progress import Progress, format_count, format_duration


class Tty(io.StringIO):
    def isatty(self):
        return True


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_bar_with_eta_on_a_terminal():
    out, clock = Tty(), Clock()
    with Progress("ingest", total=1000, unit="rows", stream=out, clock=clock, delay=0.5) as bar:
        bar.update(100)
        assert out.getvalue() == ""          # nothing before the delay: short tasks never flicker
        clock.t = 2.0
        bar.update(150)                      # 250 of 1000 in 2 s: 6 s to go
        line = out.getvalue().split("\r")[-1]
        assert line.startswith("ingest  [") and "25%" in line and "250/1k rows" in line
        assert "0:02" in line and "ETA 0:06" in line
        clock.t = 2.05
        bar.update(10)                       # within min_interval: not redrawn
        assert out.getvalue().count("\r") == 1
        clock.t = 8.0
        bar(1000, 1000)                      # the callback form library code uses
    text = out.getvalue()
    assert "100%" in text and text.endswith("\n") and text.rstrip().endswith("ingest  1k rows  done in 0:08")


def test_silent_when_not_a_terminal_or_quiet():
    for stream, quiet in ((io.StringIO(), False), (Tty(), True)):
        clock = Clock()
        with Progress("x", total=10, stream=stream, quiet=quiet, clock=clock) as bar:
            clock.t = 5
            bar.update(5)
        assert stream.getvalue() == ""


def test_unknown_total_and_formats():
    out, clock = Tty(), Clock()
    bar = Progress("scan", stream=out, clock=clock, delay=0)
    clock.t = 65
    bar.update(1234)
    assert out.getvalue().endswith("scan  1.23k  1:05")
    bar.close()
    bar.close()  # idempotent
    assert format_count(950) == "950" and format_count(56_700_000) == "56.7M" and format_count(2.5e9) == "2.5G"
    assert format_duration(3725) == "1:02:05" and format_duration(59.6) == "1:00"


def test_cli_ingest_and_store_commands_are_quiet_off_a_terminal(tmp_path, capsys):
    csv = tmp_path / "p.csv"
    pd.DataFrame({"date": ["2024-01-02", "2024-01-03"], "ticker": "AAA", "close": [1.0, 2.0]}).to_csv(csv, index=False)
    st = str(tmp_path / "st")
    for argv in (["ingest", "csv", str(csv), "--store", st], ["ingest", "csv", str(csv), "--store", st, "-q"],
                 ["store", "compact", "--store", st, "--quiet"], ["store", "verify", "--store", st]):
        assert main(argv) == 0
        out, err = capsys.readouterr()
        assert err == "" and out.count("\n") == 1  # one summary line, no bar (not a TTY)
