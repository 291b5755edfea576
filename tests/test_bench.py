"""quantfit.bench: rows and their fields, extrapolation, accuracy columns, JSON/markdown,
missing peers, the scaling figure, and the ``quantfit bench`` command. Nothing here asserts a
speed: the benchmark measures performance, the tests check that it measures it correctly."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import quantfit.spec
from quantfit.bench import (
    METHODS,
    Job,
    PeerUnavailable,
    config_for,
    make_workload,
    peers,
    run_bench,
)
from quantfit.bench.runner import FIELDS, beta_errors, extrapolate, reset_peak_rss, time_repeats
from quantfit.bench.table import read_json, to_markdown, write_json
from quantfit.cli import main
from quantfit.errors import QuantfitError

EXACT = ("quantfit newton", "pandas rolling cov/var", "statsmodels RollingOLS (loop over assets)",
         "polars-ols rolling_ols")


def tiny(**kw):
    kw.setdefault("isolate", False)
    cfg = config_for("tiny", repeats=kw.pop("repeats", 1), **kw)
    cfg.options.loop_windows = 2
    return cfg


@pytest.fixture(scope="module")
def tiny_result():
    return run_bench(tiny())


# ---------------------------------------------------------------------------- workload
def test_workload_is_deterministic_nan_free_and_has_the_true_beta():
    a, b = make_workload(50, 3000, 3000, seed=3), make_workload(50, 3000, 3000, seed=3)
    assert a.y.equals(b.y) and a.x.equals(b.x) and np.array_equal(a.beta, b.beta)
    assert a.y.shape == (3000, 50) and np.isfinite(a.y.to_numpy()).all()
    assert a.spec.n_windows == 50
    # one window over the whole sample: OLS recovers β to a few standard errors (≈ 0.03)
    xc = a.x.to_numpy() - a.x.mean()
    bhat = xc @ (a.y.to_numpy() - a.y.mean().to_numpy()) / (xc @ xc)
    assert np.abs(bhat - a.beta).max() < 0.15
    assert not make_workload(50, 3000, 3000, seed=4).y.equals(a.y)


# ---------------------------------------------------------------------------- the rows
def test_every_row_has_every_field(tiny_result):
    rows = tiny_result.rows
    assert [r["name"] for r in rows] == list(METHODS)
    for r in rows:
        assert set(FIELDS) <= set(r), r["name"]
        # the test extra installs every peer, so every row must run
        assert r["status"] == "ok", (r["name"], r["note"], r.get("traceback"))
        if r["status"] == "ok":
            assert r["wall_s"] > 0 and r["repeats"] >= 1 and 0 < r["fraction"] <= 1
            # the three conditions: first call in the child, best of the repeats, after pandas
            assert r["first_s"] > 0 and r["best_s"] <= r["wall_s"] and r["after_pandas_s"] > 0
            assert r["extrapolated"] == (r["fraction"] < 1)
            assert r["max_abs_dbeta"] is not None or r["name"].startswith("statsmodels RLM")
            assert r["rmse_vs_true"] is not None
        else:
            assert r["note"].startswith("not available: ") and r["wall_s"] is None


def test_ratio_vs_pandas_is_pandas_time_over_row_time(tiny_result):
    pandas = tiny_result.row("pandas rolling cov/var")
    assert pandas["ratio_vs_pandas"] == pytest.approx(1.0)
    for r in tiny_result.rows:
        if r["status"] == "ok":
            assert r["ratio_vs_pandas"] == pytest.approx(pandas["wall_s"] / r["wall_s"])
            for ratio, field in (("first_vs_pandas", "first_s"), ("best_vs_pandas", "best_s"),
                                 ("after_vs_pandas", "after_pandas_s")):
                assert r[ratio] == pytest.approx(pandas[field] / r[field])


def test_exact_methods_agree_with_the_reference(tiny_result):
    for name in EXACT:
        r = tiny_result.row(name)
        assert r["status"] == "ok" and r["max_abs_dbeta"] < 1e-10, (name, r["note"])
    gd = tiny_result.row("quantfit gd")
    assert gd["status"] == "ok" and gd["max_abs_dbeta"] < 1e-5
    loop = tiny_result.row("torch loop (one regression at a time)")
    assert loop["status"] == "ok" and loop["extrapolated"] and loop["max_abs_dbeta"] < 1e-3
    assert loop["fraction"] == pytest.approx(2 / tiny_result.meta["config"]["workload"]["n_assets"]
                                             / (300 - 63 + 1))


def test_subset_peers_are_flagged_and_scaled(tiny_result):
    r = tiny_result.row("statsmodels RollingOLS (loop over assets)")
    assert r["status"] == "ok", r["note"]
    assert r["extrapolated"] and r["fraction"] == pytest.approx(3 / 20)
    assert "3 of 20 assets" in r["note"]


def test_huber_rows_agree_with_each_other(tiny_result):
    # both sides of the huber-vs-RLM comparison carry the same Δβ, and it is small (issue 4: 1e-4)
    hub = tiny_result.row("quantfit huber")
    rlm = tiny_result.row("statsmodels RLM Huber (loop over windows)")
    assert hub["status"] == rlm["status"] == "ok", (hub["note"], rlm["note"])
    assert rlm["max_abs_dbeta"] == hub["max_abs_dbeta"] < 1e-4


def test_huber_and_rlm_rows_compare_with_each_other():
    res = run_bench(tiny(rows=["statsmodels RLM Huber (loop over windows)", "quantfit huber",
                               "pandas rolling cov/var"]))
    rlm, hub = res.row("statsmodels RLM Huber (loop over windows)"), res.row("quantfit huber")
    assert rlm["status"] == hub["status"] == "ok", (rlm["note"], hub["note"])
    assert rlm["extrapolated"] and rlm["fraction"] == pytest.approx(20 / (20 * (300 - 63 + 1)))
    assert hub["reference"] == "statsmodels RLM (its windows)" and rlm["reference"] == "quantfit huber"
    assert hub["max_abs_dbeta"] is not None and rlm["max_abs_dbeta"] == hub["max_abs_dbeta"]


def test_a_missing_engine_feature_is_not_available(monkeypatch):
    monkeypatch.setattr(quantfit.spec, "LOSSES", ("mse",))
    monkeypatch.setattr(quantfit.spec, "SOLVERS", tuple(s for s in quantfit.spec.SOLVERS if s != "adam"))
    res = run_bench(tiny(rows=["quantfit adam", "quantfit huber", "pandas rolling cov/var"]))
    assert res.row("quantfit adam")["note"] == "not available: solver='adam' not implemented"
    assert res.row("quantfit huber")["note"] == "not available: loss='huber' not implemented"
    assert res.row("pandas rolling cov/var")["status"] == "ok"


def test_a_missing_peer_package_names_the_bench_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "polars_ols", None)  # import polars_ols -> ImportError
    with pytest.raises(PeerUnavailable, match=r"quantfit\[bench\]") as exc:
        peers.require("polars_ols", "polars-ols")
    assert isinstance(exc.value, QuantfitError)
    res = run_bench(tiny(rows=["polars-ols rolling_ols", "pandas rolling cov/var"]))
    row = res.row("polars-ols rolling_ols")
    assert row["status"] == "not available" and "pip install 'quantfit[bench]'" in row["note"]
    assert row["ratio_vs_pandas"] is None


def test_a_failing_method_is_an_error_row_not_a_crash():
    def broken(work, opts):
        def run():
            raise RuntimeError("boom")
        return Job(run, lambda out: out)

    res = run_bench(tiny(rows=["pandas rolling cov/var"]),
                    methods={"pandas rolling cov/var": broken})
    assert res.rows[0]["status"] == "error" and "boom" in res.rows[0]["note"]


# ---------------------------------------------------------------------------- arithmetic
class FakeClock:
    """A clock that only moves when a fake method says how long it took."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_extrapolation_and_median_with_a_fake_peer_and_clock():
    clock = FakeClock()
    # per row: the first call, the three repeats, the call after pandas work
    durations = iter([5.0, 3.0, 3.0, 3.0, 4.0, 5.0, 1.0, 2.0, 9.0, 4.0])

    def fake_pandas(work, opts):
        def run():
            clock.now += next(durations)
            return work.y * np.nan
        return Job(run, lambda out: out.to_numpy())

    def fake_subset(work, opts):
        def run():
            clock.now += next(durations)
            return np.zeros(0)
        return Job(run, lambda out: out, cells=(np.zeros(0, int), np.zeros(0, int)),
                   fraction=0.25)

    methods = {"pandas rolling cov/var": fake_pandas, "torch loop (one regression at a time)": fake_subset}
    cfg = tiny(rows=list(methods), repeats=3)
    cfg.budget_s = 100.0
    res = run_bench(cfg, methods=methods, clock=clock)
    assert res.row("pandas rolling cov/var")["wall_s"] == 3.0
    sub = res.row("torch loop (one regression at a time)")
    # calls of 1, 2 and 9 s: median 2 s for a quarter of the regressions -> 8 s for all
    assert sub["repeats"] == 3 and sub["wall_s"] == 8.0 and sub["extrapolated"]
    assert sub["fraction"] == 0.25 and sub["ratio_vs_pandas"] == pytest.approx(3.0 / 8.0)
    assert (sub["first_s"], sub["best_s"], sub["after_pandas_s"]) == (20.0, 4.0, 16.0)
    assert sub["first_vs_pandas"] == pytest.approx(5.0 / 20.0)
    assert sub["best_vs_pandas"] == pytest.approx(3.0 / 4.0)
    assert sub["after_vs_pandas"] == pytest.approx(4.0 / 16.0)


