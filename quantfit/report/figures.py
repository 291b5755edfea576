"""Figures of rolling betas: time series, the classic scatter, cross-sections and a heatmap.

Every function returns a ``matplotlib.figure.Figure`` (no pyplot, no display needed) and saves
it when given ``path=`` (``.png`` or ``.svg``). Conventions:

* ``fit`` is a ``RollingFit`` from ``qf.fit_rolling``; ``term`` names a coefficient (a factor
  name or ``"alpha"``) and defaults to the only factor of a one-factor fit.
* Betas and their standard errors are unitless; returns are drawn in percent per period of
  the input (daily returns give daily %); dates are the fit's dates (window end dates).
* Bad inputs (unknown asset or term, a date without estimates) raise ``qf.FitError``.
"""

from __future__ import annotations

from os import PathLike

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from quantfit.errors import FitError
from quantfit.fit import fit_rolling
from quantfit.report._common import (
    check_fit,
    cross_section_date,
    fmt_date,
    new_figure,
    pick_assets,
    pick_term,
    save,
)
from quantfit.results import RollingFit

#: How many assets ``plot_beta`` shows when none are named (more lines are unreadable).
DEFAULT_ASSETS = 5

#: The robust fit drawn by ``plot_fit(robust=True)``: keyword arguments for ``qf.fit_rolling``.
#: This is the one place that says which robust loss the scatter uses.
ROBUST_FIT = {"loss": "huber"}


_PERIODS = {"ME": "month", "QE": "quarter", "YE": "year", "W": "week", "D": "day"}


def _what(term: str) -> str:
    return "α" if term == "alpha" else f"β on {term}"


def _date_axis(ax) -> None:
    loc = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))


def _default_assets(coef: pd.DataFrame, n: int = DEFAULT_ASSETS) -> list:
    """Up to ``n`` assets spread across the latest cross-section (lowest to highest β), so the
    default picture shows the range instead of n arbitrary, overlapping lines."""
    at = cross_section_date(coef)
    latest = coef.loc[at].dropna().sort_values(ascending=False)
    if len(latest) <= n:
        return list(latest.index)
    pos = np.unique(np.linspace(0, len(latest) - 1, n).round().astype(int))
    return list(latest.index[pos])


def plot_beta(fit: RollingFit, assets=None, term: str | None = None, band: float | None = 2.0,
              *, path: str | PathLike | None = None) -> Figure:
    """Rolling coefficient over time, one line per asset, with a ±band·SE shaded band.

    Parameters
    ----------
    fit : RollingFit (dates × assets).
    assets : an asset label or a list of them; default: up to 5 assets spread from the highest
        to the lowest latest β (a line per asset; legend ordered by latest β).
    term : coefficient to draw (default: the only factor).
    band : half-width of the band in standard errors (2.0 ≈ a 95% interval); 0 or None: no band.
    path : optional ``.png`` / ``.svg`` file to save to.

    Returns a Figure with one Axes: x = window end dates, y = the coefficient (unitless).
    """
    fit = check_fit(fit)
    term = pick_term(fit, term)
    coef, se = fit.coef(term), fit.stderr(term)
    names = _default_assets(coef) if assets is None else pick_assets(fit, assets)
    fig = new_figure()
    ax = fig.add_subplot()
    for name in names:
        b = coef[name]
        if not b.notna().any():
            raise FitError(f"{name} has no estimates of {term!r} (too few valid rows per window)")
        line, = ax.plot(b.index, b.to_numpy(), lw=1.2, label=str(name))
        if band:
            half = band * se[name].to_numpy()
            ax.fill_between(b.index, b.to_numpy() - half, b.to_numpy() + half,
                            color=line.get_color(), alpha=0.18, lw=0)
    w = fit.meta.spec.window
    win = "expanding window" if w.expanding else (
        f"{w.length}-row window" if w.rows else f"{w.length} window")
    band_txt = f", band ±{band:g}·SE" if band else ""
    ax.set_title(f"Rolling {_what(term)} ({win}{band_txt})")
    ax.set_ylabel(f"β on {term}" if term != "alpha" else "α (per period)")
    ax.grid(alpha=0.3)
    _date_axis(ax)
    ax.legend(loc="upper left", ncols=min(len(names), 5), fontsize="small", frameon=False)
    save(fig, path)
    return fig


def robust_available() -> bool:
    """True when the engine offers the robust loss ``plot_fit(robust=True)`` draws."""
    from quantfit.spec import LOSSES
    return ROBUST_FIT["loss"] in LOSSES


def _window_fit(ys: pd.Series, xs: pd.Series, window: int, **fit_kwargs) -> tuple[float, float]:
    """(α, β) of one window: the last estimate of qf.fit_rolling over exactly those rows."""
    fit = fit_rolling(ys, xs, window=window, **fit_kwargs)
    alpha, beta = fit.coef("alpha").iloc[-1, 0], fit.coef(fit.factors[0]).iloc[-1, 0]
    return float(alpha), float(beta)


