"""Optimizer convergence: histories of the mean per-window loss and their picture.

* ``plot_convergence(histories, optimum=None)`` draws loss (or loss − optimum) against the
  iteration, log scale, one line per solver.
* ``mean_window_loss(fit)`` is the loss the engine minimizes, ½·Σ w·(y − ŷ)² per window (in
  y's units squared), averaged over the windows with an estimate; for a newton fit it is the
  optimum.
* ``convergence_histories(y, x, window, solvers)`` measures histories through the public API.

The histories come from the engine itself: ``qf.fit_rolling(..., history=True)`` records the
mean per-window loss after every iteration (``fit.history``), so each solver runs once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike

import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from quantfit.errors import FitError
from quantfit.fit import fit_rolling
from quantfit.report._common import new_figure, save
from quantfit.results import RollingFit


def window_loss(fit: RollingFit) -> pd.DataFrame:
    """½·RSS of every window (dates × assets, y's units squared; NaN without an estimate),
    from ``resid_vol`` = √(RSS/(nobs − p)). Weighted RSS when the fit used ``halflife``."""
    loss = fit.meta.spec.estimator.loss
    if loss != "mse":
        raise FitError(f"window_loss needs a squared-loss fit, this one has loss={loss!r}")
    dof = fit.nobs - len(fit.terms)
    return 0.5 * fit.resid_vol.pow(2) * dof


def mean_window_loss(fit: RollingFit, mask: np.ndarray | None = None) -> float:
    """Mean of ``window_loss`` over the windows with an estimate (or over ``mask``, a (T, A)
    bool array; NaN when a masked window has no estimate, e.g. a diverged solver)."""
    loss = window_loss(fit).to_numpy()
    if mask is None:
        mask = np.isfinite(loss)
    if not mask.any():
        raise FitError("the fit has no estimates")
    return float(loss[mask].mean())


def convergence_histories(y: pd.DataFrame | pd.Series, x: pd.DataFrame | pd.Series,
                          window: int = 252, solvers: Sequence[str] = ("gd", "adam", "lbfgs"),
                          *, max_iter: int | None = None, points: int = 24,
                          **fit_kwargs) -> dict[str, pd.Series]:
    """Mean per-window loss of each iterative solver against the iteration.

    Parameters
    ----------
    y, x, window, fit_kwargs : as for ``qf.fit_rolling`` (squared loss; keep the problem
        small: each solver is re-run once per grid point, see the module docstring).
    solvers : iterative solver names (``qf.fit_rolling``'s ``solver=``).
    max_iter : last iteration to measure (default: each solver's default ``max_iter``).
    points : unused (kept for compatibility: histories now have every iteration).

    Returns ``{solver: Series}``, each indexed by iteration count k (int) with the mean over
    windows of ½·RSS after k iterations (``fit.history``). The windows are those with enough
    rows, the windows where newton has an estimate (unless one is singular), so the histories
    and ``mean_window_loss(qf.fit_rolling(y, x, window, **fit_kwargs))`` (the optimum) average
    the same windows.
    """
    from quantfit.spec import SOLVERS

    for key in ("solver", "max_iter", "loss", "history"):
        if key in fit_kwargs:
            raise FitError(f"convergence_histories sets {key}= itself")
    out: dict[str, pd.Series] = {}
    for solver in solvers:
        if solver not in SOLVERS:
            raise FitError(f"unknown solver {solver!r}; choose one of {list(SOLVERS)}")
        fit = fit_rolling(y, x, window, solver=solver, max_iter=max_iter, history=True,
                          **fit_kwargs)
        h = np.asarray(fit.history, dtype=float)
        out[solver] = pd.Series(h, index=pd.Index(np.arange(1, len(h) + 1), name="iteration"),
                                name=solver)
    return out


def plot_convergence(histories: Mapping[str, Sequence[float] | pd.Series],
                     optimum: float | None = None, *, title: str | None = None,
                     path: str | PathLike | None = None) -> Figure:
    """Loss against iteration, one line per solver, log-scaled loss.

    Parameters
    ----------
    histories : ``{solver name: history}``; a history is a 1-D array whose element i is the
        mean per-window loss after iteration i + 1, or a Series indexed by iteration number
        (as ``convergence_histories`` returns).
    optimum : the minimum of the same loss (e.g. ``mean_window_loss`` of a newton fit); when
        given the y axis is loss − optimum, and points at or below it (converged to rounding)
        are left out rather than drawn at an invented floor.
    title, path : figure title; optional ``.png`` / ``.svg`` file to save to.

    Returns a Figure with one Axes, one line (with markers) per solver, in mapping order; the
    iteration axis is logarithmic when a history runs past 50 iterations.
    """
    if not histories:
        raise FitError("histories is empty: pass {solver name: losses per iteration}")
    fig = new_figure(8.0, 4.8)
    ax = fig.add_subplot()
    last = 1.0
    for name, h in histories.items():
        if isinstance(h, pd.Series):
            it, val = np.asarray(h.index, dtype=float), h.to_numpy(dtype=float)
        else:
            val = np.asarray(h, dtype=float)
            if val.ndim != 1:
                raise FitError(f"history of {name!r} must be 1-D, got shape {val.shape}")
            it = np.arange(1, len(val) + 1, dtype=float)
        if optimum is not None:
            val = val - float(optimum)
        val = np.where(val > 0, val, np.nan)  # log scale: nothing to draw at or below zero
        ax.plot(it, val, marker="o", ms=3, lw=1.5, label=str(name))
        last = max(last, float(np.nanmax(it)) if len(it) else 1.0)
    ax.set_yscale("log")
    if last > 50:  # solvers that differ by orders of magnitude in iterations
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    else:
        ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean window loss − optimum" if optimum is not None else "mean window loss")
    ax.set_title(title or "Solver convergence (mean ½·RSS per window)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    save(fig, path)
    return fig
