"""Huber betas: quantfit vs looping statsmodels RLM over the same windows.

    python benchmarks/bench_robust.py              # CPU: W1 (500 × 2,520, window 252)
    python benchmarks/bench_robust.py --rlm 300    # RLM on 300 random windows (extrapolated)
    python benchmarks/bench_robust.py --dtype float32
    python benchmarks/bench_robust.py --gpu        # also W2 (5,000 × 5,040, one factor) on CUDA

RLM (``RLM(y, [1, x], M=HuberT(1.345)).fit()``) is timed on a random subset of the (asset,
window) pairs and extrapolated to all of them (said in the output); its β are compared with
quantfit's on those windows.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from engine_workloads import make_w1  # noqa: E402

import quantfit as qf  # noqa: E402


def cpu_w1(n_rlm: int, window: int = 252, seed: int = 0, dtype: str = "float64") -> dict:
    import statsmodels.api as sm

    y, x, _ = make_w1()
    kw = dict(loss="huber", device="cpu", dtype=dtype)
    qf.fit_rolling(y.iloc[:, :16], x, window, **kw)  # warm-up
    t0 = time.perf_counter()
    fit = qf.fit_rolling(y, x, window, **kw)
    t_qf = time.perf_counter() - t0
    n_windows = y.shape[1] * (len(y) - window + 1)
    rng = np.random.default_rng(seed)
    ts = rng.integers(window - 1, len(y), n_rlm)
    as_ = rng.integers(0, y.shape[1], n_rlm)
    Y, X = y.to_numpy(), sm.add_constant(x.to_numpy())
    norm = sm.robust.norms.HuberT(t=1.345)
    t0 = time.perf_counter()
    b = [sm.RLM(Y[t - window + 1:t + 1, a], X[t - window + 1:t + 1], M=norm).fit().params[1]
         for t, a in zip(ts, as_)]
    t_rlm = (time.perf_counter() - t0) / n_rlm
    d = np.abs(np.asarray(b) - fit.beta.to_numpy()[ts, as_])
    return dict(windows=n_windows, quantfit_s=t_qf, rlm_ms_per_window=1e3 * t_rlm,
                rlm_extrapolated_s=t_rlm * n_windows, speedup=t_rlm * n_windows / t_qf,
                max_abs_dbeta=float(d.max()), converged=float(fit.converged.to_numpy().mean()),
                mean_n_iter=float(fit.n_iter.to_numpy()[fit.converged.to_numpy()].mean()))


def gpu_w2(window: int = 252) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    y, x, _ = make_w1(n_assets=5000, n_dates=5040, seed=1)  # W2 size, one factor
    qf.fit_rolling(y.iloc[:, :64], x, window, loss="huber", device="cuda")  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fit = qf.fit_rolling(y, x, window, loss="huber", device="cuda")
    torch.cuda.synchronize()
    return dict(windows=y.shape[1] * (len(y) - window + 1), quantfit_s=time.perf_counter() - t0,
                converged=float(fit.converged.to_numpy()[window - 1:].mean()),
                device=torch.cuda.get_device_name())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rlm", type=int, default=200, help="RLM windows to time (extrapolated)")
    ap.add_argument("--gpu", action="store_true", help="also run W2 on CUDA (if present)")
    ap.add_argument("--no-cpu", action="store_true")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    a = ap.parse_args(argv)
    if not a.no_cpu:
        r = cpu_w1(a.rlm, dtype=a.dtype)
        print(f"W1 Huber (500 x 2,520, W=252, {r['windows']:,} windows) on CPU, {a.dtype}: quantfit "
              f"{r['quantfit_s']:.1f} s; statsmodels RLM {r['rlm_ms_per_window']:.2f} ms/window on "
              f"{a.rlm} random windows, extrapolated {r['rlm_extrapolated_s']:,.0f} s -> "
              f"{r['speedup']:.0f}x; max |dbeta| vs RLM {r['max_abs_dbeta']:.1e}; "
              f"converged {r['converged']:.3f} of cells, mean n_iter {r['mean_n_iter']:.1f}")
    if a.gpu:
        print("W2 Huber (5,000 x 5,040, one factor, W=252) on GPU:", gpu_w2())


if __name__ == "__main__":
    main()
