"""Beta adjustments applied after a fit: Blume (1971) and Vasicek (1973).

Both take betas as DataFrames (dates x assets), as returned by ``RollingFit.beta`` /
``RollingFit.coef(term)``, and return a frame of the same shape. NaN in stays NaN out.

- ``blume``: the fixed-weight pull toward 1 quoted by data terminals,
  ``adjusted = weight * beta + (1 - weight) * target`` (weight 0.67, target 1.0 by default).
- ``vasicek``: per-date empirical-Bayes shrinkage of each asset's beta toward the
  cross-sectional mean, more for betas measured less precisely (larger standard error).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from quantfit.errors import FitError


def blume(beta: pd.DataFrame | pd.Series | float, weight: float = 0.67, target: float = 1.0):
    """Blume-adjusted beta: ``weight * beta + (1 - weight) * target``.

    Blume (1971) observed that betas regress toward 1 over time; terminals quote the
    adjusted beta with ``weight = 0.67`` (two thirds raw, one third market beta of 1).
    Works element-wise on a scalar, Series or DataFrame and returns the same type.
    """
    if not 0.0 <= weight <= 1.0:
        raise FitError(f"blume weight must be in [0, 1], got {weight}")
    return weight * beta + (1.0 - weight) * target


def vasicek(
    fit: Any = None,
    *,
    beta: pd.DataFrame | None = None,
    stderr: pd.DataFrame | None = None,
    term: str | None = None,
    min_assets: int = 3,
) -> pd.DataFrame:
    """Vasicek (1973) Bayesian shrinkage of betas toward the cross-sectional mean, per date.

    For each date t, over the assets i with a beta and a standard error on that date::

        prior mean      m_t  = mean_i beta_it
        prior variance  v_t  = var_i beta_it            (cross-sectional, ddof=1)
        weight          w_it = v_t / (v_t + se_it**2)
        adjusted        b_it = w_it * beta_it + (1 - w_it) * m_t

    A precisely measured beta (small ``se``) keeps most of its value; a noisy one moves toward
    the cross-section. Dates with fewer than ``min_assets`` betas are left NaN (the prior
    cannot be estimated).

    Pass a ``RollingFit`` (``term`` defaults to its only factor), or ``beta=`` and ``stderr=``
    frames of the same shape (dates x assets). Returns the adjusted betas, dates x assets.
    """
    if fit is not None:
        if beta is not None or stderr is not None:
            raise FitError("vasicek: pass either a fit or beta= and stderr=, not both")
        if term is None:
            beta, stderr = fit.beta, fit.stderr(_only_factor(fit))
        else:
            beta, stderr = fit.coef(term), fit.stderr(term)
    if beta is None or stderr is None:
        raise FitError("vasicek needs a fit, or both beta= and stderr=")
    if beta.shape != stderr.shape:
        raise FitError(f"vasicek: beta {beta.shape} and stderr {stderr.shape} differ in shape")
    stderr = stderr.reindex_like(beta)

    valid = beta.notna() & stderr.notna()
    b = beta.where(valid)
    prior_mean = b.mean(axis=1)
    prior_var = b.var(axis=1, ddof=1)
    enough = valid.sum(axis=1) >= max(min_assets, 2)
    prior_mean, prior_var = prior_mean.where(enough), prior_var.where(enough)

    se2 = stderr.where(valid) ** 2
    denom = se2.add(prior_var, axis=0)  # v_t + se_it^2
    weight = denom.rdiv(1.0).mul(prior_var, axis=0)  # v_t / (v_t + se_it^2)
    weight = weight.where(np.isfinite(weight))  # 0/0 when v_t = se_it = 0
    return weight * b + (1.0 - weight).mul(prior_mean, axis=0)


def _only_factor(fit: Any) -> str:
    beta_term = fit.meta.beta_term  # a Dimson fit: the summed beta
    if beta_term:
        return beta_term
    factors = [t for t in fit.terms if t != "alpha"]
    if len(factors) != 1:
        raise FitError(f"vasicek: the fit has factors {factors}; name one with term=")
    return factors[0]
