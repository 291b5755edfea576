"""Inference derived from a fit's stored statistics: p-values, confidence bounds, adjusted R²,
the total volatility of y. Numpy arrays in, numpy arrays out; ``RollingFit`` forms them on
access, so a fit (and a nightly result set) stores only estimate and standard error per term,
R², residual volatility and the row count per window.

Conventions (statsmodels' ``RollingOLS`` / ``WLS``, and ``RLM`` for Huber):

* degrees of freedom ν = n − p (n the window's valid rows, p the parameters: intercept and
  factors, not derived terms such as ``beta_dimson``); ν ≤ 0 gives NaN;
* p-value of t = estimate / SE: 2·P(T_ν > |t|), Student t with ν degrees of freedom for least
  squares (with or without a half-life or a prior), the standard normal for Huber (as RLM);
* confidence interval at level 1 − α: estimate ∓ q·SE with q the 1 − α/2 quantile of that
  distribution;
* adjusted R² = 1 − (1 − R²)·(n − 1)/ν (statsmodels' ``rsquared_adj`` with a constant; R² is
  centred here also without an intercept, so the centred form is used throughout);
* total volatility τ = √(TSS/(n − 1)), the (weighted, with a half-life) standard deviation of
  y in the window, on the same footing as the residual volatility σ = √(RSS/ν): from
  R² = 1 − RSS/TSS, τ² = σ²·ν / ((1 − R²)·(n − 1)), i.e. 1 − adjusted R² = σ²/τ². A constant
  y (R² NaN, σ finite) has τ = 0; an exact fit (R² = 1, σ = 0) does not determine TSS from
  those numbers, and τ is NaN there.

The distribution functions are scipy's (``scipy.special.stdtr`` / ``stdtrit`` / ``ndtr`` /
``ndtri``), the ones statsmodels calls: torch has no incomplete beta function.
"""

from __future__ import annotations

import numpy as np


def _dof(nobs: np.ndarray, p: int) -> np.ndarray:
    nu = np.asarray(nobs, dtype=np.float64) - p
    return np.where(nu > 0, nu, np.nan)


def pvalue(t: np.ndarray, nobs: np.ndarray, p: int, normal: bool = False) -> np.ndarray:
    """Two-sided p-value of the t statistics ``t`` with ν = ``nobs`` − p (arrays broadcast)."""
    from scipy import special

    a = -np.abs(np.asarray(t, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        if normal:
            return np.where(np.isfinite(_dof(nobs, p)), 2.0 * special.ndtr(a), np.nan)
        return 2.0 * special.stdtr(_dof(nobs, p), a)


def quantile(q: float, nobs: np.ndarray, p: int, normal: bool = False) -> np.ndarray:
    """The ``q`` quantile of the reference distribution (t with ν = nobs − p, or the normal),
    per window. Computed once per distinct ν (a handful), then looked up."""
    from scipy import special

    nu = _dof(nobs, p)
    if normal:
        return np.where(np.isfinite(nu), float(special.ndtri(q)), np.nan)
    flat = nu.ravel()
    known = np.isfinite(flat)
    out = np.full(flat.shape, np.nan)
    values, inverse = np.unique(flat[known], return_inverse=True)
    out[known] = special.stdtrit(values, q)[inverse]
    return out.reshape(nu.shape)


def conf_bounds(estimate: np.ndarray, std_error: np.ndarray, nobs: np.ndarray, p: int,
                alpha: float, normal: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) = estimate ∓ q·SE, q the 1 − α/2 quantile."""
    q = quantile(1.0 - alpha / 2.0, nobs, p, normal)
    half = q * std_error
    return estimate - half, estimate + half


def r2_adjusted(r2: np.ndarray, nobs: np.ndarray, p: int) -> np.ndarray:
    """1 − (1 − R²)·(n − 1)/(n − p)."""
    n = np.asarray(nobs, dtype=np.float64)
    return 1.0 - (1.0 - r2) * (n - 1.0) / _dof(nobs, p)


def total_vol(r2: np.ndarray, resid_vol: np.ndarray, nobs: np.ndarray, p: int) -> np.ndarray:
    """τ = √(σ²·ν / ((1 − R²)·(n − 1))); 0 for a constant y; NaN for an exact fit."""
    n = np.asarray(nobs, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        unexplained = 1.0 - r2
        tau2 = resid_vol * resid_vol * _dof(nobs, p) / (unexplained * (n - 1.0))
        tau = np.sqrt(np.where(unexplained > 0, tau2, np.nan))
    constant = np.isnan(r2) & np.isfinite(resid_vol)
    return np.where(constant, 0.0, tau)