def plot_fit(y: pd.DataFrame | pd.Series, x: pd.DataFrame | pd.Series, asset, end=None,
             window: int = 252, robust: bool = True, *,
             path: str | PathLike | None = None) -> Figure:
    """An asset's returns against the factor's for one window, with the fitted line(s).

    Parameters
    ----------
    y : asset returns, DataFrame (dates × assets) or a Series, in decimals per period.
    x : one factor's returns (Series, or a one-column DataFrame), aligned to y by date.
    asset : column of ``y`` to draw (for a Series: its name).
    end : last date of the window (default: y's last date); the window is the ``window`` rows
        of y ending on or before ``end``, exactly the window ``qf.fit_rolling`` uses at that date.
    window : rows in the window.
    robust : also draw the robust (Huber) line, from ``qf.fit_rolling(..., loss="huber")``;
        FitError when this version of the engine has no such loss.
    path : optional ``.png`` / ``.svg`` file to save to.

    Returns a Figure with one Axes: a scatter of the window's valid rows (in %) and the OLS
    line ``α + β·x`` (and the Huber line), labelled with their β.
    """
    Y = y.to_frame() if isinstance(y, pd.Series) else y
    X = x.to_frame() if isinstance(x, pd.Series) else x
    if not isinstance(Y, pd.DataFrame) or not isinstance(X, pd.DataFrame):
        raise FitError("plot_fit needs pandas y and x (DataFrame or Series)")
    if X.shape[1] != 1:
        raise FitError(f"plot_fit draws one factor; x has {X.shape[1]} columns {list(X.columns)}")
    if asset not in Y.columns:
        raise FitError(f"unknown asset {asset!r}; y has {len(Y.columns)} columns "
                       f"({', '.join(map(str, list(Y.columns[:10])))}{', ...' if Y.shape[1] > 10 else ''})")
    if not isinstance(window, (int, np.integer)) or window < 3:
        raise FitError(f"window must be an integer of at least 3 rows, got {window!r}")
    factor = X.columns[0]
    xs_all = X[factor].reindex(Y.index)
    last = len(Y) - 1
    if end is not None:
        try:
            end = pd.Timestamp(end)
        except (TypeError, ValueError):
            raise FitError(f"bad end date {end!r}") from None
        last = int(Y.index.searchsorted(end, side="right")) - 1
        if last < 0:
            raise FitError(f"end={end} is before y's first date {Y.index[0]}")
    first = max(0, last - int(window) + 1)
    ys, xs = Y[asset].iloc[first:last + 1], xs_all.iloc[first:last + 1]
    end_date = Y.index[last]

    lines = {"OLS": _window_fit(ys, xs, int(window))}
    if robust:
        try:
            lines["Huber"] = _window_fit(ys, xs, int(window), **ROBUST_FIT)
        except FitError as exc:
            raise FitError(f"plot_fit(robust=True) needs the robust fit qf.fit_rolling("
                           f"{', '.join(f'{k}={v!r}' for k, v in ROBUST_FIT.items())}): {exc}; "
                           f"pass robust=False to draw the OLS line only") from None
    if not np.isfinite(lines["OLS"][1]):
        ok = int((ys.notna() & xs.notna()).sum())
        raise FitError(f"no estimate for {asset} in the {window}-row window ending "
                       f"{fmt_date(end_date)}: {ok} valid rows of {len(ys)} (needs {window})")

    ok = ys.notna().to_numpy() & xs.notna().to_numpy()
    xv, yv = 100 * xs.to_numpy()[ok], 100 * ys.to_numpy()[ok]
    fig = new_figure(7.0, 5.6)
    ax = fig.add_subplot()
    ax.scatter(xv, yv, s=9, alpha=0.45, color="0.35", lw=0, label=f"{ok.sum()} rows")
    grid = np.linspace(xv.min(), xv.max(), 2)
    styles = {"OLS": dict(color="tab:blue", lw=2.0), "Huber": dict(color="tab:red", lw=2.0, ls="--")}
    for name, (a, b) in lines.items():
        # Both axes are in %, so the slope is β and the intercept is 100·α.
        ax.plot(grid, 100 * a + b * grid, label=f"{name}: β = {b:.3f}, α = {100 * a:.3f}%",
                **styles[name])
    ax.axhline(0, color="0.7", lw=0.8, zorder=0)
    ax.axvline(0, color="0.7", lw=0.8, zorder=0)
    ax.set_xlabel(f"{factor} return (%)")
    ax.set_ylabel(f"{asset} return (%)")
    ax.set_title(f"{asset} on {factor}: {len(ys)} rows to {fmt_date(end_date)}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    save(fig, path)
    return fig


def plot_beta_distribution(fit: RollingFit, date=None, term: str | None = None, *,
                           path: str | PathLike | None = None) -> Figure:
    """Cross-sectional distribution of the coefficient on one date.

    Parameters
    ----------
    fit : RollingFit.
    date : the cross-section's date: the last date on or before it (default: the last date
        with any estimate); FitError when that date has no estimates.
    term : coefficient (default: the only factor).
    path : optional ``.png`` / ``.svg`` file to save to.

    Returns a Figure with one Axes: a histogram of the assets' estimates, a rug (one tick per
    asset), vertical mean and median lines, and the lowest and highest assets named.
    """
    fit = check_fit(fit)
    term = pick_term(fit, term)
    coef = fit.coef(term)
    at = cross_section_date(coef, date)
    values = coef.loc[at].dropna().sort_values()
    v = values.to_numpy()
    fig = new_figure(8.0, 4.8)
    ax = fig.add_subplot()
    bins = int(np.clip(np.sqrt(len(v)) * 2, 8, 60))
    ax.hist(v, bins=bins, color="tab:blue", alpha=0.55, edgecolor="white")
    # The rug sits at the bottom of the axes whatever the histogram's height.
    ax.plot(v, np.full(len(v), 0.02), "|", color="0.15", ms=12, alpha=min(1.0, 30 / len(v) + 0.2),
            transform=ax.get_xaxis_transform(), label="assets")
    ax.axvline(v.mean(), color="tab:red", lw=1.8, label=f"mean {v.mean():.3f}")
    ax.axvline(np.median(v), color="tab:orange", lw=1.8, ls="--", label=f"median {np.median(v):.3f}")
    if len(v) >= 2:
        for name, val, ha in ((values.index[0], v[0], "left"), (values.index[-1], v[-1], "right")):
            ax.annotate(str(name), (val, 0.06), xycoords=ax.get_xaxis_transform(), ha=ha,
                        fontsize="small", rotation=90, va="bottom")
    ax.set_xlabel(f"β on {term}" if term != "alpha" else "α (per period)")
    ax.set_ylabel("assets")
    ax.set_title(f"Cross-section of {_what(term)} on {fmt_date(at)} ({len(v)} assets)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    save(fig, path)
    return fig


def monthly(coef: pd.DataFrame, freq: str = "ME") -> pd.DataFrame:
    """Last estimate in each period of ``freq`` (pandas offset alias), periods with no estimate
    at either end trimmed: (periods × assets)."""
    try:
        out = coef.resample(freq).last()
    except (ValueError, TypeError) as exc:
        raise FitError(f"bad freq {freq!r}: {exc}") from None
    has = out.notna().any(axis=1).to_numpy()
    if not has.any():
        raise FitError("the fit has no estimates at any date")
    i0, i1 = np.argmax(has), len(has) - np.argmax(has[::-1])
    return out.iloc[i0:i1]


def plot_beta_heatmap(fit: RollingFit, term: str | None = None, freq: str = "ME", *,
                      path: str | PathLike | None = None) -> Figure:
    """Assets × time heatmap of the coefficient, resampled to period ends.

    Parameters
    ----------
    fit : RollingFit.
    term : coefficient (default: the only factor).
    freq : pandas offset alias of the columns (``"ME"`` month ends; ``"QE"``, ``"YE"``, ...);
        each cell is the last estimate in its period, so thousands of dates stay readable.
    path : optional ``.png`` / ``.svg`` file to save to.

    Returns a Figure whose image has shape (assets, periods) in the fit's asset order, with a
    diverging colormap centred at 1 (0 for ``"alpha"``) and clipped at the 99th percentile of
    the distance from the centre; a colorbar; empty cells (no estimate) white.
    """
    fit = check_fit(fit)
    term = pick_term(fit, term)
    per = monthly(fit.coef(term), freq)
    data = per.to_numpy().T  # (assets, periods)
    centre = 0.0 if term == "alpha" else 1.0
    dev = np.abs(data[np.isfinite(data)] - centre)
    half = float(np.percentile(dev, 99)) if dev.size else 1.0
    half = half if half > 0 else 1.0
    A, M = data.shape
    fig = new_figure(10.0, min(12.0, max(3.5, 1.2 + 0.22 * A)))
    ax = fig.add_subplot()
    # Column j covers (end of period j-1, end of period j]; the first is as wide as the second.
    ends = mdates.date2num(per.index.to_pydatetime())
    left = ends[0] - (ends[1] - ends[0] if M > 1 else 30.0)
    img = ax.imshow(np.ma.masked_invalid(data), aspect="auto", interpolation="nearest",
                    cmap="RdBu_r", norm=Normalize(centre - half, centre + half),
                    extent=(left, ends[-1], A - 0.5, -0.5))
    ax.xaxis_date()
    _date_axis(ax)
    if A <= 40:
        ax.set_yticks(range(A), [str(a) for a in fit.assets], fontsize="small")
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{A} assets (fit order)")
    ax.set_facecolor("0.82")  # no estimate: grey, distinct from the white of β = 1
    cb = fig.colorbar(img, ax=ax, extend="both", pad=0.01)
    cb.set_label(f"β on {term}" if term != "alpha" else "α (per period)")
    ax.set_title(f"{_what(term)}, last estimate per {_PERIODS.get(freq, freq)}: {A} assets × {M} periods"
                 " (grey: no estimate)")
    save(fig, path)
    return fig


__all__ = ["plot_beta", "plot_fit", "plot_beta_distribution", "plot_beta_heatmap",
           "robust_available", "monthly"]
