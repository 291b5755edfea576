"""``qf.report``: figures and a static HTML page of rolling betas (matplotlib, headless).

Figures (each returns a ``matplotlib.figure.Figure`` and saves it when given ``path=``, PNG or
SVG by suffix; no display needed, pyplot is never used):

* ``plot_beta(fit, assets=None, term=None, band=2.0)``: rolling β with a ±band·SE band;
* ``plot_fit(y, x, asset, end=None, window=252, robust=True)``: one window's scatter of an
  asset against the factor with the OLS line (and the robust Huber line);
* ``plot_beta_distribution(fit, date=None, term=None)``: the cross-section on one date;
* ``plot_beta_heatmap(fit, term=None, freq="ME")``: assets × months heatmap, centred at β = 1;
* ``plot_convergence(histories, optimum=None)``: solver convergence, loss against iteration;
  ``convergence_histories(y, x, window, solvers)`` and ``mean_window_loss(fit)`` produce them.

Page: ``write_html(fit, out_dir, y=None, x=None, title=None)`` writes ``out_dir/index.html``
with the figures as PNG files beside it and a table of the latest betas.

Modules: ``figures`` (β figures), ``convergence`` (solver histories), ``html`` (the page),
``bench`` (the scaling figure of ``quantfit bench``, imported on demand).
This layer uses ``qf.fit_rolling`` and ``RollingFit`` only; it never imports the CLI or the
nightly job. Bad inputs raise ``qf.FitError`` (``qf.QuantfitError`` for a bad file suffix).
"""

from quantfit.report.convergence import (
    convergence_histories,
    mean_window_loss,
    plot_convergence,
    window_loss,
)
from quantfit.report.figures import (
    plot_beta,
    plot_beta_distribution,
    plot_beta_heatmap,
    plot_fit,
    robust_available,
)
from quantfit.report.html import latest_table, write_html

__all__ = [
    "plot_beta", "plot_fit", "plot_beta_distribution", "plot_beta_heatmap", "plot_convergence",
    "convergence_histories", "mean_window_loss", "window_loss", "robust_available",
    "latest_table", "write_html",
]
