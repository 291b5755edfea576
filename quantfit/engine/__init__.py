"""The batched regression engine: pure torch, no pandas, nothing from quantfit's other layers.

Modules
-------
device      pick_device / default_dtype / auto_chunk (device choice, precision, memory budget)
moments     masked, decayed trailing-window sums and the per-window sufficient statistics
linalg      batched Cholesky / solve / inverse over millions of small p×p systems
objectives  one class per loss (value, gradient, Hessian, preconditioner) - SquaredLoss
solvers     newton, gd, adam, lbfgs, generic over objectives
rolling     rolling_regression: chunks of assets through moments → objective → solver → stats

Shapes: inputs (A, T) assets × dates (factors (T, k)); parameters (A, T, p); Gram/Hessian
(B, T, p, p) with B = A or 1 (shared when every asset sees the same rows).
"""

from quantfit.engine.device import auto_chunk, default_dtype, pick_device
from quantfit.engine.rolling import LOSSES, RollingOutput, RollingSpec, rolling_regression
from quantfit.engine.solvers import DEFAULTS, SOLVERS

__all__ = [
    "DEFAULTS", "LOSSES", "SOLVERS", "RollingOutput", "RollingSpec", "auto_chunk",
    "default_dtype", "pick_device", "rolling_regression",
]
