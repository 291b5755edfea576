"""qf.report: figures hold what they claim (lines, bands, slopes, image shapes), save as PNG and
SVG, the HTML page references its images and tabulates the latest betas in order, and bad
inputs raise FitError / QuantfitError with a clear message."""

from __future__ import annotations

import html.parser
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

import quantfit as qf
from quantfit import report


@pytest.fixture(scope="module")
def data():
    rets = qf.returns(qf.load_sample())
    return rets.drop(columns="SPY"), rets["SPY"]


@pytest.fixture(scope="module")
def fit(data):
    y, x = data
    return qf.fit_rolling(y, x, window=252)


@pytest.fixture(scope="module")
def small(data):
    """A small problem (2 years) for the re-fitting convergence histories."""
    y, x = data
    return y.loc["2019":"2020"], x.loc["2019":"2020"]


def _axes(fig: Figure):
    assert isinstance(fig, Figure)
    return fig.axes[0]


# ----------------------------------------------------------------------------- plot_beta
def test_plot_beta_default_is_a_handful_spread_over_the_cross_section(fit):
    ax = _axes(report.plot_beta(fit))
    labels = [ln.get_label() for ln in ax.lines]
    latest = fit.beta.iloc[-1].dropna().sort_values(ascending=False)
    assert len(labels) == report.figures.DEFAULT_ASSETS
    assert labels[0] == latest.index[0] and labels[-1] == latest.index[-1]  # highest .. lowest
    assert [t.get_text() for t in ax.get_legend().get_texts()] == labels
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == len(labels)


def test_plot_beta_line_and_band_are_beta_and_two_se(fit):
    ax = _axes(report.plot_beta(fit, assets="AAPL", band=2.0))
    (line,) = ax.lines
    b, se = fit.beta["AAPL"].to_numpy(), fit.stderr("SPY")["AAPL"].to_numpy()
    np.testing.assert_array_equal(line.get_ydata(), b)
    (band,) = ax.collections
    ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
    assert np.nanmax(ys) == pytest.approx(np.nanmax(b + 2 * se))
    assert np.nanmin(ys) == pytest.approx(np.nanmin(b - 2 * se))


def test_plot_beta_without_band_and_chosen_assets(fit):
    ax = _axes(report.plot_beta(fit, assets=["XOM", "AAPL"], band=0))
    assert [ln.get_label() for ln in ax.lines] == ["XOM", "AAPL"]
    assert not ax.collections


def test_plot_beta_bad_inputs(fit, data):
    with pytest.raises(qf.FitError, match="unknown asset.*NOPE"):
        report.plot_beta(fit, assets=["AAPL", "NOPE"])
    with pytest.raises(qf.FitError, match="unknown term 'MKT'"):
        report.plot_beta(fit, term="MKT")
    y, x = data
    x2 = pd.DataFrame({"SPY": x, "LAG": x.shift(1)})
    fit2 = qf.fit_rolling(y[["AAPL", "XOM"]].iloc[-400:], x2.iloc[-400:], window=252)
    with pytest.raises(qf.FitError, match="several factors.*term="):
        report.plot_beta(fit2)
    assert len(_axes(report.plot_beta(fit2, term="LAG")).lines) == 2


# ----------------------------------------------------------------------------- plot_fit
@pytest.mark.parametrize("end", ["2008-10-15", None])
def test_plot_fit_line_is_the_fits_beta_for_that_window(fit, data, end):
    y, x = data
    ax = _axes(report.plot_fit(y, x, "JPM", end=end, window=252, robust=False))
    (line,) = ax.lines[:1]
    xd, yd = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    slope = (yd[1] - yd[0]) / (xd[1] - xd[0])
    at = fit.index[-1] if end is None else fit.index[fit.index.searchsorted(pd.Timestamp(end))]
    assert slope == pytest.approx(fit.beta.loc[at, "JPM"], rel=1e-9)
    assert yd[0] - slope * xd[0] == pytest.approx(100 * fit.alpha.loc[at, "JPM"], rel=1e-6)
    pos = y.index.get_loc(at)
    rows = y["JPM"].iloc[pos - 251:pos + 1].notna() & x.iloc[pos - 251:pos + 1].notna()
    assert len(ax.collections[0].get_offsets()) == rows.sum()
    assert ax.get_xlabel() == "SPY return (%)" and ax.get_ylabel() == "JPM return (%)"


