"""``quantfit refresh`` options of issue 15 (--model, --factors-dir, --freq, --every, --preset,
calendar --window): parsed from flags and the config file into the same spec objects as
``qf.fit_rolling``. (Bad values are exit 2 with one line before anything is written:
``test_spec.test_refresh_refuses_bad_fit_options_up_front``; the job runs the good ones:
``test_nightly_sampling``.)"""

from __future__ import annotations

from quantfit.refresh import RefreshParams, load_config, params_from
from quantfit.refresh.params import canonical_params, check_params, fit_spec, parse_window
from quantfit.spec import FitSpec


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
    check_params(p)  # valid
