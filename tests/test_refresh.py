"""``quantfit refresh``: end to end on the sample, incremental == full, idempotent, atomic
(SIGKILL), parameters -> result sets, config files, exit codes, ``--update yfinance``."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import quantfit as qf
from quantfit.cli import main
from quantfit.data.sources import yahoo
from quantfit.results_store import read_tidy

from test_sources import FakeDownloader, yf_download_shape

CUT = pd.Timestamp("2023-06-15")  # mid-month: the June file must be rewritten, not duplicated


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root -> (size, mtime_ns)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def manifest_of(out: Path) -> dict:
    key = (out / "LATEST").read_text().strip()
    return json.loads((out / key / "manifest.json").read_text())


def live_files(m: dict) -> dict[tuple[str, str], str]:
    """(group, month) -> part file named by a result set manifest."""
    return {(g, month): e["file"] for g, months in m["files"].items() for month, e in months.items()}


def live_files_match_disk(result_dir: Path) -> bool:
    m = json.loads((result_dir / "manifest.json").read_text())
    on_disk = {str(p.relative_to(result_dir)) for p in result_dir.glob("month=*/*")}
    return on_disk == set(live_files(m).values())


@pytest.fixture(scope="module")
def sample_long():
    """The sample as a long frame, from 2015 (enough for 252-day windows, quick to write)."""
    long = qf.sources.sample()
    return long[long["date"] >= "2015-01-01"].reset_index(drop=True)


def store_with(path: Path, long: pd.DataFrame) -> str:
    qf.PriceStore(path).ingest(long)
    return str(path)


def assert_same_results(out_a, out_b, atol=1e-12):
    """Two result directories hold the same rows, numbers equal to atol, counts exactly."""
    a, _ = read_tidy(out_a)
    b, _ = read_tidy(out_b)
    assert len(a) == len(b)
    for c in ("date", "asset", "term", "nobs", "converged", "n_iter"):
        assert (a[c].to_numpy() == b[c].to_numpy()).all(), c
    for c in ("estimate", "std_error", "t_stat", "r2", "resid_vol"):
        np.testing.assert_allclose(a[c].to_numpy(), b[c].to_numpy(), rtol=0, atol=atol, err_msg=c)


# ----------------------------------------------------------------------------- end to end
def test_default_run_on_sample_end_to_end_and_idempotent(tmp_path, monkeypatch, capsys, sample_prices):
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    code, out, err = run(["refresh"], capsys)
    elapsed = time.perf_counter() - t0
    assert code == 0, err
    assert "ingesting the embedded sample" in err and "full (new result set)" in err
    assert elapsed < 30
    assert qf.PriceStore("data/store").tickers() == sorted(sample_prices.columns)
    m = manifest_of(Path("data/results"))
    assert m["universe"] == sorted(c for c in sample_prices.columns if c != "SPY")
    assert m["params"]["regressors"] == "benchmark:SPY" and m["params"]["window"] == 252
    assert m["terms"] == ["alpha", "SPY"] and m["package_version"] == qf.__version__
    assert m["last_run"]["warnings"] == [] and m["data"]["last"] == "2024-11-29"
    assert m["results"]["rows"] == sum(e["rows"] for months in m["files"].values() for e in months.values())
    assert Path("data/results/report/index.html").is_file()
    assert live_files_match_disk(Path("data/results") / m["key"])

    # the same numbers as a direct fit on the same data
    rets = qf.returns(sample_prices)
    direct = qf.fit_rolling(rets.drop(columns="SPY"), rets["SPY"], window=252)
    latest = qf.read_betas("data/results")
    assert latest.attrs["date"] == pd.Timestamp("2024-11-29")
    np.testing.assert_allclose(latest.to_numpy(), direct.beta.iloc[-1][latest.index].to_numpy(),
                               rtol=0, atol=1e-12)
    back = qf.read_results("data/results")
    ref = direct.beta.loc[back.index]
    assert np.array_equal(np.isnan(back.beta.to_numpy()), np.isnan(ref.to_numpy()))
    np.testing.assert_allclose(back.beta.to_numpy(), ref.to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(back.stderr("SPY").to_numpy(), direct.stderr("SPY").loc[back.index].to_numpy(),
                               rtol=0, atol=1e-12)
    assert back.index[0] == direct.beta.dropna(how="all").index[0]

    # idempotent: a second run writes nothing at all, says so, exits 0
    before = snapshot(tmp_path / "data")
    code, out, err = run(["refresh"], capsys)
    assert code == 0 and "up to date" in err and "ingesting" not in err
    assert snapshot(tmp_path / "data") == before


@pytest.mark.parametrize("extra", [[], ["--window", "126", "--halflife", "40"]],
                         ids=["w252", "w126-halflife"])
def test_incremental_equals_full_recompute(tmp_path, capsys, sample_long, extra):
    inc_store = store_with(tmp_path / "inc", sample_long[sample_long["date"] <= CUT])
    args = ["--no-report", "-q", *extra]
    assert run(["refresh", "--store", inc_store, "--out", str(tmp_path / "r_inc"), *args], capsys)[0] == 0
    m1 = manifest_of(tmp_path / "r_inc")
    may = m1["files"]["0"]["2023-05"]["file"]
    june = m1["files"]["0"]["2023-06"]["file"]

    qf.PriceStore(inc_store).ingest(sample_long)  # the rest of the history arrives
    assert run(["refresh", "--store", inc_store, "--out", str(tmp_path / "r_inc"), *args], capsys)[0] == 0
    full_store = store_with(tmp_path / "full", sample_long)
    assert run(["refresh", "--store", full_store, "--out", str(tmp_path / "r_full"), *args], capsys)[0] == 0

    m2 = manifest_of(tmp_path / "r_inc")
    window = int(extra[1]) if extra else 252
    all_dates = pd.DatetimeIndex(sorted(sample_long["date"].unique()))
    new_dates = int((all_dates > CUT).sum())
    run2 = m2["last_run"]
    assert run2["mode"] == "incremental"
    assert run2["dates_fitted"] == new_dates and run2["first_fitted"] > str(CUT.date())
    assert run2["rows_fitted_on"] == new_dates + window - 1  # only the rows the new windows need
    assert run2["rows_written"] == m2["results"]["rows"] - m1["results"]["rows"]
    assert m2["key"] == m1["key"] and m2["generation"] == 2
    assert m2["files"]["0"]["2023-05"]["file"] == may     # untouched month kept as is
    assert m2["files"]["0"]["2023-06"]["file"] != june    # the cut month rewritten, once
    assert live_files_match_disk(tmp_path / "r_inc" / m2["key"])
    assert_same_results(tmp_path / "r_inc", tmp_path / "r_full")


def test_revised_history_and_changed_universe_recompute_only_what_changed(tmp_path, capsys, sample_long):
    store = store_with(tmp_path / "s", sample_long)
    out = str(tmp_path / "r")
    base = ["refresh", "--store", store, "--out", out, "--no-report", "-q"]
    assert run(base + ["--universe", "AAPL,JPM,XOM"], capsys)[0] == 0
    before = live_files(manifest_of(Path(out)))
    # A revised close far in the past: JPM's windows from that date on are refitted (the
    # store's change log says which ticker and from when), the other assets are not.
    rev = sample_long[(sample_long["ticker"] == "JPM") & (sample_long["date"] == "2019-03-15")].copy()
    rev["close"] *= 1.05
    qf.PriceStore(store).ingest(rev)
    assert run(base + ["--universe", "AAPL,JPM,XOM"], capsys)[0] == 0
    m = manifest_of(Path(out))
    assert m["last_run"]["mode"] == "incremental" and "1 asset(s) with revised prices" in m["last_run"]["reason"]
    assert m["last_run"]["assets_fitted"] == 1 and m["last_run"]["first_fitted"] == "2019-03-15"
    after = live_files(m)
    assert all(after[k] == f for k, f in before.items() if k[1] < "2019-03")  # earlier months kept
    fresh = store_with(tmp_path / "s2", pd.concat([sample_long, rev]).drop_duplicates(
        ["date", "ticker"], keep="last"))
    assert run(["refresh", "--store", fresh, "--out", str(tmp_path / "r2"), "--no-report", "-q",
                "--universe", "AAPL,JPM,XOM"], capsys)[0] == 0
    assert_same_results(out, tmp_path / "r2")

    # An added asset: fitted alone, merged into the last group while that group is small
    # (here the only one, of three assets; a group of 1,000 would get a new group).
    assert run(base + ["--universe", "AAPL,JPM,XOM,WMT"], capsys)[0] == 0
    m2 = manifest_of(Path(out))
    assert m2["key"] == m["key"] and m2["last_run"]["mode"] == "incremental"
    assert "1 asset(s) added" in m2["last_run"]["reason"] and m2["last_run"]["assets_fitted"] == 1
    assert m2["universe"] == ["AAPL", "JPM", "WMT", "XOM"]
    assert [g["assets"] for g in m2["groups"]] == [["AAPL", "JPM", "XOM", "WMT"]]
    assert live_files_match_disk(Path(out) / m2["key"])
    assert set(qf.read_betas(out).index) == {"AAPL", "JPM", "WMT", "XOM"}
    assert run(["refresh", "--store", store, "--out", str(tmp_path / "r3"), "--no-report", "-q",
                "--universe", "AAPL,JPM,XOM,WMT"], capsys)[0] == 0
    assert_same_results(out, tmp_path / "r3")


def test_changed_parameters_write_a_fresh_result_set_and_keep_the_old(tmp_path, capsys, sample_long):
    store = store_with(tmp_path / "s", sample_long)
    out = tmp_path / "r"
    base = ["refresh", "--store", store, "--out", str(out), "--no-report", "-q", "--universe", "AAPL,MA"]
    assert run(base, capsys)[0] == 0
    old_key = (out / "LATEST").read_text().strip()
    old = snapshot(out / old_key)
    old_betas = qf.read_betas(out)
    assert run(base + ["--window", "63"], capsys)[0] == 0
    new_key = (out / "LATEST").read_text().strip()
    assert new_key != old_key
    m = manifest_of(out)
    assert m["params"]["window"] == 63 and m["last_run"]["mode"] == "full"
    assert snapshot(out / old_key) == old                       # the old set is untouched
    pd.testing.assert_series_equal(qf.read_betas(out / old_key), old_betas)
    assert not qf.read_betas(out).equals(old_betas)


# ----------------------------------------------------------------------------- crash safety
CHILD = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(Path(__file__).parent)!r})
    from crashpoints import arm
    mode, store, out = sys.argv[1:4]
    from quantfit.cli import main

    kind = arm(mode)
    print("ready", flush=True)
    if kind == "timed":
        sys.stdin.readline()
    main(["refresh", "--store", store, "--out", out, "--no-report", "-q", *sys.argv[4:]])
    print("finished", flush=True)
""")