def test_plot_fit_robust_line_comes_from_the_engine_or_a_clear_error(fit, data):
    y, x = data
    if report.robust_available():
        ax = _axes(report.plot_fit(y, x, "JPM"))
        huber = qf.fit_rolling(y["JPM"].iloc[-252:], x.iloc[-252:], window=252, loss="huber")
        xd, yd = (np.asarray(a) for a in (ax.lines[1].get_xdata(), ax.lines[1].get_ydata()))
        assert (yd[1] - yd[0]) / (xd[1] - xd[0]) == pytest.approx(huber.beta.iloc[-1, 0], rel=1e-9)
    else:
        with pytest.raises(qf.FitError, match="loss='huber'.*robust=False"):
            report.plot_fit(y, x, "JPM")


def test_plot_fit_bad_inputs(data):
    y, x = data
    with pytest.raises(qf.FitError, match="unknown asset 'NOPE'"):
        report.plot_fit(y, x, "NOPE", robust=False)
    with pytest.raises(qf.FitError, match="no estimate for META.*2012-06-29.*valid rows"):
        report.plot_fit(y, x, "META", end="2012-06-30", robust=False)  # listed 2012-05-18
    with pytest.raises(qf.FitError, match="before y's first date"):
        report.plot_fit(y, x, "AAPL", end="1980-01-01", robust=False)
    with pytest.raises(qf.FitError, match="bad end date 'soon'"):
        report.plot_fit(y, x, "AAPL", end="soon", robust=False)
    with pytest.raises(qf.FitError, match="one factor"):
        report.plot_fit(y, pd.DataFrame({"a": x, "b": x}), "AAPL", robust=False)


# ----------------------------------------------------------------------------- distribution
def test_plot_beta_distribution_latest(fit):
    ax = _axes(report.plot_beta_distribution(fit))
    latest = fit.beta.iloc[-1].dropna()
    heights = [p.get_height() for p in ax.patches]
    assert sum(heights) == len(latest)
    rug, mean, median = ax.lines
    assert sorted(rug.get_xdata()) == sorted(latest.to_numpy())
    assert mean.get_xdata()[0] == pytest.approx(latest.mean())
    assert median.get_xdata()[0] == pytest.approx(latest.median())
    assert "2024-11-29" in ax.get_title()


def test_plot_beta_distribution_at_a_date_uses_that_cross_section(fit):
    ax = _axes(report.plot_beta_distribution(fit, date="2005-06-30"))
    cs = fit.beta.loc["2005-06-30"].dropna()
    assert len(ax.lines[0].get_xdata()) == len(cs) < len(fit.assets)  # some not listed yet
    assert ax.lines[1].get_xdata()[0] == pytest.approx(cs.mean())
    # A weekend falls back to the last date before it.
    ax = _axes(report.plot_beta_distribution(fit, date="2005-07-03"))
    assert "2005-07-01" in ax.get_title()


def test_plot_beta_distribution_bad_dates(fit):
    first = fit.beta.dropna(how="all").index[0].date()  # SPY starts in 1993: + one window
    with pytest.raises(qf.FitError, match=f"no estimates on 1990-06-29.*estimates from {first} "):
        report.plot_beta_distribution(fit, date="1990-06-30")
    with pytest.raises(qf.FitError, match="before the fit's first date"):
        report.plot_beta_distribution(fit, date="1980-01-01")


# ----------------------------------------------------------------------------- heatmap
def test_plot_beta_heatmap_is_assets_by_months(fit):
    fig = report.plot_beta_heatmap(fit)
    ax = fig.axes[0]
    (img,) = [a for a in ax.get_images() if isinstance(a, AxesImage)]
    arr = img.get_array()
    has = fit.beta.dropna(how="all").index
    months = (has[-1].year - has[0].year) * 12 + has[-1].month - has[0].month + 1
    assert arr.shape == (len(fit.assets), months)
    # Each cell is the asset's last estimate in that calendar month.
    by_month = fit.beta.groupby(fit.beta.index.to_period("M")).last()
    by_month = by_month.loc[has[0].to_period("M"):has[-1].to_period("M")]
    np.testing.assert_array_equal(np.ma.filled(arr, np.nan), by_month.to_numpy().T)
    vmin, vmax = img.norm.vmin, img.norm.vmax
    assert (vmin + vmax) / 2 == pytest.approx(1.0) and vmax > 1.5
    assert len(fig.axes) == 2  # the colorbar
    assert [t.get_text() for t in ax.get_yticklabels()] == list(fit.assets)


