"""qf.adjust against the published formulas, computed here asset by asset in plain Python."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import quantfit as qf
from quantfit import adjust


def test_blume_matches_formula_and_keeps_type():
    beta = pd.DataFrame({"A": [0.5, 1.8, np.nan], "B": [1.0, -0.2, 2.5]})
    out = adjust.blume(beta)
    expected = beta.map(lambda b: 0.67 * b + 0.33 * 1.0)
    pd.testing.assert_frame_equal(out, expected, check_exact=False, rtol=1e-15)
    assert adjust.blume(1.5, weight=0.5, target=0.0) == pytest.approx(0.75)
    assert math.isnan(adjust.blume(beta)["A"].iloc[2])


def test_blume_rejects_bad_weight():
    with pytest.raises(qf.FitError, match="weight"):
        adjust.blume(1.0, weight=1.5)


def _vasicek_by_hand(beta_row, se_row, min_assets=3):
    pairs = [(b, s) for b, s in zip(beta_row, se_row) if not (math.isnan(b) or math.isnan(s))]
    out = []
    if len(pairs) < min_assets:
        return [math.nan] * len(beta_row)
    bs = [b for b, _ in pairs]
    mean = sum(bs) / len(bs)
    var = sum((b - mean) ** 2 for b in bs) / (len(bs) - 1)
    for b, s in zip(beta_row, se_row):
        if math.isnan(b) or math.isnan(s):
            out.append(math.nan)
        else:
            w = var / (var + s * s)
            out.append(w * b + (1 - w) * mean)
    return out


def test_vasicek_matches_formula_row_by_row():
    rng = np.random.default_rng(7)
    dates = pd.date_range("2024-01-01", periods=6, freq="B")
    beta = pd.DataFrame(rng.normal(1.0, 0.4, (6, 5)), index=dates, columns=list("ABCDE"))
    se = pd.DataFrame(rng.uniform(0.05, 0.6, (6, 5)), index=dates, columns=list("ABCDE"))
    beta.iloc[1, 2] = np.nan          # a missing beta
    se.iloc[2, 0] = np.nan            # a missing standard error
    beta.iloc[4, :3] = np.nan         # only 2 assets left on that date: below min_assets
    out = adjust.vasicek(beta=beta, stderr=se)
    for i in range(len(dates)):
        expected = _vasicek_by_hand(beta.iloc[i].tolist(), se.iloc[i].tolist())
        np.testing.assert_allclose(out.iloc[i].to_numpy(), expected, rtol=1e-13, equal_nan=True)
    assert out.iloc[4].isna().all()


def test_vasicek_precise_beta_moves_less():
    beta = pd.DataFrame({"precise": [2.0], "noisy": [2.0], "c": [0.5], "d": [1.0]})
    se = pd.DataFrame({"precise": [0.01], "noisy": [1.0], "c": [0.1], "d": [0.1]})
    out = adjust.vasicek(beta=beta, stderr=se)
    mean = beta.iloc[0].mean()
    assert abs(out.at[0, "precise"] - 2.0) < abs(out.at[0, "noisy"] - 2.0)
    assert mean < out.at[0, "noisy"] < out.at[0, "precise"] <= 2.0


def test_vasicek_argument_errors():
    b = pd.DataFrame({"A": [1.0]})
    with pytest.raises(qf.FitError):
        adjust.vasicek(beta=b)
    with pytest.raises(qf.FitError, match="shape"):
        adjust.vasicek(beta=b, stderr=pd.DataFrame({"A": [1.0, 2.0]}))
