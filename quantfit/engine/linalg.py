"""Batched small-matrix algebra for millions of p×p systems at once (p ≲ 10).

``torch.linalg`` on a batch of a million 2×2 systems spends its time in per-matrix overhead on
the CPU; here the loops run over the p entries (Python) and each step is one vectorized
operation over the whole batch (assets × windows). Matrices are logical ``(..., p, p)``
tensors, vectors logical ``(..., p)``; new ones are allocated parameter-major (see
``param_empty``) so each entry is a contiguous run of dates.

The Cholesky factorization flags singular windows instead of failing: a pivot that falls to
``rel_tol`` of its diagonal entry (the column is, to that precision, a combination of the
previous ones, e.g. a factor with no variance in the window) marks the window as singular and
is replaced by 1 so the remaining arithmetic stays finite; callers turn flagged windows to NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def param_empty(batch: tuple[int, ...], p: int, like: Tensor, square: bool = False) -> Tensor:
    """Uninitialized logical ``(*batch, p)`` (or ``(*batch, p, p)``) tensor, parameter-major.

    Storage is ``(batch[0], p[, p], *batch[1:])`` so that ``v[..., i]`` is contiguous along dates.
    """
    lead, rest = batch[:1], batch[1:]
    dims = (p, p) if square else (p,)
    t = torch.empty(lead + dims + rest, dtype=like.dtype, device=like.device)
    nd = len(dims)
    order = (0,) + tuple(range(1 + nd, 1 + nd + len(rest))) + tuple(range(1, 1 + nd))
    return t.permute(order)


def broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy broadcasting of shapes (``torch.broadcast_shapes`` imports torch's symbolic-shape
    machinery on first use, over a second in a fresh process)."""
    nd = max(len(s) for s in shapes)
    out = [1] * nd
    for s in shapes:
        for i, d in enumerate(s, nd - len(s)):
            if d != 1:
                if out[i] not in (1, d):
                    raise ValueError(f"shapes {shapes} do not broadcast")
                out[i] = d
    return tuple(out)


def param_zeros(batch: tuple[int, ...], p: int, like: Tensor) -> Tensor:
    return param_empty(batch, p, like).zero_()


def matvec(M: Tensor, v: Tensor, out: Tensor | None = None) -> Tensor:
    """``M @ v`` for logical M (..., p, p) and v (..., p), broadcasting the batch dims; into
    ``out`` (the broadcast (..., p) shape, any strides) when given."""
    p = v.shape[-1]
    if out is None:
        out = param_empty(broadcast_shape(tuple(M.shape[:-2]), tuple(v.shape[:-1])), p, v)
    for i in range(p):
        o = out[..., i]
        torch.mul(M[..., i, 0], v[..., 0], out=o)
        for j in range(1, p):
            o.addcmul_(M[..., i, j], v[..., j])
    return out


def dot(u: Tensor, v: Tensor) -> Tensor:
    """``Σ_i u_i v_i`` over the last dim (p vectorized multiply-adds): (...) result."""
    out = u[..., 0] * v[..., 0]  # already has the broadcast batch shape
    for i in range(1, u.shape[-1]):
        out.addcmul_(u[..., i], v[..., i])
    return out


@dataclass
class Cholesky:
    """Lower factor of a batch of SPD matrices, entries kept as a list of batch tensors.

    L[i][j] (j <= i) : (...) entry of L;  inv_diag[i] : 1 / L[i][i];  ok : (...) bool, False
    where the matrix is singular to working precision.
    """

    L: list[list[Tensor]]
    inv_diag: list[Tensor]
    ok: Tensor

    @property
    def p(self) -> int:
        return len(self.inv_diag)


