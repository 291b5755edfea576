"""Synthetic workloads for the engine benchmark (known betas, daily-return scales).

W1: 500 assets × 2,520 dates, one factor (``make_w1``).
W2: 5,000 assets × 5,040 dates, three factors (``make_w2``; also used for the memory check).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_w1(n_assets: int = 500, n_dates: int = 2520, seed: int = 0):
    """y (dates × assets) DataFrame, x Series 'mkt', true betas (assets,)."""
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2010-01-01", periods=n_dates, name="date")
    x = pd.Series(rng.normal(3e-4, 0.01, n_dates), index=idx, name="mkt")
    beta = rng.uniform(0.5, 1.5, n_assets)
    alpha = rng.normal(0.0, 2e-4, n_assets)
    y = rng.normal(0.0, 0.015, (n_dates, n_assets))
    y += np.outer(x.to_numpy(), beta)
    y += alpha
    cols = [f"S{i:05d}" for i in range(n_assets)]
    return pd.DataFrame(y, index=idx, columns=cols), x, beta


def make_w2(n_assets: int = 5000, n_dates: int = 5040, seed: int = 1):
    """y (dates × assets) DataFrame, x DataFrame of three factors (market, size, value)."""
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2004-01-01", periods=n_dates, name="date")
    mkt = rng.normal(3e-4, 0.011, n_dates)
    smb = 0.2 * mkt + rng.normal(0, 0.005, n_dates)
    hml = -0.1 * mkt + rng.normal(0, 0.005, n_dates)
    x = pd.DataFrame({"mkt": mkt, "smb": smb, "hml": hml}, index=idx)
    betas = np.stack([rng.uniform(0.5, 1.5, n_assets), rng.normal(0, 0.5, n_assets),
                      rng.normal(0, 0.5, n_assets)])
    y = rng.normal(0.0, 0.015, (n_dates, n_assets))
    y += x.to_numpy() @ betas
    cols = [f"S{i:05d}" for i in range(n_assets)]
    return pd.DataFrame(y, index=idx, columns=cols), x, betas