def test_plot_beta_heatmap_quarters_and_bad_freq(fit):
    arr = report.plot_beta_heatmap(fit, freq="QE").axes[0].get_images()[0].get_array()
    has = fit.beta.dropna(how="all").index  # 1994Q1 .. 2024Q4
    quarters = has[-1].to_period("Q").ordinal - has[0].to_period("Q").ordinal + 1
    assert arr.shape == (len(fit.assets), quarters) == (19, 124)
    with pytest.raises(qf.FitError, match="bad freq"):
        report.plot_beta_heatmap(fit, freq="fortnight")


# ----------------------------------------------------------------------------- convergence
def test_window_loss_is_half_the_residual_sum_of_squares(fit, data):
    y, x = data
    at = fit.index.get_loc(pd.Timestamp("2016-03-31"))
    ys, xs = y["AAPL"].iloc[at - 251:at + 1], x.iloc[at - 251:at + 1]
    ok = ys.notna() & xs.notna()
    Z = np.column_stack([np.ones(ok.sum()), xs[ok]])
    coef, *_ = np.linalg.lstsq(Z, ys[ok].to_numpy(), rcond=None)
    rss = float(((ys[ok].to_numpy() - Z @ coef) ** 2).sum())
    assert report.window_loss(fit).iloc[at]["AAPL"] == pytest.approx(rss / 2, rel=1e-9)


def test_convergence_histories_descend_to_the_newton_optimum(small):
    y, x = small
    hist = report.convergence_histories(y, x, 252, solvers=("gd",))
    h = hist["gd"]
    opt = report.mean_window_loss(qf.fit_rolling(y, x, 252))
    assert h.index[0] == 1 and h.index.is_monotonic_increasing
    assert (np.diff(h.to_numpy()) <= 1e-15 * opt).all()  # descent
    assert h.iloc[0] - opt > 1e-8 * opt  # the first step is not already the optimum
    assert h.iloc[-1] - opt < 1e-12 * opt
    with pytest.raises(qf.FitError, match="unknown solver 'sgd'"):
        report.convergence_histories(y, x, 252, solvers=("sgd",))


def test_plot_convergence_lines_and_optimum():
    histories = {"gd": np.array([4.0, 2.0, 1.5, 1.0]), "adam": pd.Series([3.0, 1.0], index=[1, 10])}
    ax = _axes(report.plot_convergence(histories, optimum=1.0))
    gd, adam = ax.lines
    assert [gd.get_label(), adam.get_label()] == ["gd", "adam"]
    np.testing.assert_array_equal(gd.get_xdata(), [1, 2, 3, 4])
    np.testing.assert_array_equal(gd.get_ydata(), [3.0, 1.0, 0.5, np.nan])  # at optimum: not drawn
    np.testing.assert_array_equal(adam.get_xdata(), [1, 10])
    assert ax.get_yscale() == "log" and "optimum" in ax.get_ylabel()
    ax = _axes(report.plot_convergence({"gd": [4.0, 2.0]}))
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [4.0, 2.0])
    with pytest.raises(qf.FitError, match="histories is empty"):
        report.plot_convergence({})


# ----------------------------------------------------------------------------- saving
def test_figures_save_png_and_svg_by_suffix(data, tmp_path):
    y, x = data
    small_fit = qf.fit_rolling(y.iloc[-600:], x.iloc[-600:], window=252)
    report.plot_beta_heatmap(small_fit, path=tmp_path / "h.png")
    report.plot_beta_distribution(small_fit, path=tmp_path / "d.SVG")
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "d.SVG").read_text()[:2000]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.SVG", "h.png"]  # no temp files
    with pytest.raises(qf.QuantfitError, match=r"\.png or \.svg"):
        report.plot_beta(small_fit, path=tmp_path / "b.jpg")


# ----------------------------------------------------------------------------- write_html
class _Page(html.parser.HTMLParser):
    """Collects <img src>, <script>/<link>/external references and the table's rows."""

    def __init__(self):
        super().__init__()
        self.imgs, self.tags, self.rows, self._row, self._cell = [], [], [], None, None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr":
            self.rows.append(self._row)