def test_time_repeats_stops_at_the_budget():
    clock = FakeClock()

    def call():
        clock.now += 2.0

    times, _ = time_repeats(call, repeats=10, budget_s=5.0, clock=clock)
    assert times == [2.0, 2.0, 2.0]
    assert extrapolate(2.0, 0.5) == 4.0
    with pytest.raises(ValueError):
        extrapolate(1.0, 0.0)


def test_beta_errors_full_and_cells():
    ref = np.array([[np.nan, np.nan], [1.0, 2.0], [1.5, 2.5]])  # (T=3, A=2), window 2
    truth = np.array([1.0, 2.0])
    beta = ref + np.array([[0, 0], [1e-3, -2e-3], [0, 0]])
    e = beta_errors(beta, None, ref, truth, window=2)
    assert e["max_abs_dbeta"] == pytest.approx(2e-3) and e["n_missing"] == 0
    assert e["rmse_vs_true"] == pytest.approx(np.sqrt(np.mean([1e-3**2, 2e-3**2, 0.5**2, 0.5**2])))
    cells = (np.array([2, 1]), np.array([0, 1]))
    e = beta_errors(np.array([1.25, np.nan]), cells, ref, truth, window=2)
    assert e["max_abs_dbeta"] == pytest.approx(0.25) and e["n_missing"] == 1


