"""Helpers shared by the report modules: headless figures, saving, picking terms and dates.

Nothing here touches pyplot: figures are ``matplotlib.figure.Figure`` objects that draw with
Agg when saved, so the report works without a display and leaves no global figure state.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from quantfit._atomic import atomic_open
from quantfit.errors import FitError, QuantfitError
from quantfit.results import RollingFit

#: File formats ``path=`` accepts, by suffix.
FORMATS = {".png": "png", ".svg": "svg"}


def new_figure(width: float = 9.0, height: float = 4.8) -> Figure:
    """A Figure (inches) with constrained layout, so labels and legends never overlap."""
    return Figure(figsize=(width, height), layout="constrained")


def save(fig: Figure, path: str | PathLike | None, dpi: int = 120) -> None:
    """Save ``fig`` to ``path`` (PNG or SVG, by suffix) atomically; no-op when path is None.

    Written to a temporary file in the target directory, then renamed over ``path``, so a
    reader (a browser on the report) never sees half a file.
    """
    if path is None:
        return
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise QuantfitError(f"cannot save a figure as {path.name!r}: use a .png or .svg path")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format=fmt, dpi=dpi)


def fmt_date(d) -> str:
    """YYYY-MM-DD for timestamps, str() for anything else (a non-date index)."""
    return str(d.date()) if isinstance(d, pd.Timestamp) else str(d)


def check_fit(fit: object) -> RollingFit:
    if not isinstance(fit, RollingFit):
        raise FitError(f"expected a RollingFit (from qf.fit_rolling), got {type(fit).__name__}")
    return fit


def pick_term(fit: RollingFit, term: str | None) -> str:
    """``term`` when it is one of the fit's factors; by default the only factor."""
    factors = fit.factors
    if term is None:
        if len(factors) != 1:
            raise FitError(f"this fit has several factors {factors}: pass term=")
        return factors[0]
    if term not in fit.terms:
        raise FitError(f"unknown term {term!r}; this fit has {fit.terms}")
    return term


def pick_assets(fit: RollingFit, assets) -> list:
    """``assets`` (one label or a list) checked against the fit's assets, order kept."""
    if isinstance(assets, (str, bytes)) or not np.iterable(assets):
        assets = [assets]
    assets = list(assets)
    if not assets:
        raise FitError("assets is empty")
    unknown = [a for a in assets if a not in fit.assets]
    if unknown:
        shown = ", ".join(map(str, list(fit.assets[:10]))) + (", ..." if len(fit.assets) > 10 else "")
        raise FitError(f"unknown asset{'s' if len(unknown) > 1 else ''} "
                       f"{', '.join(map(str, unknown))}; this fit has {shown}")
    return assets


def cross_section_date(coef: pd.DataFrame, date=None) -> pd.Timestamp:
    """The date of a cross-section of estimates: the last date with any estimate, or the last
    date on or before ``date``; FitError when that date has no estimate at all."""
    has = coef.notna().any(axis=1)
    if date is None:
        if not has.any():
            raise FitError("the fit has no estimates at any date")
        return coef.index[has.to_numpy()][-1]
    try:
        ts = pd.Timestamp(date)
    except (TypeError, ValueError):
        raise FitError(f"bad date {date!r}") from None
    pos = coef.index.searchsorted(ts, side="right") - 1
    if pos < 0:
        raise FitError(f"date {fmt_date(ts)} is before the fit's first date {fmt_date(coef.index[0])}")
    at = coef.index[pos]
    if not has.iloc[pos]:
        raise FitError(f"no estimates on {fmt_date(at)} (windows need more valid rows); "
                       f"the fit has estimates from {_first_last(coef, has)}")
    return at


def _first_last(coef: pd.DataFrame, has: pd.Series) -> str:
    if not has.any():
        return "no date"
    idx = coef.index[has.to_numpy()]
    return f"{fmt_date(idx[0])} to {fmt_date(idx[-1])}"