def _parse(path):
    p = _Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_write_html_page_figures_and_sorted_table(fit, data, tmp_path):
    y, x = data
    index = report.write_html(fit, tmp_path / "site", y=y, x=x, title="Betas <b>&</b>")
    assert index == tmp_path / "site" / "index.html"
    page = _parse(index)
    text = index.read_text(encoding="utf-8")
    assert "<title>Betas &lt;b&gt;&amp;&lt;/b&gt;</title>" in text
    assert "script" not in page.tags and "link" not in page.tags and "http" not in text
    assert len(page.imgs) == 4 and "fit.png" in page.imgs
    for src in page.imgs:
        assert "/" not in src and (index.parent / src).read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in index.parent.iterdir() if p.name.startswith(".")]  # no temp files

    header, *rows = page.rows
    assert header == ["asset", "β SPY", "SE SPY", "R²", "nobs"]
    last = fit.index[-1]
    expected = fit.beta.loc[last].dropna().sort_values(ascending=False)
    assert [r[0] for r in rows] == list(expected.index)
    betas = [float(r[1]) for r in rows]
    assert betas == sorted(betas, reverse=True)
    for asset, b, se, r2, n in rows:
        assert float(b) == pytest.approx(fit.beta.loc[last, asset], abs=5e-5)
        assert float(se) == pytest.approx(fit.stderr("SPY").loc[last, asset], abs=5e-5)
        assert float(r2) == pytest.approx(fit.r2.loc[last, asset], abs=5e-4)
        assert int(n) == fit.nobs.loc[last, asset]


def test_write_html_without_returns_and_with_missing_assets(data, tmp_path):
    y, x = data
    # On 2012-06-29 META has no estimate yet (listed 2012-05-18): listed below the table.
    sub = qf.fit_rolling(y.loc[:"2012-06-29", ["AAPL", "META", "XOM"]], x.loc[:"2012-06-29"], 252)
    index = report.write_html(sub, tmp_path, title=None)
    page = _parse(index)
    assert "fit.png" not in page.imgs and len(page.imgs) == 3
    assert [r[0] for r in page.rows[1:]] == list(
        sub.beta.iloc[-1].dropna().sort_values(ascending=False).index)
    assert re.search(r"No estimate on 2012-06-29: META", index.read_text())
    assert "<title>quantfit report</title>" in index.read_text()


def test_write_html_rejects_a_fit_without_estimates(data, tmp_path):
    y, x = data
    empty = qf.fit_rolling(y.iloc[:100], x.iloc[:100], window=252, min_obs=252)
    with pytest.raises(qf.FitError, match="no estimates"):
        report.write_html(empty, tmp_path)
    with pytest.raises(qf.FitError, match="expected a RollingFit"):
        report.write_html(y, tmp_path)


# ----------------------------------------------------------------------------- quantfit report
def test_cli_report_writes_the_page_of_the_nightly_results(tmp_path, capsys):
    from quantfit.cli import main
    from quantfit.refresh import RefreshParams, refresh

    qf.PriceStore(tmp_path / "store").ingest(qf.sources.sample())
    out = tmp_path / "results"
    refresh(RefreshParams(store=str(tmp_path / "store"), out=str(out), report=False))
    assert not (out / "report").exists()
    capsys.readouterr()
    assert main(["report", "--out", str(out), "--title", "Nightly <betas>"]) == 0
    index = out / "report" / "index.html"
    assert capsys.readouterr().out.strip() == str(index)
    page = _parse(index)
    assert "<title>Nightly &lt;betas&gt;</title>" in index.read_text()
    assert page.imgs and all((index.parent / src).is_file() for src in page.imgs)
    latest = qf.read_betas(out).dropna().sort_values(ascending=False)
    rows = page.rows[1:]
    assert [r[0] for r in rows] == list(latest.index)
    assert [float(r[1]) for r in rows] == pytest.approx(latest.to_numpy(), abs=5e-5)


def test_cli_report_without_results_is_a_one_line_error(tmp_path, capsys):
    from quantfit.cli import main

    assert main(["report", "--out", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("quantfit: error:") and err.count("\n") == 1
    assert main(["report"]) == 2  # --out is required
    assert "--out" in capsys.readouterr().err