# ---------------------------------------------------------------------------- output
def test_json_round_trip_and_markdown(tiny_result, tmp_path):
    path = write_json(tiny_result, tmp_path / "out" / "bench.json")
    back = read_json(path)
    assert back.rows == json.loads(json.dumps(tiny_result.rows))
    assert back.meta["config"]["workload"] == {"n_assets": 20, "n_dates": 300, "window": 63, "seed": 0}
    md = to_markdown(back).splitlines()
    assert md[0].startswith("| method | first call s | best s | after pandas s | vs pandas")
    body = [ln for ln in md[2:] if ln.startswith("| ")]
    assert len(body) == len(METHODS)
    for ln, r in zip(body, back.rows):
        assert ln.startswith(f"| {r['name']} |") and ln.count(" | ") == 10
    assert "20 assets × 300 dates, window 63" in md[-1]


def test_isolated_rows_measure_peak_memory():
    if reset_peak_rss() is None:  # what the runner itself needs (Linux >= 4.0)
        pytest.skip("no /proc/self/clear_refs here: peak memory is not measured on this OS")
    res = run_bench(tiny(rows=["pandas rolling cov/var", "quantfit newton"], isolate=True))
    for r in res.rows:
        assert r["status"] == "ok" and r["peak_mem_mb"] is not None and r["peak_mem_mb"] >= 0


def test_plot_scaling(tmp_path):
    from quantfit.report.bench import plot_scaling
    pts = [dict(method=m, axis=ax, n_assets=a, n_dates=300, window=w, wall_s=t, status=s, note=n,
                device="cpu")
           for m, s, n in (("quantfit newton", "ok", ""),
                           ("quantfit huber", "not available", "not available: no huber"))
           for ax, a, w, t in (("assets", 10, 21, 0.1), ("assets", 20, 21, 0.2),
                               ("window", 10, 21, 0.1), ("window", 10, 63, 0.12))]
    for p in pts:
        if p["status"] != "ok":
            p["wall_s"] = None
    fig = plot_scaling(pts, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0
    left, right = fig.axes
    assert [ln.get_label() for ln in left.lines] == ["quantfit newton"]
    assert list(left.lines[0].get_xdata()) == [10, 20] and list(right.lines[0].get_xdata()) == [21, 63]
    from matplotlib.text import Text
    assert any("quantfit huber (assets: 2 points): not available: no huber" in t.get_text()
               for t in fig.findobj(Text))
    with pytest.raises(QuantfitError):
        plot_scaling([])


# ---------------------------------------------------------------------------- command line
def test_cli_bench_tiny(tmp_path, capsys):
    js, png = tmp_path / "b.json", tmp_path / "s.png"
    code = main(["bench", "--tiny", "--rows", "newton,pandas,rollingols,torchloop", "--json", str(js),
                 "--scaling", "--png", str(png), "--repeats", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("| method |") and "| quantfit newton |" in out and "| pandas rolling" in out
    res = read_json(js)
    assert [r["name"] for r in res.rows] == ["quantfit newton", "pandas rolling cov/var",
                                            "statsmodels RollingOLS (loop over assets)",
                                            "torch loop (one regression at a time)"]
    assert res.meta["command"].startswith("quantfit bench --tiny")
    assert res.scaling and png.stat().st_size > 0
    assert {p["axis"] for p in res.scaling} == {"assets", "window"}


@pytest.mark.parametrize("argv, match", [
    (["bench", "--rows", "newton,bogus"], "unknown rows"),
    (["bench", "--tiny", "--window", "500"], "window 500"),
    (["bench", "--quick", "--full"], "not allowed with"),
])
def test_cli_bench_bad_arguments(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("quantfit: error: ") and match in err[0]


def test_cli_bench_cuda_without_a_gpu(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert main(["bench", "--tiny", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
