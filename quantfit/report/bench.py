"""Benchmark figure: quantfit's time against assets and window length (``quantfit bench``).

``plot_scaling(points, path=None)`` draws the points of ``quantfit.bench.scaling.run_scaling``
(dicts with ``method, axis, n_assets, window, wall_s, status``): left, wall seconds against
the number of assets; right, against the window length; log–log, one line per method.
Points that were not measured (method not available, or skipped as too slow) are named under
the axes with the reason.
"""

from __future__ import annotations

from os import PathLike

from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from quantfit.errors import QuantfitError
from quantfit.report._common import new_figure, save

_AXES = (("assets", "n_assets", "assets ({n_dates:,} dates, window {window})"),
         ("window", "window", "window length, rows ({n_assets:,} assets, {n_dates:,} dates)"))


def plot_scaling(points: list[dict], path: str | PathLike | None = None,
                 title: str | None = None) -> Figure:
    """Two log–log panels of wall seconds (median of repeats); saved to ``path`` (.png/.svg)."""
    if not points:
        raise QuantfitError("plot_scaling: no scaling points to draw")
    fig = new_figure(11.0, 4.6)
    axes = fig.subplots(1, 2, sharey=True)
    methods = list(dict.fromkeys(p["method"] for p in points))
    missing = {}
    for ax, (axis, key, label) in zip(axes, _AXES):
        on_axis = [p for p in points if p["axis"] == axis]
        for i, m in enumerate(methods):
            pts = sorted((p[key], p["wall_s"]) for p in points
                         if p["method"] == m and p["axis"] == axis and p["status"] == "ok")
            skipped = [p for p in on_axis if p["method"] == m and p["status"] != "ok"]
            if skipped:  # say on the figure which points are absent and why
                missing[f"{m} ({axis}: {len(skipped)} point{'s' * (len(skipped) > 1)})"] = \
                    skipped[0]["note"]
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", color=f"C{i}", label=m)
        ax.set_xscale("log")
        ax.set_yscale("log")
        if on_axis:  # label with the sizes held fixed, tick at the measured sizes
            ax.set_xlabel(label.format(**on_axis[0]))
            ax.xaxis.set_major_locator(FixedLocator(sorted({p[key] for p in on_axis})))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("wall seconds (median of repeats)")
    axes[0].legend(loc="best")
    dev = points[0].get("device", "")
    fig.suptitle(title or f"quantfit.fit_rolling: time against assets and window ({dev})")
    if missing:
        # supxlabel, unlike fig.text, gets room from the constrained layout.
        fig.supxlabel("; ".join(f"{m}: {w}" for m, w in missing.items()), fontsize=8,
                      color="0.35")
    save(fig, path)
    return fig
