"""Benchmark the rolling-regression engine (issue 3's performance targets). Not a test.

    python benchmarks/bench_engine.py               # W1 on the CPU + memory check + GPU if any
    python benchmarks/bench_engine.py --no-memory   # skip the 5,000 × 5,040 × 3 memory run
    python benchmarks/bench_engine.py --sm-assets 5 # statsmodels loop on fewer assets
    python benchmarks/bench_engine.py --threads 1   # torch on one thread (busy machines)

W1 = 500 assets × 2,520 dates, window 252, one factor, synthetic with known β (CPU):
  * pandas  ``Y.rolling(252).cov(x) / x.rolling(252).var()`` (β only)           — the baseline
  * newton  float64, producing β, α, SE, t, R², residual vol (all accessors touched)
  * statsmodels RollingOLS looped over assets (timed on ``--sm-assets`` assets, scaled to 500)
  * gd / adam / lbfgs from a cold start, at the default tol and at tol=1e-6 (the loosest that
    meets max |Δβ| ≤ 1e-5 against newton on W1), each row checked against that bar
Memory: 5,000 assets × 5,040 dates × 3 factors, newton on the CPU, in a child process:
  peak RSS (``ru_maxrss``) after building the data and after the fit.
GPU (only with CUDA): W2 = 5,000 × 5,040, three factors, float32, device-resident inputs and
  outputs, timed after a warm-up with ``torch.cuda.synchronize``; host↔device transfers are
  timed separately.

Each timing is the best of ``--repeat`` runs (the machine may be shared). The first call in a
fresh process and a call after other pandas work are timed by ``quantfit bench`` (see the
README's benchmark section); ``benchmarks/gpu_check.sh`` is the GPU session's one script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_workloads import make_w1, make_w2  # noqa: E402

import quantfit as qf  # noqa: E402


def best_of(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_w1(repeat: int, sm_assets: int) -> None:
    Y, x, beta_true = make_w1()
    print(f"W1: {Y.shape[1]} assets x {Y.shape[0]} dates, window 252, 1 factor, "
          f"torch threads={torch.get_num_threads()}")
    # The baseline is ``Y.rolling(252).cov(x) / x.rolling(252).var()``; written with "/"
    # pandas aligns the Series' dates with Y's columns and returns an all-NaN frame of
    # assets + dates columns, so the baseline is that formula with the division by rows.
    t_pd, beta_pd = best_of(lambda: Y.rolling(252).cov(x).div(x.rolling(252).var(), axis=0), repeat)
    print(f"  pandas rolling cov/var (beta only)      {t_pd * 1e3:9.1f} ms   "
          "Y.rolling(252).cov(x).div(x.rolling(252).var(), axis=0)  <- the baseline")
    t_lit, lit = best_of(lambda: Y.rolling(252).cov(x) / x.rolling(252).var(), 1)
    print(f"    (literal 'cov(x) / var()':            {t_lit * 1e3:9.1f} ms, shape {lit.shape}, "
          f"{int(lit.notna().to_numpy().sum())} non-NaN values: not a beta)")
    X = pd.DataFrame(np.repeat(x.to_numpy()[:, None], Y.shape[1], 1), index=Y.index, columns=Y.columns)
    t_fr, _ = best_of(lambda: Y.rolling(252).cov(X).div(x.rolling(252).var(), axis=0), repeat)
    print(f"    (faster pandas: cov with x broadcast to a frame {t_fr * 1e3:.1f} ms; newton vs it below)")

    def newton():
        f = qf.fit_rolling(Y, x, window=252)
        return f, (f.beta, f.alpha, f.stderr("mkt"), f.tstat("mkt"), f.r2, f.resid_vol)

    t_nt, (fit, _) = best_of(newton, repeat)
    d_pd = float((fit.beta - beta_pd).abs().max().max())
    print(f"  newton float64 (beta,alpha,SE,t,R2,vol) {t_nt * 1e3:9.1f} ms   "
          f"pandas/newton = {t_pd / t_nt:5.1f}x (target >= 5x; vs the faster pandas "
          f"{t_fr / t_nt:.1f}x)   (max|beta - pandas beta| = {d_pd:.1e})")

    import statsmodels.api as sm
    from statsmodels.regression.rolling import RollingOLS

    X = sm.add_constant(x.to_frame())
    cols = list(Y.columns[:sm_assets])

    def sm_loop():
        return {c: RollingOLS(Y[c], X, window=252).fit() for c in cols}

    t_sm, res = best_of(sm_loop, 1)
    t_sm_all = t_sm * Y.shape[1] / sm_assets
    d_sm = max(float((fit.beta[c] - res[c].params["mkt"]).abs().max()) for c in cols)
    print(f"  statsmodels RollingOLS loop             {t_sm_all:9.1f} s    "
          f"(measured {t_sm:.2f} s on {sm_assets} assets, scaled x{Y.shape[1] / sm_assets:.0f})  "
          f"statsmodels/newton = {t_sm_all / t_nt:7.0f}x (target >= 1000x)   (max|dbeta| = {d_sm:.1e})")

    # Each iterative solver at its default tol, then at the loosest tol that still meets the
    # issue's accuracy bar (max |Δβ| <= 1e-5 against newton): the speed targets are stated at
    # that accuracy, and a row that misses the bar says so.
    for solver, budget in [("gd", 1.5), ("adam", 5.0), ("lbfgs", None)]:
        for tol in (None, 1e-6):
            t_s, f = best_of(lambda s=solver, tl=tol: qf.fit_rolling(Y, x, 252, solver=s, tol=tl),
                             max(1, repeat - 1))
            d = float((f.beta - fit.beta).abs().max().max())
            est = f.beta.notna().to_numpy()
            it = f.n_iter.to_numpy()[est]
            target = f"(target <= {budget:.1f}x)" if budget else ""
            acc = "meets" if d <= 1e-5 else "MISSES"
            tol_s = "default" if tol is None else f"{tol:g}"
            print(f"  {solver:<6} cold start, tol={tol_s:<8}  {t_s * 1e3:9.1f} ms   "
                  f"{solver}/pandas = {t_s / t_pd:5.2f}x {target}  max|dbeta| vs newton = {d:.1e} "
                  f"({acc} 1e-5)  converged {f.converged.to_numpy()[est].mean():.4f}  "
                  f"iterations median {np.median(it):.0f} max {it.max()}")
    err = float(np.abs(fit.beta.iloc[-1].to_numpy() - beta_true).max())
    print(f"  (sanity: max |newton beta - true beta| at the last date = {err:.3f}, sampling noise)")


_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from engine_workloads import make_w2
import quantfit as qf
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GiB (ru_maxrss in KiB)
Y, x, _ = make_w2()
base = rss()
t0 = time.perf_counter()
fit = qf.fit_rolling(Y, x, window=252, device="cpu", solver=sys.argv[2])
b = fit.coef("mkt"); s = fit.stderr("hml"); r = fit.r2
el = time.perf_counter() - t0
print(json.dumps({"rss_data_gib": base, "rss_peak_gib": rss(), "seconds": el,
                  "nan_share": float(b.isna().to_numpy().mean())}))
"""


