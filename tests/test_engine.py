"""The engine on its own: window sums, batched linear algebra, objectives and solvers."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

from quantfit.engine import linalg as la
from quantfit.engine.device import auto_chunk, bytes_per_asset, default_dtype, pick_device
from quantfit.engine.moments import window_moments
from quantfit.engine.objectives import SquaredLoss
from quantfit.engine.solvers import SOLVERS, run_solver
from quantfit.engine.windows import WindowBounds, decayed_cumsum_, padded_length, window_sums_

F64 = torch.float64


def _brute_window_sum(z: torch.Tensor, window, decay):
    T = z.shape[-1]
    out = torch.empty_like(z)
    for t in range(T):
        lo = 0 if window is None else max(0, t - window + 1)
        w = decay ** torch.arange(t - lo, -1, -1, dtype=z.dtype)
        out[..., t] = (z[..., lo : t + 1] * w).sum(-1)
    return out


def _bounds(T, window):
    return WindowBounds.expanding(T) if window is None else WindowBounds.fixed(T, window)


def window_sum_(buf, window, decay):
    """Window sums of a buffer padded by ``_padded`` (the engine's exact sums)."""
    return window_sums_(buf, _bounds(buf.shape[-1] if window is None else buf._T, window), decay)


def _padded(z, window):
    T = z.shape[-1]
    buf = torch.zeros(*z.shape[:-1], padded_length(_bounds(T, window)), dtype=z.dtype)
    buf[..., :T] = z
    buf._T = T
    return buf


@pytest.mark.parametrize("window", [1, 7, 50, 333, 1000, None])
@pytest.mark.parametrize("decay", [1.0, 0.97, 0.5 ** (1 / 3.0), 0.5 ** (1 / 0.25)])
def test_window_sum_matches_brute_force(window, decay):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 333, dtype=F64, generator=g)
    got = window_sum_(_padded(z, window), window, decay)[..., :333]
    torch.testing.assert_close(got, _brute_window_sum(z, window, decay), rtol=1e-12, atol=1e-12)


def test_decayed_cumsum_does_not_overflow_on_long_series():
    """0.5**(-t/h) overflows float64 after ~1000·h rows: the run-wise rescaling must not."""
    T, h = 20_000, 0.5
    decay = 0.5 ** (1 / h)
    z = torch.ones(2, T, dtype=F64)
    got = decayed_cumsum_(z.clone(), decay)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got[:, -1], torch.full((2,), 1 / (1 - decay), dtype=F64))


def test_float32_window_sums_stay_relative_on_long_series():
    """Exact window sums keep float32 error at the size of a window, not of the whole prefix."""
    g = torch.Generator().manual_seed(1)
    T, W = 20_160, 252
    z64 = (torch.randn(4, T, dtype=F64, generator=g) + 1.0) ** 2  # positive, like x², y²
    exact = window_sum_(_padded(z64, W), W, 1.0)[..., :T]
    blocks = window_sum_(_padded(z64.float(), W), W, 1.0)[..., :T].double()
    naive = torch.cumsum(z64.float(), -1)
    naive = (naive - torch.nn.functional.pad(naive, (W, 0))[..., :T]).double()
    rel = lambda a: ((a - exact).abs() / exact.abs()).max().item()  # noqa: E731
    assert rel(blocks) < 2e-6
    assert rel(blocks) < rel(naive) / 10


def test_moments_shared_and_per_asset_agree():
    g = torch.Generator().manual_seed(2)
    T, k = 500, 2
    x = torch.randn(T, k, dtype=F64, generator=g)
    x_valid = torch.ones(T, dtype=torch.bool)
    y = torch.randn(4, T, dtype=F64, generator=g)
    b = WindowBounds.fixed(T, 60)
    shared = window_moments(y, x, x_valid, b, 0.98, True, shared=True)
    assert shared.gram.shape[0] == 1
    y2 = torch.cat([y, torch.full((1, T), math.nan, dtype=F64)])  # forces per-asset rows
    per = window_moments(y2, x, x_valid, b, 0.98, True, shared=False)
    assert per.gram.shape[0] == 5
    torch.testing.assert_close(per.gram[:4], shared.gram.expand(4, -1, -1, -1))
    torch.testing.assert_close(per.zy[:4], shared.zy)
    assert (per.nobs[4] == 0).all() and (per.gram[4] == 0).all()


