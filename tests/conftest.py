"""Shared test fixtures.

GPU tests carry ``@pytest.mark.gpu``; they are skipped only when torch sees no CUDA device.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import quantfit as qf


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    no_cuda = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(no_cuda)


@pytest.fixture(scope="session")
def sample_prices():
    """The embedded real sample, wide (dates x 19 stocks + SPY). Do not mutate."""
    return qf.load_sample()


@pytest.fixture(scope="module")
def clean_returns(sample_prices):
    """(y, x): daily returns 2013–2019 of stocks without a gap there, and factors SPY,
    SPY_lag1, EW with holes in SPY only (rows every asset drops): newton's fast path."""
    r = sample_prices.pct_change(fill_method=None).loc["2013":"2019"]
    y = r[["AAPL", "AMZN", "GM", "GOOG", "META", "UAA", "XOM"]]
    assert y.notna().all().all()
    x = pd.DataFrame({"SPY": r["SPY"], "SPY_lag1": r["SPY"].shift(1),
                      "EW": r.drop(columns="SPY").mean(axis=1)})
    rng = np.random.default_rng(11)
    x.loc[rng.random(len(x)) < 0.003, "SPY"] = np.nan
    return y, x


def engine_path(y, x, window, min_obs=None, **kw) -> str:
    """The path the engine takes for ``qf.fit_rolling(y, x, window, min_obs=..., **kw)``
    (``quantfit.engine.select_path``: "shared", "general" or "huber")."""
    from quantfit.engine import RollingSpec, select_path

    Y = y.to_frame() if isinstance(y, pd.Series) else y
    X = (x.to_frame() if isinstance(x, pd.Series) else x).reindex(Y.index)
    p = X.shape[1] + 1
    spec = RollingSpec(window=window, min_obs=min_obs or window or p, **kw)
    return select_path(torch.tensor(Y.to_numpy(float).T), torch.tensor(X.to_numpy(float)), spec,
                       torch.device("cpu"), torch.float64)


@pytest.fixture(scope="session")
def sample_long():
    """The embedded sample, long (date, ticker, close), from 2015 on. Do not mutate."""
    long = qf.sources.sample()
    return long[long["date"] >= "2015-01-01"].reset_index(drop=True)