def bench_memory(solver: str) -> None:
    here = str(Path(__file__).resolve().parent)
    out = subprocess.run([sys.executable, "-c", _CHILD, here, solver], capture_output=True,
                         text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"Memory: 5,000 assets x 5,040 dates x 3 factors, {solver}, CPU float64: "
          f"peak RSS {r['rss_peak_gib']:.2f} GiB (after building the data: {r['rss_data_gib']:.2f} GiB), "
          f"fit {r['seconds']:.1f} s  [target: within 6 GB]")


def bench_gpu(repeat: int) -> None:
    if not torch.cuda.is_available():
        print("GPU: no CUDA device, skipped")
        return
    from quantfit.engine import RollingSpec, rolling_regression

    dev = torch.device("cuda", torch.cuda.current_device())
    Y, x, _ = make_w2()
    print(f"GPU W2: {Y.shape[1]} assets x {Y.shape[0]} dates, 3 factors, float32 on "
          f"{torch.cuda.get_device_name(dev)}")
    y_host = torch.from_numpy(np.ascontiguousarray(Y.to_numpy().T)).float().pin_memory()
    x_host = torch.from_numpy(x.to_numpy())

    def h2d():
        t = y_host.to(dev, non_blocking=True)
        torch.cuda.synchronize()
        return t

    t_h2d, y_dev = best_of(h2d, repeat)
    print(f"  host->device y ({y_host.numel() * 4 / 2**20:.0f} MiB float32)   {t_h2d * 1e3:8.1f} ms")
    for solver, target in [("newton", 0.1), ("adam", 1.0), ("gd", None), ("lbfgs", None)]:
        spec = RollingSpec(window=252, min_obs=252, solver=solver)

        def run(spec=spec):
            out = rolling_regression(y_dev, x_host, spec, dev, torch.float32, out_device=dev)
            torch.cuda.synchronize()
            return out

        run()  # warm-up
        t, out = best_of(run, repeat)
        tgt = f"(target <= {target * 1e3:.0f} ms)" if target else ""
        print(f"  {solver:<6} device-resident               {t * 1e3:8.1f} ms {tgt}")
    t0 = time.perf_counter()
    host = [t.cpu() for t in (out.coef, out.se_factor, out.r2, out.resid_vol, out.nobs)]
    torch.cuda.synchronize()
    size = sum(h.numel() * h.element_size() for h in host) / 2**20
    print(f"  device->host results ({size:.0f} MiB)     {(time.perf_counter() - t0) * 1e3:8.1f} ms")
    t_api, _ = best_of(lambda: qf.fit_rolling(Y, x, window=252, device="cuda"), 1)
    print(f"  qf.fit_rolling end to end (pandas in/out, transfers)  {t_api * 1e3:8.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sm-assets", type=int, default=10)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-solver", default="newton")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's choice, the core count); "
                         "1 is steadier when other processes compete for the cores")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"quantfit {qf.__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    bench_w1(args.repeat, args.sm_assets)
    if not args.no_memory:
        bench_memory(args.memory_solver)
    bench_gpu(args.repeat)


if __name__ == "__main__":
    main()
