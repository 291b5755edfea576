"""The batched regression engine: pure torch, no pandas, nothing from quantfit's other layers.

Modules
-------
device        pick_device / default_dtype / auto_chunk (device choice, precision, memory budget)
windows       WindowBounds and exact window sums (only rows inside a window are ever added)
standardize   working coordinates: robust per-column centres and power-of-two scales
moments       the per-window sufficient statistics (Gram matrix, z·y, y², counts)
linalg        batched Cholesky / solve / inverse over millions of small p×p systems
objectives    one class per loss (value, gradient, Hessian, preconditioner) - SquaredLoss
penalty       a shrinkage prior as a wrapper around any objective
solvers       newton, gd, adam, lbfgs, generic over objectives (quadratic: fused loops)
stats         THE window statistics: coefficients, SE factors, σ, R² (every path ends here)
blocks        windows as rows: gathering (asset, window) pairs, the exact refit
robust_scale  batched medians of absolute residuals (Huber's MAD scale)
shared_ols    newton's fast path when every asset uses the same rows
general       moments → objective → any solver
huber         Huber's M-estimator from the rows of every window
output        RollingOutput and the pool of reusable result buffers
rolling       rolling_regression: the one orchestration (chunks, threads, refit, flags)

Shapes: inputs (A, T) assets × dates (factors (T, k)); parameters (A, T, p); Gram/Hessian
(B, T, p, p) with B = A or 1 (shared when every asset sees the same rows).
"""

from quantfit.engine.device import auto_chunk, default_dtype, pick_device
from quantfit.engine.output import RollingOutput
from quantfit.engine.rolling import LOSSES, PATHS, RollingSpec, rolling_regression, select_path
from quantfit.engine.solvers import DEFAULTS, SOLVERS
from quantfit.engine.windows import WindowBounds, decay_from_halflife, window_sums_

__all__ = [
    "DEFAULTS",
    "LOSSES",
    "PATHS",
    "SOLVERS",
    "RollingOutput",
    "RollingSpec",
    "WindowBounds",
    "auto_chunk",
    "decay_from_halflife",
    "default_dtype",
    "pick_device",
    "rolling_regression",
    "select_path",
    "window_sums_",
]
