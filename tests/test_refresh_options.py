"""``quantfit refresh`` options of issue 15 (--model, --factors-dir, --freq, --every, --preset,
calendar --window): parsed from flags and the config file into the same spec objects as
``qf.fit_rolling``, bad values refused with exit 2 and one line before anything is written.
The nightly job does not run them yet: valid values are refused with a line that says so."""

from __future__ import annotations

import os

import pytest

from quantfit.cli import main
from quantfit.refresh import RefreshParams, load_config, params_from
from quantfit.refresh.params import canonical_params, check_params, fit_spec, parse_window
from quantfit.spec import FitSpec


def _run(argv, tmp_path, capsys):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = main(["refresh", *argv])
    finally:
        os.chdir(cwd)
    _, err = capsys.readouterr()
    return code, err


@pytest.mark.parametrize("argv,match", [
    (["--window", "60X"], "calendar lookback"),
    (["--window", "2Y"], "give min_obs"),
    (["--freq", "H"], "freq must be"),
    (["--every", "D"], "every must be"),
    (["--freq", "M", "--every", "W"], "finer"),
    (["--model", "ff7"], "unknown factor model 'ff7'; choose one of capm, ff3, ff5, carhart"),
    (["--model", "ff3", "--factors", "f.csv"], "not both"),
    (["--preset", "barra"], "unknown preset 'barra'"),
    (["--window", "60M", "--min-obs", "70", "--freq", "M"], "larger than the 60 rows"),
    # valid, but the job does not run them yet
    (["--model", "FF3", "--freq", "M", "--window", "60M", "--every", "M"],
     "--model, --freq, --every, a calendar --window: valid, but not run by this version"),
    (["--preset", "bloomberg"], "--freq, --preset, a calendar --window: valid, but not run"),
])
def test_refresh_options_are_checked_before_any_work(tmp_path, capsys, argv, match):
    code, err = _run(argv, tmp_path, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quantfit: error: "), err
    assert match in lines[0], err
    assert not any(tmp_path.iterdir())  # nothing written, not even the default store


def test_refresh_options_build_the_fit_rolling_spec(tmp_path):
    cfg = tmp_path / "refresh.toml"
    cfg.write_text('model = "carhart"\nfactors-dir = "french"\nfreq = "M"\nwindow = "60M"\n'
                   'min_obs = 24\nevery = "Q"\npreset = "monthly60"\n')
    loaded = load_config(cfg)
    assert loaded["factors_dir"] == str(tmp_path / "french") and loaded["window"] == "60M"
    p = params_from(loaded)
    assert fit_spec(p) == FitSpec.from_kwargs("60M", min_obs=24, freq="M", every="Q",
                                              preset="monthly60")
    # a preset's options apply unless given; unset options (None) never override them
    q = RefreshParams(preset="bloomberg")
    assert fit_spec(q) == FitSpec.from_kwargs(preset="bloomberg")
    assert fit_spec(RefreshParams(preset="bloomberg", window=78)).window.length == 78
    assert parse_window("60M") == "60M" and parse_window(" 252 ") == 252
    assert parse_window("expanding") is None
    params = canonical_params(p, 4)
    assert params["regressors"].startswith("model:carhart:M:")
    assert (params["window"], params["freq"], params["every"], params["min_obs"]) == \
        ("60M", "M", "Q", 24)
    # an existing result set's key does not change: new options are recorded only when used
    plain = canonical_params(RefreshParams(device="cpu"), 1)
    assert not {"freq", "every", "adjust", "winsorize", "kind"} & set(plain)
    with pytest.raises(Exception, match="not run by this version"):
        check_params(p)
