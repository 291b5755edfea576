"""Medians of absolute residuals over each window's valid rows, batched: Huber's MAD scale.

A block holds N windows of L rows, some of them missing. Instead of a ragged median per row,
missing rows are filled with −1 and +inf in equal numbers (one more −1 when the count of
missing rows is odd and L is odd...: see ``median_fill``), so that the middle order statistics
of the filled row are those of its valid values, and one batched ``median`` serves every
window. The mean of the middle two is taken for an even number of valid rows (numpy's and
statsmodels' median).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MAD_C = 0.6744897501960817  # Φ⁻¹(3/4): the MAD of a standard normal


def median_fill(valid: Tensor, dtype: torch.dtype) -> Tensor | None:
    """(N, L): −1 or +inf at missing rows (NaN at valid ones) so that the median of the filled
    row is the median of its valid values; None when every row is valid."""
    if bool(valid.all()):
        return None
    L = valid.shape[-1]
    n = valid.sum(-1)
    miss = ~valid
    n_low = (L - n + L % 2) // 2
    rank = miss.cumsum(-1)
    low = torch.where(rank <= n_low[:, None], -1.0, math.inf)
    return torch.where(miss, low, math.nan).to(dtype)


def median_abs(a: Tensor, n: Tensor, fill: Tensor | None, prev: Tensor | None = None) -> Tensor:
    """Median over the valid rows of ``a`` = |r| (N, L), ``n`` (N,) valid rows.

    With ``prev`` (a nearby value, e.g. the last iteration's median) the middle order
    statistics are read off the counts around it when ``prev`` still splits the rows in the
    middle (two masked reductions, no selection); the other rows take the full median.
    """
    if fill is not None:
        a = torch.where(fill.isnan(), a, fill)
    if prev is None:
        return _median(a, n)
    p_ = prev[:, None]
    le = a <= p_
    cnt = le.sum(-1)
    if fill is not None:
        cnt = cnt - (a < 0).sum(-1)
    below = torch.where(le, a, -math.inf).amax(-1)  # order statistic cnt − 1
    above = torch.where(le, math.inf, a).amin(-1)  # order statistic cnt
    k1, k2 = (n - 1) // 2, n // 2
    hit_even = (cnt == k2) & (k1 != k2)  # the split falls between the two middle rows
    hit_lo = (cnt - 1 == k1) & (k1 == k2)
    hit_hi = (cnt == k1) & (k1 == k2)
    med = torch.where(hit_even, 0.5 * (below + above), torch.where(hit_lo, below, above))
    miss = ~(hit_even | hit_lo | hit_hi)
    if bool(miss.any()):
        idx = miss.nonzero()[:, 0]
        med = med.index_put((idx,), _median(a[idx], n[idx]))
    return med


def _median(a: Tensor, n: Tensor) -> Tensor:
    lo = a.median(-1).values
    even = n % 2 == 0
    if not bool(even.any()):
        return lo
    n_low = (a < 0).sum(-1)
    le = (a <= lo[:, None]).sum(-1) - n_low
    nxt = torch.where(a > lo[:, None], a, math.inf).amin(-1)
    up = torch.where(le >= n // 2 + 1, lo, nxt)
    return torch.where(even, 0.5 * (lo + up), lo)
