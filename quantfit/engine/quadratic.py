"""First-order iterations on quadratic objectives in normalized Jacobi units, fused in place.

For a quadratic objective (the squared loss, with or without a shrinkage prior) the gradient
is ``Hθ − b`` with ``b = −grad(0)``. In the units ``u_i = θ_i · √D_i / ‖y‖`` (D the Jacobi
diagonal of H, ``‖y‖ = √(2·loss(0))`` per window) it is ``ĝ = Ĝu − ẑ`` with
``Ĝ = D^-½ H D^-½`` (unit diagonal, shared by all assets when H is) and ``ẑ = D^-½ b / ‖y‖``;
the optimum is of order one and a window has converged when ``‖ĝ‖ ≤ tol``, the same test as
the solvers' generic monitor (``‖ĝ‖² = Σ g_i²/D_i / ‖y‖²``).

``NormalizedQuadratic`` holds that state as stacked ``(A, p, T)`` buffers (``u``, ``ẑ``,
``ĝ``) and the per-window flags, so a solver's iteration is a few in-place passes over them
instead of a dozen allocated temporaries per step: on the CPU the temporaries, not the
arithmetic, dominated (fresh pages and cache misses). Solvers (``solvers.gd``,
``solvers.adam``) write only their update rule on top.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from quantfit.engine.linalg import param_empty


class NormalizedQuadratic:
    """State of a first-order solver on a quadratic objective, all windows at once.

    u, zh, g : (A, p, T)  iterate, target ẑ and gradient ĝ in normalized units
    lip      : (B, T)     Gershgorin bound on Ĝ's largest eigenvalue (the safe step is 1/lip)
    open, converged, diverged : (A, T) bool;  n_iter : (A, T) int32
    """

    def __init__(self, obj, tol: float):
        H = obj.hessian(None)  # (B, T, p, p)
        b = obj.neg_grad(None)  # (A, T, p)
        A, T, p = b.shape
        dt, dev = b.dtype, b.device
        diag, self.lip = obj.curvature()  # (B, T, p), (B, T)
        self.rs = diag.rsqrt()  # D^-½
        # Windows with ‖y‖ = 0 start (and stay) at their optimum θ = 0.
        self.ynorm = (2.0 * obj.loss_scale).clamp_min_(0.0).sqrt_()  # (A, T)
        inv_norm = torch.where(self.ynorm > 0, self.ynorm.reciprocal(), 0.0)
        rs = self.rs
        # Ĝ as its p² entries, (B, T) each.
        self.Gh = [[H[..., i, j] * rs[..., i] * rs[..., j] for j in range(p)] for i in range(p)]
        self.unit = all(bool((H[..., i, i] == diag[..., i]).all()) for i in range(p))
        self.shape, self.p, self.like = (A, T), p, b
        self.u, self.zh, self.g = (torch.zeros((A, p, T), dtype=dt, device=dev) for _ in range(3))
        for i in range(p):
            torch.mul(b[..., i], rs[..., i], out=self.zh[:, i]).mul_(inv_norm)
        self.converged = torch.zeros((A, T), dtype=torch.bool, device=dev)
        self.diverged = torch.zeros((A, T), dtype=torch.bool, device=dev)
        self.n_iter = torch.zeros((A, T), dtype=torch.int32, device=dev)
        self.open = obj.active.expand(A, T).clone()
        self._g2 = torch.empty((A, T), dtype=dt, device=dev)
        self._eps = torch.finfo(dt).eps
        self.tol2 = tol * tol

    def gradient(self) -> None:
        """ĝ = Ĝu − ẑ, in place."""
        u, g, zh, Gh = self.u, self.g, self.zh, self.Gh
        for i in range(self.p):
            gi = g[:, i]
            if self.unit:
                torch.sub(u[:, i], zh[:, i], out=gi)
            else:
                torch.mul(u[:, i], Gh[i][i], out=gi).sub_(zh[:, i])
            for j in range(self.p):
                if j != i:
                    gi.addcmul_(Gh[i][j], u[:, j])

    def theta(self) -> Tensor:
        """θ = u · ‖y‖ / √D, as a parameter-major (A, T, p) tensor."""
        th = param_empty(self.shape, self.p, self.like)
        for i in range(self.p):
            torch.mul(self.u[:, i], self.rs[..., i], out=th[..., i]).mul_(self.ynorm)
        return th

    def check(self, t: int, blowup: float | None) -> bool:
        """Close the windows that converged (‖ĝ‖ ≤ tol) or diverged (ĝ not
        finite; with ``blowup``, also loss > blowup · loss(0)); iteration ``t`` is recorded
        as ``n_iter`` of every window still open before the check. True when none is open."""
        g, g2, p = self.g, self._g2, self.p
        torch.mul(g[:, 0], g[:, 0], out=g2)
        for i in range(1, p):
            g2.addcmul_(g[:, i], g[:, i])
        if t > 0:
            self.n_iter.masked_fill_(self.open, t)
        ok = (g2 <= self.tol2) & self.open
        bad = ~(g2 < math.inf)
        if blowup is not None:  # u·(ĝ − ẑ) = loss/loss(0) − 1
            r = torch.sub(g[:, 0], self.zh[:, 0]).mul_(self.u[:, 0])
            for i in range(1, p):
                r.addcmul_(torch.sub(g[:, i], self.zh[:, i]), self.u[:, i])
            bad |= ~(r <= blowup - 1.0 + 64 * self._eps)
        self.converged.logical_or_(ok)
        self.open.logical_and_(~ok)
        bad &= self.open
        self.diverged.logical_or_(bad)
        self.open.logical_and_(~bad)
        return not bool(self.open.any())
