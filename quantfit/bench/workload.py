"""Synthetic benchmark workloads: daily returns with known betas, NaN-free.

``make_workload(n_assets, n_dates, window, seed)`` returns a ``Workload``: ``y`` (dates ×
assets, float64 DataFrame), the factor ``x`` (Series named ``"mkt"``), and the true
``beta`` / ``alpha`` per asset (constant in time). Conventions:

* returns are daily decimals (0.01 = 1 %); the factor has ~1 % daily vol, the residuals ~1.5 %;
* residuals are Student-t with 4 degrees of freedom (fat tails, as real returns), so robust
  (Huber) and least-squares estimates differ by more than rounding; the factor is t(5);
* every window is full (no NaN), so every method is measured on the same regressions:
  ``n_windows = n_assets × (n_dates − window + 1)``.

The same ``(n_assets, n_dates, window, seed)`` always gives the same numbers, so a child
process can rebuild the workload instead of receiving it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class WorkloadSpec:
    """Size of a workload: assets A, dates T, window W (rows), and the random seed."""

    n_assets: int
    n_dates: int
    window: int
    seed: int = 0

    @property
    def n_windows(self) -> int:
        """Regressions in the workload: one per asset and full window."""
        return self.n_assets * (self.n_dates - self.window + 1)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Workload:
    """A generated workload; ``y`` (T, A), ``x`` (T,), ``beta`` and ``alpha`` (A,)."""

    spec: WorkloadSpec
    y: pd.DataFrame
    x: pd.Series
    beta: np.ndarray
    alpha: np.ndarray

    @property
    def window(self) -> int:
        return self.spec.window

    def describe(self) -> str:
        s = self.spec
        return (f"{s.n_assets:,} assets × {s.n_dates:,} dates, window {s.window}, one factor "
                f"({s.n_windows:,} regressions)")


def make_workload(n_assets: int, n_dates: int, window: int, seed: int = 0) -> Workload:
    """Build ``y = α + β·x + ε`` for ``n_assets`` assets over ``n_dates`` business days.

    β ~ U(0.3, 1.8), α ~ N(0, 2e-4) per day, x = 3e-4 + 1 % · t(5)/sd, ε = 1.5 % · t(4)/sd.
    """
    if not (n_assets >= 1 and n_dates >= 2 and 2 <= window <= n_dates):
        raise ValueError(f"bad workload size: {n_assets} assets, {n_dates} dates, window {window}")
    spec = WorkloadSpec(int(n_assets), int(n_dates), int(window), int(seed))
    rng = np.random.default_rng(seed)
    beta = rng.uniform(0.3, 1.8, n_assets)
    alpha = rng.normal(0.0, 2e-4, n_assets)
    x = 3e-4 + 0.01 * rng.standard_t(5, n_dates) / np.sqrt(5 / 3)
    eps = rng.standard_t(4, (n_dates, n_assets))
    eps *= 0.015 / np.sqrt(2.0)  # t(4) has variance 2
    y = eps
    y += alpha
    y += np.multiply.outer(x, beta)
    dates = pd.bdate_range("2000-01-03", periods=n_dates, name="date")
    assets = pd.Index([f"A{i:05d}" for i in range(n_assets)], name="asset")
    return Workload(spec, pd.DataFrame(y, index=dates, columns=assets, copy=False),
                    pd.Series(x, index=dates, name="mkt"), beta, alpha)
