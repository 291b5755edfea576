"""Windows kept only at some ends (``RollingSpec.ends``, ``WindowBounds.variable(lo, hi, T)``):
period-end output computes the chosen windows only, and equals the fit at every row sampled
there, through every path of the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quantfit.engine import RollingSpec, rolling_regression, select_path
from quantfit.engine.windows import WindowBounds, count_rows, window_sums_

F64 = torch.float64
CPU = torch.device("cpu")


def _brute(z, lo, hi, decay):
    out = torch.zeros(z.shape[:-1] + (len(hi),), dtype=z.dtype)
    for j, (a, e) in enumerate(zip(lo.tolist(), hi.tolist())):
        w = decay ** torch.arange(e - a, -1, -1, dtype=z.dtype)
        out[..., j] = (z[..., a:e + 1] * w).sum(-1)
    return out


@pytest.mark.parametrize("decay", [1.0, 0.97])
def test_window_sums_at_chosen_ends_are_the_brute_force_sums(decay):
    g = torch.Generator().manual_seed(3)
    T = 700
    z = torch.randn(2, 3, T, dtype=F64, generator=g)
    hi = torch.unique(torch.randint(0, T, (60,), generator=g))
    lo = torch.cummax((hi - 80 + hi % 13).clamp_min(0), 0).values
    lo[10:14] = torch.minimum(hi[10:14], lo[13])  # a few short windows
    lo = torch.cummax(lo, 0).values
    b = WindowBounds.variable(lo, hi, T)
    assert b.n == len(hi) and b.T == T
    got = window_sums_(z.clone(), b, decay)[..., : b.n]
    torch.testing.assert_close(got, _brute(z, lo, hi, decay), rtol=1e-12, atol=1e-12)
    rows = torch.rand(2, T, generator=g) > 0.2
    ref = torch.stack([rows[:, a:e + 1].sum(-1) for a, e in zip(lo.tolist(), hi.tolist())], -1)
    assert torch.equal(count_rows(rows, b), ref.to(torch.int32))
    for kind, bounds in (("fixed", WindowBounds.fixed(T, 90, hi)),
                         ("expanding", WindowBounds.expanding(T, hi))):
        from quantfit.engine.windows import padded_length
        pad = torch.nn.functional.pad(z, (0, padded_length(bounds) - T))
        got = window_sums_(pad, bounds, decay)[..., : bounds.n]
        first = bounds.first_rows()
        assert torch.equal(first, (hi - 89).clamp_min(0) if kind == "fixed" else 0 * hi)
        torch.testing.assert_close(got, _brute(z, first, hi, decay), rtol=1e-12, atol=1e-12)
    for bad_hi in (torch.tensor([3, 3]), torch.tensor([5, T])):
        with pytest.raises(ValueError):
            WindowBounds.variable(torch.tensor([0, 1]), bad_hi, T)
    with pytest.raises(ValueError, match="needs T"):
        WindowBounds.variable(lo, hi)


def _data(T=420, A=4, holes=False, leading=False, seed=9):
    g = np.random.default_rng(seed)
    x = g.normal(0, 0.01, (T, 2))
    y = np.stack([0.0005 + (0.5 + a / 3) * x[:, 0] - 0.3 * x[:, 1] + g.normal(0, 0.01, T)
                  for a in range(A)])
    if holes:
        y[1, g.random(T) < 0.05] = np.nan
    if leading:
        y[2, :90] = np.nan
        y[3, 380:] = np.nan
    return torch.tensor(y), torch.tensor(x)


CASES = {
    "shared": (dict(window=60, min_obs=60), {}),
    "general-holes": (dict(window=60, min_obs=50), dict(holes=True)),
    "runs": (dict(window=60, min_obs=60), dict(leading=True)),
    "halflife": (dict(window=80, min_obs=40, halflife=20.0), dict(holes=True)),
    "expanding": (dict(window=None, min_obs=30), {}),
    "gd": (dict(window=60, min_obs=50, solver="gd", tol=1e-10), dict(holes=True)),
    "prior": (dict(window=60, min_obs=60, prior=torch.tensor([[1.0, 0.0]]), prior_strength=0.05),
              {}),
    "dimson-sum": (dict(window=60, min_obs=60, sums=((1, 2),)), {}),
    "huber": (dict(window=60, min_obs=50, loss="huber"), dict(holes=True)),
    "calendar": (dict(window=None, min_obs=40), dict(holes=True)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_ends_equal_the_fit_at_every_row_sampled_there(case):
    kw, data = CASES[case]
    y, x = _data(**data)
    T = y.shape[1]
    ends = torch.tensor(sorted({*range(19, T, 21), T - 1}))  # "month ends" and the last row
    starts = None
    if case == "calendar":  # windows of varying length, one start per row
        t = torch.arange(T)
        starts = torch.cummax((t - 55 - t % 11).clamp_min(0), 0).values
        kw = dict(kw, starts=starts)
    full = rolling_regression(y, x, RollingSpec(**kw), CPU, F64)
    if starts is not None:
        kw = dict(kw, starts=starts[ends])
    part = rolling_regression(y, x, RollingSpec(**kw, ends=ends), CPU, F64)
    assert part.coef.shape[-1] == len(ends)
    path_full = select_path(y, x, RollingSpec(**{k: v for k, v in kw.items() if k != "starts"},
                                              starts=starts), CPU, F64)
    tol = dict(rtol=1e-10, atol=1e-12) if kw.get("solver", "newton") == "newton" else \
        dict(rtol=1e-6, atol=1e-7)
    for name in ("coef", "r2", "resid_vol"):
        a, b = getattr(part, name), getattr(full, name)[..., ends]
        torch.testing.assert_close(a, b, equal_nan=True, **tol, msg=f"{name} ({path_full})")
    for i in range(part.coef.shape[0]):
        torch.testing.assert_close(part.stderr(i), full.stderr(i)[..., ends], equal_nan=True,
                                   **tol)
    for name in ("nobs", "converged"):
        assert torch.equal(getattr(part, name), getattr(full, name)[..., ends]), name
    assert bool(torch.isfinite(part.coef[0, :, -1]).any())


def test_ends_keep_the_fast_path():
    """Period-end output on a clean universe still takes newton's shared-rows path."""
    y, x = _data()
    spec = RollingSpec(window=60, min_obs=60, ends=torch.arange(59, 420, 21))
    assert select_path(y, x, spec, CPU, F64) == "shared"


@pytest.mark.gpu
@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_period_end_and_calendar_windows_on_the_gpu(loss):
    """The same windows on CUDA (float32 by default there) as on the CPU in float64."""
    import pandas as pd

    import quantfit as qf
    g = np.random.default_rng(4)
    idx = pd.bdate_range("2015-01-01", periods=900)
    x = pd.Series(g.normal(0, 0.01, 900), idx, name="m")
    y = pd.DataFrame({f"a{i}": (0.5 + i / 4) * x + g.normal(0, 0.01, 900) for i in range(6)})
    y.iloc[100:140, 2] = np.nan
    for kw in (dict(window=120, every="M"), dict(window="6M", min_obs=100),
               dict(window="1Y", min_obs=200, every="W", halflife=60)):
        cpu = qf.fit_rolling(y, x, device="cpu", loss=loss, **kw)
        gpu = qf.fit_rolling(y, x, device="cuda", loss=loss, **kw)
        assert gpu.meta.dtype == "float32" and gpu.index.equals(cpu.index)
        np.testing.assert_allclose(gpu.beta, cpu.beta, atol=1e-4 if loss == "huber" else 1e-5)
        pd.testing.assert_frame_equal(gpu.nobs, cpu.nobs)
