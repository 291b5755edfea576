"""``write_html``: a static, self-contained HTML page of a fit (no JavaScript, no network).

Layout of ``out_dir``: ``index.html`` and the PNG figures beside it, referenced by relative
links, so the folder can be copied, served or opened from disk as it is. Every file is written
to a temporary name and renamed into place, so a reader never sees a half-written page; all
text taken from the data (asset and term names, title) is HTML-escaped.
"""

from __future__ import annotations

import html
import re
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from quantfit import __version__
from quantfit._atomic import atomic_open
from quantfit.errors import FitError
from quantfit.report._common import check_fit, cross_section_date, fmt_date
from quantfit.report.figures import (
    plot_beta,
    plot_beta_distribution,
    plot_beta_heatmap,
    plot_fit,
    robust_available,
)
from quantfit.results import RollingFit

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; }
img { max-width: 100%; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.meta { color: #666; font-size: 0.9em; }
"""


def latest_table(fit: RollingFit, date=None) -> tuple[pd.Timestamp, pd.DataFrame]:
    """The cross-section on one date (default: the last date with any estimate) as a frame
    indexed by asset: per factor ``beta_<f>``, ``se_<f>``, then ``r2`` and ``nobs``; sorted by
    the first factor's β, descending. Assets without an estimate that day are left out."""
    fit = check_fit(fit)
    factors = fit.factors
    if not factors:
        raise FitError("the fit has no factor terms")
    at = cross_section_date(fit.coef(factors[0]), date)
    cols = {}
    for f in factors:
        cols[f"beta_{f}"] = fit.coef(f).loc[at]
        cols[f"se_{f}"] = fit.stderr(f).loc[at]
    cols["r2"] = fit.r2.loc[at]
    cols["nobs"] = fit.nobs.loc[at]
    table = pd.DataFrame(cols)
    table = table[table[f"beta_{factors[0]}"].notna()]
    table = table.sort_values(f"beta_{factors[0]}", ascending=False, kind="stable")
    table.index.name = "asset"
    return at, table


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "term"


def _fmt(v: float, digits: int) -> str:
    return f"{v:.{digits}f}" if np.isfinite(v) else "–"


def _table_html(table: pd.DataFrame, factors: list[str]) -> str:
    e = html.escape
    head = ["asset"] + [h for f in factors for h in (f"β {f}", f"SE {f}")] + ["R²", "nobs"]
    rows = ["<tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"]
    for asset, r in table.iterrows():
        cells = [e(str(asset))]
        for f in factors:
            cells += [_fmt(r[f"beta_{f}"], 4), _fmt(r[f"se_{f}"], 4)]
        cells += [_fmt(r["r2"], 3), str(int(r["nobs"]))]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return '<table id="latest">\n' + "\n".join(rows) + "\n</table>"


def write_html(fit: RollingFit, out_dir: str | PathLike, *, y: pd.DataFrame | None = None,
               x: pd.DataFrame | pd.Series | None = None, title: str | None = None,
               cross_section: RollingFit | None = None) -> Path:
    """Write ``out_dir/index.html`` with the report's figures and the latest betas.

    Parameters
    ----------
    fit : RollingFit.
    out_dir : folder to write into (created if needed); existing files of the same names are
        replaced atomically.
    y, x : the returns the fit was estimated on (dates × assets, and the factor); when both
        are given and x is one factor, the page adds the scatter of the highest-β asset's last
        window (with the robust line when the engine has the Huber loss).
    title : page title (default: "quantfit report").
    cross_section : a fit whose last date gives the latest table and the cross-section figure
        (default: ``fit``). The nightly job passes every asset's latest estimates here and a
        bounded selection of assets as ``fit``, so the page costs the same for 20 or 20,000
        assets while the table lists them all.

    Returns the path of ``index.html``. The page holds, per factor, the rolling β of a handful
    of assets, the latest cross-section and the assets × months heatmap, then a table of the
    latest estimates sorted by β (descending) with SE, R² and nobs.
    """
    fit = check_fit(fit)
    latest = fit if cross_section is None else check_fit(cross_section)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    e = html.escape
    title = title or "quantfit report"
    at, table = latest_table(latest)
    factors = fit.factors
    sections: list[str] = []

    def figure(name: str, heading: str, make) -> None:
        fig = make(out / name)
        alt = fig.axes[0].get_title() if fig.axes else heading
        sections.append(f"<h2>{e(heading)}</h2>\n<img src=\"{e(name)}\" alt=\"{e(alt)}\">")

    for i, f in enumerate(factors):
        tag = f"{i}_{_slug(f)}"
        figure(f"beta_{tag}.png", f"Rolling β on {f}",
               lambda p, f=f: plot_beta(fit, term=f, path=p))
        figure(f"distribution_{tag}.png", f"Cross-section of β on {f}",
               lambda p, f=f: plot_beta_distribution(latest, term=f, path=p))
        figure(f"heatmap_{tag}.png", f"β on {f}, assets × months",
               lambda p, f=f: plot_beta_heatmap(fit, term=f, path=p))
    if y is not None and x is not None and len(factors) == 1 and len(table):
        window = _last_window_rows(fit.meta.spec.window, y.index, at)
        asset = table.index[0]
        figure("fit.png", f"{asset} against {factors[0]}, last window",
               lambda p: plot_fit(y, x, asset, end=at, window=int(window),
                                  robust=robust_available(), path=p))

    s = fit.meta.spec
    win = "expanding" if s.window.expanding else (
        f"window {s.window.length} rows" if s.window.rows else f"window {s.window.length}")
    missing = [str(a) for a in latest.assets if a not in table.index]
    note = (f"<p class=\"meta\">No estimate on {fmt_date(at)}: {e(', '.join(missing))}</p>"
            if missing else "")
    body = "\n".join([
        f"<h1>{e(title)}</h1>",
        f"<p class=\"meta\">{len(latest.assets)} assets, {len(fit.index)} dates "
        f"({e(fmt_date(fit.index[0]))} to {e(fmt_date(fit.index[-1]))}); "
        f"terms {e(', '.join(fit.terms))}; {e(win)}, solver {e(s.solver.name)}, "
        f"loss {e(s.estimator.loss)}; quantfit {e(__version__)}</p>",
        *sections,
        f"<h2>Latest estimates ({fmt_date(at)}), sorted by β on {e(factors[0])}</h2>",
        _table_html(table, factors),
        note,
    ])
    page = (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n"
            f"</body>\n</html>\n")
    index = out / "index.html"
    with atomic_open(index, "w", encoding="utf-8") as fh:
        fh.write(page)
    return index


def _last_window_rows(window, index: pd.Index, at) -> int:
    """Rows of y in the window ending at ``at``: the window's length, or for a calendar
    lookback ("60M") the rows dated in (at − lookback, at] (252 when expanding)."""
    if window.rows is not None:
        return int(window.rows)
    if window.lookback is None:
        return 252
    from quantfit.sampling import window_starts
    last = int(index.searchsorted(pd.Timestamp(at), side="right")) - 1
    return max(3, last - int(window_starts(index[:last + 1], window.lookback)[-1]) + 1)