def cholesky(G: Tensor, rel_tol: float | None = None) -> Cholesky:
    """Batched Cholesky of logical (..., p, p) symmetric matrices, flagging singular ones."""
    p = G.shape[-1]
    if rel_tol is None:
        rel_tol = torch.finfo(G.dtype).eps ** 0.5
    one = torch.ones((), dtype=G.dtype, device=G.device)
    L: list[list[Tensor]] = [[None] * p for _ in range(p)]  # type: ignore[list-item]
    inv_diag: list[Tensor] = []
    ok = torch.ones(G.shape[:-2], dtype=torch.bool, device=G.device)
    for j in range(p):
        d = G[..., j, j].clone()
        for k in range(j):
            d.addcmul_(L[j][k], L[j][k], value=-1.0)
        good = d > rel_tol * G[..., j, j]
        good &= torch.isfinite(d)
        ok &= good
        d = torch.where(good, d, one).sqrt_()
        L[j][j] = d
        inv = torch.reciprocal(d)
        inv_diag.append(inv)
        for i in range(j + 1, p):
            s = G[..., i, j].clone()
            for k in range(j):
                s.addcmul_(L[i][k], L[j][k], value=-1.0)
            L[i][j] = s.mul_(inv)
    return Cholesky(L, inv_diag, ok)


def solve(ch: Cholesky, b: Tensor) -> Tensor:
    """Solve ``(L Lᵀ) x = b`` for logical b (..., p); returns x (..., p), parameter-major."""
    p = ch.p
    batch = broadcast_shape(tuple(b.shape[:-1]), tuple(ch.ok.shape))
    x = param_empty(batch, p, b)
    v: list[Tensor] = []
    for i in range(p):  # forward: L v = b  (v[i] = (b_i − Σ_k L_ik v_k) / L_ii)
        s = b[..., i]
        for k in range(i):
            s = torch.addcmul(s, ch.L[i][k], v[k], value=-1.0)
        v.append(
            s * ch.inv_diag[i] if i > 0 or s.shape == batch else (s * ch.inv_diag[i]).expand(batch)
        )
    for i in reversed(range(p)):  # backward: Lᵀ x = v
        s = v[i]
        for k in range(i + 1, p):
            s = torch.addcmul(s, ch.L[k][i], x[..., k], value=-1.0)
        torch.mul(s, ch.inv_diag[i], out=x[..., i])
    return x


def inverse(ch: Cholesky) -> Tensor:
    """``(L Lᵀ)⁻¹`` as a logical (..., p, p) tensor (symmetric, parameter-major)."""
    p = ch.p
    # Li = L⁻¹ (lower), column by column.
    Li: list[list[Tensor]] = [[ch.inv_diag[0]] * p for _ in range(p)]  # filled below
    for j in range(p):
        Li[j][j] = ch.inv_diag[j]
        for i in range(j + 1, p):
            s = ch.L[i][j] * Li[j][j]
            for k in range(j + 1, i):
                s = s + ch.L[i][k] * Li[k][j]
            Li[i][j] = -s * ch.inv_diag[i]
    batch = ch.ok.shape
    out = param_empty(tuple(batch), p, ch.inv_diag[0], square=True)
    for i in range(p):
        for j in range(i, p):
            s = Li[j][i] * Li[j][j]  # Σ_k Li[k][i] Li[k][j] over k >= j
            for k in range(j + 1, p):
                s = s + Li[k][i] * Li[k][j]
            out[..., i, j] = s
            if i != j:
                out[..., j, i] = s
    return out


def condition_estimate(G: Tensor, ch: Cholesky) -> Tensor:
    """Cheap per-matrix estimate of the condition number of SPD ``G`` (..., p, p) from its
    Cholesky factor: ``Σ_j G_jj / L_jj²`` (p for an orthogonal design, large when a column is
    nearly a combination of the others). Used to bound the rounding error of formulas that
    cancel, not as a precise κ."""
    kappa = G[..., 0, 0] * ch.inv_diag[0].square()
    for j in range(1, ch.p):
        kappa = kappa + G[..., j, j] * ch.inv_diag[j].square()
    return kappa
