#!/usr/bin/env bash
# One GPU session's checks, under 8 minutes on one CUDA device:
#   1. the test suite's GPU tests (@pytest.mark.gpu), which skip without CUDA;
#   2. W2 = 5,000 assets × 5,040 dates × 3 factors, window 252, float32 on the GPU:
#      newton, adam and huber through qf.fit_rolling, each timed after one warm-up call
#      (best of 3; huber once), with the host<->device copies inside the timing, plus
#      newton device-resident (rolling_regression on device tensors, no copies).
#      Targets (issue 14): newton <= 100 ms, adam <= 1 s, huber <= 10 s.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, venv active
#   bash benchmarks/gpu_check.sh --no-tests # only the W2 timings
#
# Prints every figure with the device name; exit code 1 if a step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
status=0
python -c "import torch, sys; ok = torch.cuda.is_available(); print('CUDA:', ok, torch.cuda.get_device_name() if ok else ''); sys.exit(0 if ok else 3)" \
  || { echo "gpu_check: no CUDA device: nothing to check"; exit 1; }

if [[ "${1:-}" != "--no-tests" ]]; then
  echo "== GPU tests =="
  timeout 200 python -m pytest -q -m gpu tests/ || status=1
fi

echo "== W2 on the GPU =="
timeout 260 python - <<'EOF' || status=1
import sys, time
sys.path.insert(0, "benchmarks")
import numpy as np
import torch
import quantfit as qf
from engine_workloads import make_w2
from quantfit.engine import RollingSpec, rolling_regression

dev = torch.device("cuda")
Y, x, betas = make_w2()
print(f"W2: {Y.shape[1]:,} assets x {Y.shape[0]:,} dates x {x.shape[1]} factors, window 252, "
      f"float32 on {torch.cuda.get_device_name(dev)}; torch {torch.__version__}")
ref = None


def timed(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        out = None
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


for name, kw, target, repeat in [("newton", {}, 0.1, 3), ("adam", {"solver": "adam"}, 1.0, 3),
                                 ("huber", {"loss": "huber"}, 10.0, 1)]:
    qf.fit_rolling(Y.iloc[:, :64], x, 252, device="cuda", **kw)  # warm-up: kernels, allocator
    t, fit = timed(lambda: qf.fit_rolling(Y, x, 252, device="cuda", **kw), repeat)
    b = fit.coef("mkt").to_numpy()
    if name == "newton":
        ref = b
    est = np.isfinite(b)
    conv = fit.converged.to_numpy()[est].mean()
    d = np.nanmax(np.abs(b - ref)) if name != "huber" else float("nan")
    verdict = "met" if t <= target else "NOT met"
    print(f"  {name:<6} qf.fit_rolling, pandas in/out: {t * 1e3:9.1f} ms (target <= {target * 1e3:,.0f} ms: "
          f"{verdict}); converged {conv:.4f}; max |dbeta| vs newton {d:.1e}", flush=True)
    del fit

y_dev = torch.from_numpy(np.ascontiguousarray(Y.to_numpy().T)).to(dev, torch.float32)
x_t = torch.from_numpy(x.to_numpy())
spec = RollingSpec(window=252, min_obs=252)
rolling_regression(y_dev[:64], x_t, spec, dev, torch.float32, out_device=dev)
t, out = timed(lambda: rolling_regression(y_dev, x_t, spec, dev, torch.float32, out_device=dev), 3)
print(f"  newton device-resident (no copies): {t * 1e3:.1f} ms; results "
      f"{sum(a.numel() * a.element_size() for a in (out.coef, out.r2, out.resid_vol)) / 2**20:.0f} MiB")
print(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
EOF
exit $status
