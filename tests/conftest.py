"""Shared test fixtures.

GPU tests carry ``@pytest.mark.gpu``; they are skipped only when torch sees no CUDA device.
"""

from __future__ import annotations

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