def test_sigkill_mid_refresh_leaves_previous_results_intact(tmp_path, capsys, sample_long):
    root = tmp_path
    cfg = root / "qf.toml"  # the same universe for every run, parent and children
    cfg.write_text('universe = ["AAPL", "BAC", "GE", "T"]\n')
    common = ["--config", str(cfg), "--no-report", "-q"]
    store_old = store_with(root / "store_old", sample_long[sample_long["date"] <= "2022-12-31"])
    assert run(["refresh", "--store", store_old, "--out", str(root / "base"), *common], capsys)[0] == 0
    store_new = store_with(root / "store_new", sample_long)
    ref = root / "ref"  # what the interrupted refreshes would have produced
    shutil.copytree(root / "base", ref)
    assert run(["refresh", "--store", store_new, "--out", str(ref), *common], capsys)[0] == 0
    key = (root / "base" / "LATEST").read_text().strip()
    old_tidy, old_m = read_tidy(root / "base")

    points = {"write:1": "old", "write:6": "old", "before_commit": "old", "after_commit": "new"}
    procs = {}
    for mode in [*points, "timed:a", "timed:b"]:
        d = root / f"o-{mode.replace(':', '-')}"
        shutil.copytree(root / "base", d)
        procs[mode] = (d, subprocess.Popen(
            [sys.executable, "-c", CHILD, mode, store_new, str(d), "--config", str(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for mode, (d, p) in procs.items():
        if mode.startswith("timed"):
            assert p.stdout.readline().strip() == "ready", p.stderr.read()[-2000:]
        else:
            p.wait(timeout=120)
    # Kill real refreshes (no hooks; ~0.5 s each here) at two moments after they start, alone
    # on the machine so that the moments mean something: never a mix either way.
    for delay, mode in ((0.45, "timed:a"), (0.6, "timed:b")):
        p = procs[mode][1]
        p.stdin.write("go\n")
        p.stdin.flush()
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
    states = {}
    for mode, (d, p) in procs.items():
        _, err = p.communicate(timeout=120)
        if not mode.startswith("timed"):
            assert p.returncode == -signal.SIGKILL, (mode, p.returncode, err[-2000:])
        tidy, m = read_tidy(d)
        states[mode] = "new" if m["generation"] == 2 else "old"
        if states[mode] == "old":  # the previous results: intact and readable, bit for bit
            assert m == old_m
            pd.testing.assert_frame_equal(tidy, old_tidy)
        else:
            assert_same_results(d, ref, atol=0)
        assert isinstance(qf.read_betas(d), pd.Series)
        # the next run heals: finishes the work, removes the killed writer's files
        assert run(["refresh", "--store", store_new, "--out", str(d), *common], capsys)[0] == 0
        assert live_files_match_disk(d / key)
        assert not list((d / key).glob("manifest.json.tmp-*"))
        assert_same_results(d, ref, atol=0)
    assert all(states[m] == want for m, want in points.items()), states


# ----------------------------------------------------------------------------- config, errors
def test_config_file_flags_override_and_unknown_key(tmp_path, capsys, sample_long, monkeypatch):
    store_with(tmp_path / "cfg" / "store", sample_long)
    (tmp_path / "cfg" / "universe.txt").write_text("# banks\nJPM\nBAC  # big\n\nMA, AAPL\n")
    cfg = tmp_path / "cfg" / "qf.toml"
    cfg.write_text(textwrap.dedent("""
        store = "store"            # relative to this file
        out = "results"
        universe = "universe.txt"
        window = 126
        min-obs = 100
        report = false
        quiet = true
    """))
    monkeypatch.chdir(tmp_path)  # not the config's directory: paths must still resolve
    code, out, err = run(["refresh", "--config", str(cfg), "--window", "150"], capsys)
    assert (code, err) == (0, "")  # quiet from the config
    m = manifest_of(tmp_path / "cfg" / "results")
    assert m["params"]["window"] == 150 and m["params"]["min_obs"] == 100  # flag beats config
    assert m["universe"] == ["AAPL", "BAC", "JPM", "MA"]
    assert not (tmp_path / "cfg" / "results" / "report").exists()

    cfg.write_text('store = "store"\nwindw = 10\nbenchmrk = "SPY"\n')
    code, out, err = run(["refresh", "--config", str(cfg)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "unknown keys benchmrk, windw" in err
    cfg.write_text('window = "long"\n')
    code, out, err = run(["refresh", "--config", str(cfg)], capsys)
    assert code == 2 and err.count("\n") == 1 and "window" in err
    code, out, err = run(["refresh", "--config", str(tmp_path / "nope.toml")], capsys)
    assert code == 2 and "not found" in err


@pytest.mark.parametrize("argv, match", [
    (["--universe", "AAPL,NOPE,ZZZ9"], "unknown tickers in the universe (not in store"),
    (["--universe", "missing/universe.txt"], "universe file"),
    (["--solver", "magic"], "unknown solver 'magic'"),
    (["--window", "ten"], "window must be"),
    (["--window", "50", "--min-obs", "60"], "min_obs=60 is larger than window=50"),
    (["--benchmark", "QQQ"], "benchmark QQQ is not in store"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, sample_long, argv, match):
    store = store_with(tmp_path / "s", sample_long[sample_long["ticker"].isin(["AAPL", "SPY"])])
    code, out, err = run(["refresh", "--store", store, "--out", str(tmp_path / "r"), *argv], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("quantfit: error: ") and match in err, err
    if "NOPE" in argv[1]:
        assert err.rstrip().endswith("NOPE, ZZZ9")
    assert not (tmp_path / "r").exists()


def test_explicit_empty_store_is_an_error_not_the_sample(tmp_path, capsys):
    code, _, err = run(["refresh", "--store", str(tmp_path / "typo"), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "is empty or missing" in err
    assert not (tmp_path / "typo").exists()


# ----------------------------------------------------------------------------- warnings
def synthetic_long(tickers, dates, seed=0, drop_last=()):
    rng = np.random.default_rng(seed)
    mkt = rng.normal(0, 0.01, len(dates))
    rows = []
    for i, t in enumerate(tickers):
        r = mkt * (0.5 + 0.25 * i) + rng.normal(0, 0.01, len(dates))
        rows.append(pd.DataFrame({"date": dates, "ticker": t, "close": 100 * np.exp(np.cumsum(r))}))
    long = pd.concat(rows, ignore_index=True)
    for t in drop_last:  # no price on the last date
        long = long[~((long["ticker"] == t) & (long["date"] == dates[-1]))]
    return long


def test_warnings_exit_1_listed_and_in_manifest(tmp_path, capsys):
    dates = pd.bdate_range("2022-01-03", periods=200)
    long = pd.concat([synthetic_long(["SPY", "AAA", "BBB"], dates, drop_last=["BBB"]),
                      synthetic_long(["NEW"], dates[-30:], seed=1)])
    store = store_with(tmp_path / "s", long)
    argv = ["refresh", "--store", store, "--out", str(tmp_path / "r"), "--window", "60", "--no-report"]
    code, out, err = run(argv, capsys)
    assert code == 1
    lines = [l for l in err.splitlines() if "warning:" in l]
    assert any(f"BBB: stale price: none on {dates[-1].date()} (last {dates[-2].date()})" in l for l in lines)
    assert any("NEW: too few observations for any estimate (at most 29 valid rows in a window, need 60)"
               in l for l in lines)
    assert "done with 2 warnings" in err
    m = manifest_of(tmp_path / "r")
    assert len(m["last_run"]["warnings"]) == 2 and m["asset_rows"].get("NEW", 0) == 0

    # --quiet: nothing on stderr, still exit 1, warnings in the log file and the manifest
    qf.PriceStore(store).ingest(synthetic_long(["SPY", "AAA", "BBB", "NEW"], pd.bdate_range(dates[-1], periods=2)[1:]))
    log = tmp_path / "refresh.log"
    code, out, err = run(argv + ["--quiet", "--log-file", str(log)], capsys)
    assert code == 1 and err == "" and out == ""
    text = log.read_text()
    assert "WARNING" in text and "NEW: too few observations" in text and "incremental" in text
    assert manifest_of(tmp_path / "r")["last_run"]["mode"] == "incremental"


def test_update_yfinance_with_fake_downloader(tmp_path, capsys, monkeypatch):
    dates = pd.bdate_range("2023-03-01", "2023-12-29")
    store = store_with(tmp_path / "s", synthetic_long(["SPY", "AAPL", "MSFT", "GONE"], dates))
    fake = FakeDownloader(good=["SPY", "AAPL", "MSFT"])  # 5 days from 2024-01-02; GONE: nothing
    monkeypatch.setattr(yahoo, "_default_downloader", lambda: fake)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    argv = ["refresh", "--store", store, "--out", str(tmp_path / "r"), "--window", "60", "--no-report",
            "--update", "yfinance"]
    code, out, err = run(argv, capsys)
    assert code == 1, err
    assert sorted(fake.calls[0][0]) == ["AAPL", "GONE", "MSFT", "SPY"]
    assert fake.calls[0][1]["start"] == "2023-12-29"  # from the store's last date
    assert "yfinance returned no prices for 1 ticker: GONE" in err
    assert "GONE: stale price: none on 2024-01-08 (last 2023-12-29)" in err
    assert qf.PriceStore(store).prices(["AAPL"]).index[-1] == pd.Timestamp("2024-01-08")
    m = manifest_of(tmp_path / "r")
    assert m["data"]["last"] == "2024-01-08"
    assert qf.read_betas(tmp_path / "r").attrs["date"] == pd.Timestamp("2024-01-08")
    assert set(qf.read_betas(tmp_path / "r").index) == {"AAPL", "MSFT"}


def test_update_yfinance_fetches_per_last_date_and_survives_a_delisted_name(tmp_path, capsys, monkeypatch):
    dates = pd.bdate_range("2023-03-01", "2023-12-29")
    long = pd.concat([synthetic_long(["SPY", "AAPL"], dates),
                      synthetic_long(["OLD"], pd.bdate_range("2019-01-01", "2020-06-30"))])
    store = store_with(tmp_path / "s", long)
    fake = FakeDownloader(good=["SPY", "AAPL"])
    monkeypatch.setattr(yahoo, "_default_downloader", lambda: fake)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    argv = ["refresh", "--store", store, "--out", str(tmp_path / "r"), "--window", "60", "--no-report",
            "--universe", "AAPL,OLD", "--update", "yfinance"]
    code, out, err = run(argv, capsys)
    assert code == 1, err
    starts = {c[1]["start"]: sorted(c[0]) for c in fake.calls}
    assert starts["2023-12-29"] == ["AAPL", "SPY"] and starts["2020-06-30"] == ["OLD"]
    assert "yfinance returned no prices for 1 ticker: OLD" in err
    assert qf.PriceStore(store).prices(["AAPL"]).index[-1] == pd.Timestamp("2024-01-08")
    # Nothing at all for anyone is a user error (wrong universe, no connection): exit 2, one line.
    monkeypatch.setattr(yahoo, "_default_downloader", lambda: FakeDownloader(good=[]))
    code, out, err = run(argv + ["-q"], capsys)
    assert code == 2 and err == "quantfit: error: yfinance returned no prices for any of: AAPL, OLD, SPY\n"


class YahooHistory:
    """A ``yfinance.download`` stand-in serving today's adjusted closes (wide frame), from
    ``start`` when given, in yfinance 1.x's MultiIndex shape."""

    def __init__(self, closes: pd.DataFrame):
        self.closes = closes
        self.calls: list[tuple[list[str], dict]] = []

    def __call__(self, tickers, **kwargs):
        self.calls.append((list(tickers), kwargs))
        per = {}
        for t in tickers:
            c = self.closes[t].dropna()
            if kwargs.get("start"):
                c = c[c.index >= pd.Timestamp(kwargs["start"])]
            idx = pd.DatetimeIndex(c.index, name="Date").tz_localize("America/New_York")
            per[t] = pd.DataFrame({"Open": c.values, "High": c.values, "Low": c.values,
                                   "Close": c.values, "Volume": 1000}, index=idx)
        return yf_download_shape(per)


def test_update_yfinance_refetches_a_history_readjusted_for_a_dividend(tmp_path, capsys, monkeypatch):
    """Yahoo rescales adjusted closes before each ex-date: the stored history must follow, or
    the dividend would land in one day's return."""
    dates = pd.bdate_range("2023-01-02", "2023-12-29")
    long = synthetic_long(["SPY", "AAPL", "MSFT"], dates)
    wide = long.pivot(index="date", columns="ticker", values="close")
    store = store_with(tmp_path / "s", long)
    argv = ["refresh", "--store", store, "--out", str(tmp_path / "r"), "--window", "60", "--no-report", "-q"]
    assert run(argv, capsys)[0] == 0
    # Five new days; AAPL goes ex-dividend (1 %) on the third: Yahoo scales all its earlier closes.
    new_days = pd.bdate_range("2024-01-02", periods=5)
    grown = pd.concat([wide, pd.DataFrame(wide.iloc[-1].to_numpy() * np.linspace(1.01, 1.05, 5)[:, None],
                                          index=new_days, columns=wide.columns)])
    grown.index.name = "date"
    today = grown.copy()
    today.loc[today.index < new_days[2], "AAPL"] *= 0.99
    fake = YahooHistory(today)
    monkeypatch.setattr(yahoo, "_default_downloader", lambda: fake)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    code, out, err = run(argv + ["--update", "yfinance"], capsys)
    assert code == 0, err
    assert [(sorted(c[0]), c[1].get("start")) for c in fake.calls] == [
        (["AAPL", "MSFT", "SPY"], "2023-12-29"), (["AAPL"], None)]
    stored = qf.PriceStore(store).prices()
    pd.testing.assert_frame_equal(stored[["AAPL", "MSFT", "SPY"]], today[["AAPL", "MSFT", "SPY"]],
                                  check_names=False, check_freq=False, check_column_type=False)
    # The revised history is seen by the job (the store's change log): AAPL is refitted from
    # its first date, the others from the new days only; all equal a fresh fit.
    m = manifest_of(tmp_path / "r")
    # (MSFT's overlapping last day is "revised" too: Yahoo's volume replaced the unknown one.)
    assert m["last_run"]["mode"] == "incremental" and "asset(s) with revised prices" in m["last_run"]["reason"]
    assert m["last_run"]["first_fitted"] == "2023-01-03"  # AAPL from its first return row on
    rets = qf.returns(stored)
    direct = qf.fit_rolling(rets[["AAPL", "MSFT"]], rets["SPY"], window=60)
    np.testing.assert_allclose(qf.read_betas(tmp_path / "r").to_numpy(), direct.beta.iloc[-1].to_numpy(),
                               rtol=0, atol=1e-12)


def test_non_converged_windows_are_a_warning(tmp_path, capsys, sample_long):
    store = store_with(tmp_path / "s", sample_long[sample_long["ticker"].isin(["AAPL", "JPM", "SPY"])
                                                   & (sample_long["date"] >= "2023-01-01")])
    code, out, err = run(["refresh", "--store", store, "--out", str(tmp_path / "r"), "--window", "60",
                          "--solver", "gd", "--max-iter", "2", "--no-report"], capsys)
    assert code == 1
    assert "AAPL: " in err and "windows did not converge (solver gd)" in err
    m = manifest_of(tmp_path / "r")
    assert m["params"]["max_iter"] == 2 and m["params"]["solver"] == "gd"
    assert sum("did not converge" in w for w in m["last_run"]["warnings"]) == 2


def test_expanding_windows_recompute_in_full(tmp_path, capsys, sample_long):
    part = sample_long[sample_long["ticker"].isin(["AAPL", "XOM", "SPY"])]
    store = store_with(tmp_path / "s", part[part["date"] <= CUT])
    argv = ["refresh", "--store", store, "--out", str(tmp_path / "r"), "--window", "expanding",
            "--no-report", "-q"]
    assert run(argv, capsys)[0] == 0
    m = manifest_of(tmp_path / "r")
    assert m["params"]["window"] is None and m["params"]["min_obs"] == 2 and m["meta"]["spec"]["window"]["length"] is None
    qf.PriceStore(store).ingest(part)
    assert run(argv, capsys)[0] == 0
    m = manifest_of(tmp_path / "r")
    assert m["last_run"]["mode"] == "full" and "expanding" in m["last_run"]["reason"]
    rets = qf.returns(qf.PriceStore(store).prices())
    direct = qf.fit_rolling(rets[["AAPL", "XOM"]], rets["SPY"], window=None, expanding=True)
    np.testing.assert_allclose(qf.read_betas(tmp_path / "r").to_numpy(), direct.beta.iloc[-1].to_numpy(),
                               rtol=0, atol=1e-12)