def test_batched_cholesky_solve_inverse_and_singular_flags():
    g = torch.Generator().manual_seed(3)
    for p in (1, 2, 4, 6):
        X = torch.randn(5, 9, 40, p, dtype=F64, generator=g)
        G = X.transpose(-1, -2) @ X
        b = torch.randn(5, 9, p, dtype=F64, generator=g)
        ch = la.cholesky(G)
        assert ch.ok.all()
        torch.testing.assert_close(la.solve(ch, b), torch.linalg.solve(G, b.unsqueeze(-1))[..., 0])
        torch.testing.assert_close(la.inverse(ch), torch.linalg.inv(G))
        torch.testing.assert_close(la.matvec(G, b), (G @ b.unsqueeze(-1))[..., 0])
        # a Gram shared by every asset broadcasts against per-asset right-hand sides
        ch1 = la.cholesky(G[:1])
        torch.testing.assert_close(la.solve(ch1, b), torch.linalg.solve(G[:1].expand_as(G), b.unsqueeze(-1))[..., 0])
    # exactly collinear columns and an all-zero matrix are flagged, results stay finite
    v = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    G = torch.stack([torch.outer(v, v), torch.zeros(3, 3, dtype=F64), torch.eye(3, dtype=F64)])
    ch = la.cholesky(G)
    assert ch.ok.tolist() == [False, False, True]
    x = la.solve(ch, torch.ones(3, 3, dtype=F64))
    assert torch.isfinite(x).all() and torch.isfinite(la.inverse(ch)).all()


def _objective(A=6, T=400, window=120, seed=4, k=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, k, dtype=F64, generator=g)
    x[:, 1] = 0.6 * x[:, 0] + 0.8 * x[:, 1]  # correlated factors
    beta = torch.randn(A, k, dtype=F64, generator=g)
    y = 0.1 + beta @ x.T + 0.5 * torch.randn(A, T, dtype=F64, generator=g)
    y[0, ::17] = math.nan
    mom = window_moments(y, x, torch.ones(T, dtype=torch.bool), WindowBounds.fixed(T, window), 1.0,
                         True, shared=False)
    return SquaredLoss(mom, mom.nobs >= window)


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_solvers_reach_the_normal_equations(solver):
    obj = _objective()
    exact = run_solver("newton", obj, None, None).theta
    sol = run_solver(solver, obj, None, None)
    act = obj.active.expand_as(sol.converged)
    assert sol.converged[act].all() and not sol.converged[~act].any()
    assert not sol.diverged.any()
    tol = 1e-9 if solver == "newton" else 1e-5
    assert (sol.theta - exact)[act].abs().max() <= tol
    if solver != "newton":
        assert sol.n_iter[act].min() >= 1 and sol.n_iter[~act].max() == 0


def test_gd_reports_divergence_instead_of_an_estimate():
    """With a step bound that lies (L too small), GD blows up: flagged, never 'converged'."""
    obj = _objective()
    diag, lip = obj.curvature()
    obj.curvature = lambda: (diag, lip / 50.0)  # 50x too large steps
    sol = run_solver("gd", obj, None, 200)
    act = obj.active.expand_as(sol.converged)
    assert sol.diverged[act].all()
    assert not sol.converged.any()


def test_first_order_solvers_never_see_the_answer():
    """Cold start: after one iteration gd is nowhere near the solution."""
    obj = _objective()
    exact = run_solver("newton", obj, None, None).theta
    one = run_solver("gd", obj, 1e-30, 1)
    act = obj.active.expand_as(one.converged)
    assert (one.theta - exact)[act].abs().max() > 1e-3


def test_auto_chunk_respects_the_memory_budget():
    chunk = auto_chunk(5000, 5040, 4, F64, torch.device("cpu"), iterative=True)
    assert 1 <= chunk <= 5000
    assert chunk * bytes_per_asset(5040, 4, 8, True) <= 768 * 2**20
    assert auto_chunk(3, 100, 2, F64, torch.device("cpu"), iterative=False) == 3


def test_device_choice():
    dev = pick_device("auto")
    assert dev.type == ("cuda" if torch.cuda.is_available() else dev.type)
    assert pick_device("cpu").type == "cpu"
    assert default_dtype(torch.device("cpu")) == F64
    assert default_dtype(torch.device("cuda")) == torch.float32


def test_engine_is_pure_torch():
    """No pandas and nothing from quantfit's other layers inside quantfit/engine."""
    root = Path(__file__).resolve().parents[1] / "quantfit" / "engine"
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for n in names:
                assert not n.startswith("pandas"), f"{path.name} imports {n}"
                assert not n.startswith("quantfit") or n.startswith("quantfit.engine"), f"{path.name} imports {n}"


@pytest.mark.gpu
@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_cuda_solvers_match_cpu(solver):
    obj = _objective()
    exact = run_solver("newton", obj, None, None).theta
    cuda = _objective()
    for name in ("gram", "zy", "yy", "loss_scale", "active"):
        setattr(cuda, name, getattr(cuda, name).cuda())
    sol = run_solver(solver, cuda, None, None)
    act = obj.active.expand_as(sol.converged.cpu())
    tol = 1e-9 if solver == "newton" else 1e-5
    assert (sol.theta.cpu() - exact)[act].abs().max() <= tol


# ---------------------------------------------------------------------------- issue 14
def _brute(z: torch.Tensor, lo: torch.Tensor, decay: float) -> torch.Tensor:
    out = torch.zeros_like(z)
    for t in range(z.shape[-1]):
        a = int(lo[t])
        if a <= t:
            w = decay ** torch.arange(t - a, -1, -1, dtype=z.dtype)
            out[..., t] = (z[..., a:t + 1] * w).sum(-1)
    return out


