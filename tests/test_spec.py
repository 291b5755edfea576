"""Validated options (issue 14, parts 2 and 3): ``quantfit.spec`` checks every option once, for
``qf.fit_rolling``'s flat keywords, its spec objects and ``quantfit refresh`` alike."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

import quantfit as qf
from quantfit.cli import main
from quantfit.errors import FitError
from quantfit.refresh import RefreshParams
from quantfit.refresh.params import canonical_params, fit_spec, params_key
from quantfit.spec import ComputeSpec, EstimatorSpec, FitSpec, SolverSpec, TransformSpec, WindowSpec


@pytest.fixture(scope="module")
def data(sample_prices):
    r = sample_prices.pct_change(fill_method=None).loc["2018":"2019"]
    return r[["AAPL", "XOM", "GE"]], r["SPY"]


@pytest.mark.parametrize("kwargs,match", [
    ({"halflife": 1e-300}, "halflife"),
    ({"halflife": True}, "halflife"),
    ({"halflife": float("inf")}, "halflife"),
    ({"chunk_size": True}, "chunk_size"),
    ({"intercept": "no"}, "intercept"),
    ({"tol": float("inf")}, "tol"),
    ({"tol": float("nan")}, "tol"),
    ({"prior": "garbage"}, "prior"),
    ({"max_iter": True}, "max_iter"),
    ({"lags": True}, "lags"),
    ({"history": "yes"}, "history"),
    ({"device": "meta"}, "device"),
    ({"device": "mps"}, "MPS"),
    ({"window": 99999999999999999999}, "window"),
    ({"window": 2, "loss": "huber"}, "2p \\+ 1"),
    ({"window": 8, "min_obs": 4, "loss": "huber"}, "min_obs"),
    ({"dtype": "float16"}, "dtype"),
    ({"market": "SPY"}, "market"),
])
def test_options_are_validated_once_with_a_clear_error(data, kwargs, match):
    y, x = data
    kw = {"window": 60} | kwargs
    if kwargs.get("device") == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            pytest.skip("this machine has MPS")
    with pytest.raises(FitError, match=match):
        qf.fit_rolling(y, x, **kw)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_fit_error(data):
    y, x = data
    with pytest.raises(FitError, match="CUDA"):
        qf.fit_rolling(y, x, 60, device="cuda")


def test_numpy_scalars_are_accepted(data):
    y, x = data
    a = qf.fit_rolling(y, x, np.int64(60), halflife=np.int64(10), min_obs=np.int32(50),
                       intercept=np.bool_(True), tol=np.float64(1e-6), solver="gd",
                       max_iter=np.int64(500))
    b = qf.fit_rolling(y, x, 60, halflife=10.0, min_obs=50, tol=1e-6, solver="gd", max_iter=500)
    pd.testing.assert_frame_equal(a.beta, b.beta)
    assert a.meta == b.meta


def test_fit_rolling_takes_spec_objects(data):
    y, x = data
    flat = qf.fit_rolling(y, x, 60, halflife=20.0, solver="lbfgs", tol=1e-9, dtype="float64",
                          huber_t=2.0)
    parts = qf.fit_rolling(y, x, WindowSpec(60, halflife=20.0), solver=SolverSpec("lbfgs", tol=1e-9),
                           estimator=EstimatorSpec(huber_t=2.0), compute=ComputeSpec(dtype="float64"))
    whole = qf.fit_rolling(y, x, spec=FitSpec(WindowSpec(60, halflife=20.0),
                                              EstimatorSpec(huber_t=2.0),
                                              SolverSpec("lbfgs", tol=1e-9),
                                              ComputeSpec(dtype=torch.float64)))
    for f in (parts, whole):
        pd.testing.assert_frame_equal(f.beta, flat.beta)
        assert f.meta == flat.meta
    assert flat.meta.spec.window.min_obs == 60  # resolved
    with pytest.raises(FitError, match="both given"):
        qf.fit_rolling(y, x, 60, tol=1e-6, solver=SolverSpec("gd"))
    with pytest.raises(FitError, match="replaces every other option"):
        qf.fit_rolling(y, x, spec=FitSpec(), halflife=3.0)


def test_specs_round_trip_through_json():
    spec = FitSpec(WindowSpec(126, 100, 30.0), EstimatorSpec("huber", True, 1.5, 1.0, 0.1),
                   SolverSpec("gd", 1e-7, 50, True), ComputeSpec("cpu", "float32", 64),
                   TransformSpec(None, None, 0))
    back = FitSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec and back.estimator.prior == 1.0
    per_asset = FitSpec(estimator=EstimatorSpec(prior=pd.Series({"A": 1.0}), prior_strength=0.1))
    d = json.loads(json.dumps(per_asset.to_dict()))
    assert d["estimator"]["prior"] == {"per_asset": True}
    assert FitSpec.from_dict(d).estimator.prior_strength == 0.1
    with pytest.raises(FitError, match="unknown"):
        FitSpec.from_dict({"window": {"length": 5, "lookback": "3M"}})


def test_refresh_builds_the_same_spec(data):
    p = RefreshParams(window=126, min_obs=100, halflife=63.0, solver="gd", tol=1e-7, device="cpu")
    spec = fit_spec(p)
    assert spec == FitSpec.from_kwargs(126, min_obs=100, halflife=63.0, solver="gd", tol=1e-7,
                                       device="cpu")
    y, x = data
    assert qf.fit_rolling(y, x, spec=spec).meta.spec == spec.resolve(1)
    params = canonical_params(p, 1)
    assert params["min_obs"] == 100 and params["dtype"] == "float64" and params["halflife"] == 63.0
    assert params_key(params) == params_key(canonical_params(p, 1))
    expanding = canonical_params(RefreshParams(window=None, device="cpu"), 3)
    assert expanding["window"] is None and expanding["min_obs"] == 4


@pytest.mark.parametrize("argv,match", [
    (["--window", "99999999999999999999"], "window must be an integer"),
    (["--halflife", "1e-300"], "halflife"),
    (["--device", "meta"], "device"),
    (["--loss", "huber", "--window", "2"], "2p + 1"),
    (["--window", "1"], "shorter than"),
    (["--tol", "inf"], "tol"),
    # issue 15's options
    (["--window", "60X"], "calendar lookback"),
    (["--window", "2Y"], "give min_obs"),
    (["--freq", "H"], "freq must be"),
    (["--every", "D"], "every must be"),
    (["--freq", "M", "--every", "W"], "finer"),
    (["--model", "ff7"], "unknown factor model 'ff7'; choose one of capm, ff3, ff5, carhart"),
    (["--model", "ff3", "--factors", "f.csv"], "not both"),
    (["--preset", "barra"], "unknown preset 'barra'"),
    (["--window", "60M", "--min-obs", "70", "--freq", "M"], "larger than the 60 rows"),
    (["--model", "ff3", "--freq", "W"], "daily or monthly; use --freq M"),
    (["--factors", "f.csv", "--freq", "M"], "do not compound"),
])
def test_refresh_refuses_bad_fit_options_up_front(tmp_path, capsys, argv, match):
    """Exit 2, one line 'quantfit: error: ...', no traceback, nothing written (not even the
    default store)."""
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = main(["refresh", *argv])
    finally:
        os.chdir(cwd)
    _, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quantfit: error: ") and match in lines[0], err
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
                    reason="this machine has MPS")
def test_refresh_refuses_a_missing_mps_device(tmp_path, capsys):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = main(["refresh", "--device", "mps"])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr()[1].strip()
    assert code == 2 and err.startswith("quantfit: error: ") and "MPS" in err
    assert "\n" not in err and not any(tmp_path.iterdir())


def test_the_specs_name_what_the_engine_has():
    from quantfit import engine, spec
    assert spec.LOSSES == tuple(engine.LOSSES)
    assert spec.SOLVERS == tuple(engine.SOLVERS)


# ---------------------------------------------------------------------------- issue 15
def test_calendar_windows_spec_rules():
    from quantfit.spec import SamplingSpec
    assert WindowSpec("60M").lookback == (60, "M") and WindowSpec("60M").rows is None
    assert WindowSpec(252).rows == 252 and WindowSpec(252).lookback is None
    # a default row count only where the window holds a known number of periods
    table = {("60M", "M"): 60, ("5Y", "M"): 60, ("3Y", "Q"): 12, ("6M", "Q"): 2, ("104W", "W"): 104,
             ("728D", "W"): 104, ("2Y", "W"): None, ("7M", "Q"): None, ("60M", None): None,
             ("30D", "M"): None}
    for (length, freq), rows in table.items():
        if rows is None:
            with pytest.raises(FitError, match="give min_obs"):
                FitSpec(WindowSpec(length), sampling=SamplingSpec(freq=freq))
            spec = FitSpec(WindowSpec(length, min_obs=5), sampling=SamplingSpec(freq=freq))
            assert spec.calendar_rows() is None and spec.resolve(1).window.min_obs == 5
        else:
            spec = FitSpec(WindowSpec(length), sampling=SamplingSpec(freq=freq))
            assert spec.resolve(1).window.min_obs == rows, (length, freq)
    with pytest.raises(FitError, match="larger than the 60 rows"):
        FitSpec(WindowSpec("60M", min_obs=61), sampling=SamplingSpec(freq="M"))
    with pytest.raises(FitError, match="shorter than"):
        FitSpec(WindowSpec("2W"), EstimatorSpec(loss="huber"), sampling=SamplingSpec(freq="W"))


def test_new_options_round_trip_through_json_and_settings():
    from quantfit.results import FitMeta
    from quantfit.spec import SamplingSpec
    spec = FitSpec(WindowSpec("2Y", 100, 40.0), EstimatorSpec(adjust="blume"),
                   transforms=TransformSpec(market="SPY"),
                   sampling=SamplingSpec("W", "log", "M"))
    assert FitSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert FitSpec.from_dict({"window": {"length": 60}}).sampling == SamplingSpec()  # old files
    meta = FitMeta(spec=spec, preset="bloomberg")
    back = FitMeta.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert back == meta and back.preset == "bloomberg"
    assert FitMeta.from_settings(meta.settings()).spec == spec


def test_refresh_keeps_its_row_windows():
    """Old-style callers pass 252 as a number: that is a window given, never a preset's."""
    from quantfit.spec import DEFAULT_WINDOW
    assert FitSpec.from_kwargs(252, preset="monthly60").window.length == 252
    assert FitSpec.from_kwargs(DEFAULT_WINDOW, preset="monthly60").window.length == "60M"
    assert repr(DEFAULT_WINDOW) == "252" and DEFAULT_WINDOW == 252