@pytest.mark.parametrize("decay", [1.0, 0.95])
def test_windows_of_varying_length(decay):
    """Windows lo[t]..t of varying length (a calendar lookback; short ones after a gap)."""
    g = torch.Generator().manual_seed(5)
    T = 500
    z = torch.randn(2, 3, T, dtype=F64, generator=g)
    t = torch.arange(T)
    lo = torch.cummax((t - 61 - (t % 5) + (t % 3)).clamp_min(0), 0).values
    lo[200:230] = torch.arange(190, 220)  # a stretch of short windows
    lo = torch.cummax(lo, 0).values
    b = WindowBounds.variable(lo)
    got = window_sums_(z.clone(), b, decay)
    torch.testing.assert_close(got, _brute(z, lo, decay), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        WindowBounds.variable(torch.tensor([0, 2, 1]))


@pytest.mark.parametrize("bounds", ["fixed", "expanding", "variable"])
def test_a_huge_value_only_reaches_the_windows_that_hold_it(bounds):
    """Window sums never subtract: one value of 1e12 leaves every other window bit-for-bit
    what it is without it (prefix-sum differences would carry its rounding everywhere)."""
    g = torch.Generator().manual_seed(6)
    T = 600
    z = torch.randn(1, T, dtype=F64, generator=g) ** 2
    t = torch.arange(T)
    b = {"fixed": WindowBounds.fixed(T, 50), "expanding": WindowBounds.expanding(T),
         "variable": WindowBounds.variable((t - 40 - t % 7).clamp_min(0))}[bounds]
    bad = z.clone()
    bad[0, 250] = 1e12
    pad = lambda v: torch.nn.functional.pad(v, (0, padded_length(b) - T))  # noqa: E731
    clean = window_sums_(pad(z), b, 1.0)[:, :T]
    dirty = window_sums_(pad(bad), b, 1.0)[:, :T]
    holds = (b.first_rows() <= 250) & (t >= 250)
    assert torch.equal(clean[:, ~holds], dirty[:, ~holds])
    assert (dirty[:, holds] >= 1e12).all()


def test_live_results_never_share_memory():
    """Result buffers are reused only once nothing refers to the old fit's arrays."""
    import numpy as np
    import pandas as pd

    import quantfit as qf
    rng = np.random.default_rng(0)
    idx = pd.bdate_range("2020-01-01", periods=300)
    x = pd.Series(rng.normal(size=300), index=idx, name="f")
    y1 = pd.DataFrame(rng.normal(size=(300, 50)), index=idx)
    first = qf.fit_rolling(y1, x, 40)
    keep = first.beta.copy()
    kept_frame = first.r2  # a view of the first fit's memory
    second = qf.fit_rolling(y1 * 2 + 1, x, 40)  # same sizes: would reuse a free buffer
    pd.testing.assert_frame_equal(first.beta, keep)
    assert not np.shares_memory(kept_frame.to_numpy(), second.r2.to_numpy())
    del first, kept_frame
    third = qf.fit_rolling(y1, x, 40)
    pd.testing.assert_frame_equal(third.beta, keep)
    pd.testing.assert_frame_equal(second.beta, (qf.fit_rolling(y1 * 2 + 1, x, 40)).beta)


@pytest.mark.parametrize("path,solver", [("auto", "newton"), ("general", "newton"), ("auto", "gd"),
                                         ("auto", "huber")])
def test_windows_of_varying_length_through_the_whole_engine(path, solver):
    """``RollingSpec.starts`` (a first row per window, e.g. a calendar lookback) runs through
    every path; the reference is numpy least squares on each window's rows."""
    import numpy as np

    from quantfit.engine import RollingSpec, rolling_regression
    g = np.random.default_rng(8)
    T = 320
    x = g.normal(0, 0.01, T)
    y = np.stack([0.001 + b * x + g.normal(0, 0.01, T) for b in (0.5, 1.0, 1.5)])
    t = np.arange(T)
    lo = np.maximum.accumulate(np.clip(t - 60 + (t % 9), 0, None))  # 52..60 rows per window
    kw = dict(loss="huber") if solver == "huber" else dict(solver=solver)
    spec = RollingSpec(window=None, min_obs=40, starts=torch.tensor(lo), **kw)
    out = rolling_regression(torch.tensor(y), torch.tensor(x[:, None]), spec,
                             torch.device("cpu"), F64, path=path)
    np.testing.assert_array_equal(out.nobs[0].numpy(), t - lo + 1)
    tol = 1e-9 if solver == "newton" else 1e-5
    for tt in (60, 150, 200, 319):
        rows = slice(lo[tt], tt + 1)
        Z = np.c_[np.ones(tt + 1 - lo[tt]), x[rows]]
        for a in range(3):
            if solver == "huber":
                import statsmodels.api as sm
                ref = sm.RLM(y[a, rows], Z, M=sm.robust.norms.HuberT(t=1.345)).fit().params
                tol = 1e-4
            else:
                ref = np.linalg.lstsq(Z, y[a, rows], rcond=None)[0]
            np.testing.assert_allclose(out.coef[:2, a, tt].numpy(), ref, atol=tol)
