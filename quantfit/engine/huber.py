"""Robust (Huber) regressions in every window: statsmodels ``RLM(norm=HuberT(t))``, batched.

The estimator, per window (rows with y and every factor present, row weights w_s from the
half-life, 1 without one):

    θ̂ minimizes  Σ_s w_s · s² · ρ_t((y_s − z_sᵀθ) / s)  [+ ½λ‖β − b0‖², see penalty.py]
    s  = median_s |y_s − z_sᵀθ̂| / Φ⁻¹(3/4)        (the scale of the final residuals)

with Huber's ρ_t (quadratic within ±t, linear outside) — the fixed point of statsmodels' RLM
with its defaults (``scale_est="mad"``, which is ``mad(resid, center=0)``, re-estimated at every
step). It needs each window's raw rows, not moments: the (asset, window) pairs to estimate are
gathered by ``blocks.gather_rows`` into flat blocks ``(N, L)``, a block at a time, sized by a
memory budget, on the compute device, in the working units of ``standardize`` (the estimator
is equivariant: θ maps back exactly as for least squares). Medians over the valid rows come
from ``robust_scale``.

Solvers
-------
* ``newton`` (default): from the (weighted) least-squares fit, each step re-estimates s from
  the current residuals and takes the Newton step of the fixed-s loss, Hessian
  ``Σ w ψ'(u) z zᵀ`` (u = r/s; the rows inside ±t). Steps where that matrix is singular, and all
  steps after ``SWITCH_ITER``, use the IRLS matrix ``Σ w min(1, t/|u|) z zᵀ`` instead (the
  statsmodels iteration, a monotone majorize-minimize step). About 6 steps per window against
  RLM's 18 on daily returns. Windows that converge leave the block (compaction).
* ``gd`` / ``adam`` / ``lbfgs``: outer rounds; in each, s is re-estimated at the current θ and
  the solver minimizes the fixed-s Huber loss (``HuberFixedScale``, the Objective protocol)
  warm-started there; a window has converged when a round opens already converged (the
  gradient at the re-estimated scale is below tol). ``n_iter`` sums the inner iterations.

Convergence (all solvers): the preconditioned gradient of the penalized fixed-s loss, at the
scale re-estimated at θ, is below ``tol · √(Σ w y²)`` (as for the squared loss). Windows that
do not converge within ``max_iter`` steps (or whose scale is 0: at least half the residuals
exactly zero) get NaN estimates and ``converged = False``.

Statistics (written by ``stats``, like every path): ``stderr`` is RLM's default ``H1``
covariance, ``k² · [Σ ψ(u)² s²/(n − p)] / m² · (Σ w z zᵀ + Q)⁻¹`` with ``m = mean ψ'(u)``,
``k = 1 + p'/n · var ψ'(u) / m²`` (p' = p with an intercept, p + 1 without, as statsmodels'
``df_model + 1``); sums over the rows are w-weighted when a half-life is set. ``r2`` and
``resid_vol`` are computed from the robust residuals as for least squares (1 − RSS/TSS and
√(RSS/(n − p))). Row weights w and a prior Q enter as stated (statsmodels has neither).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor

from quantfit.engine.blocks import block_pairs, gather_rows, weighted_tss
from quantfit.engine.linalg import cholesky, inverse, solve
from quantfit.engine.objectives import jacobi_gershgorin
from quantfit.engine.robust_scale import MAD_C, median_abs, median_fill
from quantfit.engine.solvers import default_max_iter, default_tol, run_solver
from quantfit.engine.stats import write_pair_statistics

SWITCH_ITER = 10  # newton steps before the open windows fall back to IRLS steps
MAX_OUTER = 50  # scale re-estimations for the first-order solvers
COMPACT_BELOW = 0.9  # drop finished pairs from a block when fewer than this share are open


class _Block:
    """One flat block of (asset, window) pairs.

    y (N, L) with 0 at missing rows; x: k factor columns (N, L), 0 at missing rows; c (N, L)
    or (1, W) or None: row weight × valid flag (None = all ones); fill (N, L) or None: the value
    a missing row takes in the median (−1 or +inf, NaN at valid rows); n (N,) valid rows;
    q (N, p) / c0 (N,) the prior's linear and constant terms (zeros without a prior).
    D (N, m, W): the c-weighted design columns z (p) then the products x_i·x_j (i ≤ j), so one
    ``bmm`` gives every Σ c·v·z and Σ c·h·z zᵀ of a step.
    """

    def __init__(self, y, x, c, fill, n, q, c0, intercept, D=None, u2=None):
        self.y, self.x, self.c, self.fill, self.n, self.q, self.c0 = y, x, c, fill, n, q, c0
        self.u2 = u2  # (N,) y scale² of each pair (working → original units), None = 1
        self.intercept = intercept
        k = len(x)
        self.p = k + int(intercept)
        off = self.p
        pos = {}
        for i in range(k):
            for j in range(i, k):
                pos[(i, j)] = off
                off += 1
        ic = int(intercept)
        gidx = []
        for i in range(self.p):
            for j in range(self.p):
                if intercept and (i == 0 or j == 0):
                    gidx.append(max(i, j))  # z_0·z_j = z_j (z_0 = 1: column 0 is c)
                else:
                    gidx.append(pos[(min(i, j) - ic, max(i, j) - ic)])
        self.gidx = gidx
        if D is None:
            cols = ([torch.ones_like(y)] if intercept else []) + list(x)
            cols += [x[i] * x[j] for i in range(k) for j in range(i, k)]
            D = torch.stack(cols, 1)  # (N, m, W)
            if c is not None:
                D.mul_(c[:, None])
        self.D = D

    def take(self, idx: Tensor) -> _Block:
        sub = lambda v: None if v is None else (v if v.shape[0] == 1 else v[idx])  # noqa: E731
        return _Block(
            self.y[idx],
            [v[idx] for v in self.x],
            sub(self.c),
            sub(self.fill),
            self.n[idx],
            self.q[idx],
            self.c0[idx],
            self.intercept,
            self.D[idx],
            None if self.u2 is None else self.u2[idx],
        )

    def weighted(self, v: Tensor) -> Tensor:
        return v if self.c is None else v * self.c

    def residual(self, theta: Tensor) -> Tensor:  # y − zᵀθ, (N, L)
        ic = int(self.intercept)
        r = self.y - theta[:, :1] if ic else self.y.clone()
        for j, xj in enumerate(self.x):
            r.addcmul_(xj, theta[:, j + ic, None], value=-1.0)
        return r

    def sums(self, v: Tensor, h: Tensor | None = None, Q: Tensor | None = None):
        """(Σ c·v·z (N, p), Σ c·h·z zᵀ + Q (N, p, p) or None) in one bmm."""
        V = v[:, None] if h is None else torch.stack((v, h), 1)
        S = torch.bmm(V, self.D.mT)  # (N, 1|2, m)
        g = S[:, 0, : self.p]
        if h is None:
            return g, None
        G = S[:, 1, self.gidx].reshape(-1, self.p, self.p)
        return g, G if Q is None else G + Q

    def gram(self, Q: Tensor) -> Tensor:  # Σ c z zᵀ + Q
        return self.sums(torch.zeros_like(self.y), torch.ones_like(self.y), Q)[1]

    def median_abs(self, a: Tensor, prev: Tensor | None = None) -> Tensor:
        return median_abs(a, self.n, self.fill, prev)


def _pen(theta, Q, q, c0):
    qt = theta @ Q  # Q symmetric: (N, p)
    return (theta * (0.5 * qt - q)).sum(-1) + c0, qt - q


def _loss(blk, r, a, ts):
    """Σ c·s²·ρ(r/s) = Σ c·(r²/2 inside ±ts, ts·|r| − ts²/2 outside)  (N,)."""
    v = torch.where(a <= ts, 0.5 * r * r, ts * a - 0.5 * ts * ts)
    return blk.weighted(v).sum(-1)


class HuberFixedScale:
    """The Huber loss of a block at a fixed scale s (N,), as an ``Objective`` over windows
    shaped (N, 1): value ``Σ c·s²·ρ(r/s) + pen``, gradient ``−Σ c·s·ψ(r/s)·z + Qθ − q``,
    Hessian ``Σ c·ψ'(r/s)·z zᵀ + Q``. θ is relative to ``theta0`` (the solvers start at 0)."""

    quadratic = False

    def __init__(self, blk: _Block, s: Tensor, theta0: Tensor, Q: Tensor, t: float, scale0: Tensor):
        self.b, self.theta0, self.Q = blk, theta0, Q
        self.ts = (t * s)[:, None]
        self.active = torch.ones((s.shape[0], 1), dtype=torch.bool, device=s.device)
        self._gram = blk.gram(Q)[:, None]
        v0, _ = self.value_and_grad(torch.zeros_like(theta0)[:, None])
        self.loss_scale = torch.maximum(scale0[:, None], v0)

    def value_and_grad(self, theta):
        th = self.theta0 + theta[:, 0]
        r = self.b.residual(th)
        a = r.abs()
        g, _ = self.b.sums(torch.minimum(torch.maximum(r, -self.ts), self.ts))
        pv, pg = _pen(th, self.Q, self.b.q, self.b.c0)
        return (_loss(self.b, r, a, self.ts) + pv)[:, None], (pg - g)[:, None]

    def value(self, theta):
        return self.value_and_grad(theta)[0]

    def grad(self, theta):
        if theta is None:
            theta = torch.zeros_like(self.theta0)[:, None]
        return self.value_and_grad(theta)[1]

    def neg_grad(self, theta):
        return -self.grad(theta)

    def hessian(self, theta):
        if theta is None:
            theta = torch.zeros_like(self.theta0)[:, None]
        a = self.b.residual(self.theta0 + theta[:, 0]).abs()
        return self.b.sums(a, (a <= self.ts).to(a.dtype), self.Q)[1][:, None]

    def curvature(self):
        return jacobi_gershgorin(self._gram)


def _state(
    blk: _Block,
    theta: Tensor,
    Q: Tensor,
    t: float,
    prev: Tensor | None = None,
    hess: str | None = None,
):
    """At θ: residuals r, |r|, the MAD scale s (N,), t·s (N, 1), the gradient of the fixed-s
    loss (N, p) and, with ``hess`` ("newton" or "irls"), its step matrix (N, p, p) (one bmm)."""
    r = blk.residual(theta)
    a = r.abs()
    s = blk.median_abs(a, None if prev is None else prev * MAD_C) / MAD_C
    ts = (t * s)[:, None]
    N, W = r.shape
    V = torch.empty((N, 1 if hess is None else 2, W), dtype=r.dtype, device=r.device)
    torch.clamp(r, min=-ts, max=ts, out=V[:, 0])  # s·ψ(r/s)
    if hess == "newton":
        V[:, 1].copy_(a <= ts)  # ψ'(r/s)
    elif hess == "irls":
        torch.div(ts, a, out=V[:, 1]).clamp_(max=1.0)  # ψ(u)/u
    S = torch.bmm(V, blk.D.mT)  # (N, 1|2, m)
    g = (theta @ Q - blk.q) - S[:, 0, : blk.p]
    H = None if hess is None else S[:, 1, blk.gidx].reshape(N, blk.p, blk.p) + Q
    return r, a, s, ts, g, H


def _finish(blk, theta, r, a, ts, Q, intercept, res, idx):
    """Statistics of the (converged) pairs of ``blk`` into ``res`` at block positions ``idx``."""
    n = blk.n.to(theta.dtype)
    p = blk.p
    sw = blk.weighted(torch.ones_like(blk.y)).sum(-1)
    inside = (a <= ts).to(theta.dtype)
    if blk.fill is not None:
        inside = inside * blk.fill.isnan()
    m = blk.weighted(inside).sum(-1) / sw
    var_dpsi = m - m * m
    pdf = p + (0 if intercept else 1)
    k = 1 + pdf / n * var_dpsi / (m * m)
    psi_s = torch.minimum(torch.maximum(r, -ts), ts)  # s·ψ(r/s)
    dof = n - p
    ch = cholesky(blk.gram(Q))
    ok = ch.ok & (dof > 0)
    res["theta"][idx] = theta
    res["rss"][idx] = blk.weighted(r * r).sum(-1)
    res["tss"][idx] = weighted_tss(blk.y, blk.c, None if blk.fill is None else blk.fill.isnan())
    res["ginv"][idx] = inverse(ch)
    res["se2"][idx] = k * k * blk.weighted(psi_s * psi_s).sum(-1) / dof / (m * m)
    res["ok"][idx] = ok


def _solve_block(
    blk: _Block,
    Q: Tensor,
    t: float,
    solver: str,
    tol: float,
    max_iter: int | None,
    intercept: bool,
    record: bool,
) -> dict:
    """Huber fits of the pairs of ``blk``: per pair (block order) θ', RSS, TSS, G⁻¹, Huber's SE
    variance factor, ``ok`` (converged, with a positive scale and a solvable Gram matrix) and
    ``n_iter``; ``hist``: the summed loss after each step (original units)."""
    N, p = blk.y.shape[0], blk.p
    dt, dev = blk.y.dtype, blk.y.device
    res: dict[str, Any] = {
        "theta": torch.full((N, p), math.nan, dtype=dt, device=dev),
        "rss": torch.full((N,), math.nan, dtype=dt, device=dev),
        "tss": torch.full((N,), math.nan, dtype=dt, device=dev),
        "ginv": torch.full((N, p, p), math.nan, dtype=dt, device=dev),
        "se2": torch.full((N,), math.nan, dtype=dt, device=dev),
        "ok": torch.zeros(N, dtype=torch.bool, device=dev),
        "n_iter": torch.ones(N, dtype=torch.int32, device=dev),
    }
    hist: list[float] = []
    # Start: the (weighted, penalized) least-squares fit.
    zy, G0 = blk.sums(blk.y, torch.ones_like(blk.y), Q)
    ch0 = cholesky(G0)
    theta = solve(ch0, zy + blk.q)
    diag = torch.stack([G0[:, i, i] for i in range(p)], -1)
    inv_diag = torch.where(diag > 0, diag, 1.0).reciprocal()
    thresh2 = (tol * tol) * blk.weighted(blk.y * blk.y).sum(-1)  # 2·tol²·(½Σ w y²)
    ids = torch.arange(N, device=dev)  # block position of each pair still in the block
    if not bool(ch0.ok.all()):
        sel = ch0.ok.nonzero()[:, 0]
        ids, theta, blk, inv_diag, thresh2 = (
            ids[sel],
            theta[sel],
            blk.take(sel),
            inv_diag[sel],
            thresh2[sel],
        )
    frozen = torch.zeros((), dtype=dt, device=dev)  # Σ final values of the pairs that left
    open_ = torch.ones(ids.shape, dtype=torch.bool, device=dev)
    first_order = solver != "newton"
    inner_iter = max_iter if first_order else None
    last = MAX_OUTER if first_order else int(max_iter or default_max_iter("newton", False))
    s = None  # the previous pass's scale, a hint for the next median (none on the first)
    for it in range(last + 1):
        if ids.numel() == 0:
            break
        hess = None if first_order else ("newton" if it < SWITCH_ITER else "irls")
        r, a, s, ts, g, H = _state(blk, theta, Q, t, s, hess)
        good = (s > 0) & torch.isfinite(g).all(-1)
        gn2 = (g * g * inv_diag).sum(-1)
        conv = good & (gn2 <= thresh2) & open_
        done = open_ if it == last else (conv | ~good) & open_
        if record:
            v = _loss(blk, r, a, ts) + _pen(theta, Q, blk.q, blk.c0)[0]
            v = torch.where(torch.isfinite(v), v, 0)
            if blk.u2 is not None:
                v = v * blk.u2
            hist.append(float(frozen + v[open_].sum()))
            frozen = frozen + v[done].sum()
        if bool(conv.any()):
            sel = conv.nonzero()[:, 0]
            _finish(blk.take(sel), theta[sel], r[sel], a[sel], ts[sel], Q, intercept, res, ids[sel])
        open_ = open_ & ~done
        n_open = int(open_.sum())
        if n_open == 0:
            break
        if n_open < COMPACT_BELOW * ids.numel() or (first_order and n_open < ids.numel()):
            sel = open_.nonzero()[:, 0]
            ids, theta, blk, inv_diag, thresh2, open_ = (
                ids[sel],
                theta[sel],
                blk.take(sel),
                inv_diag[sel],
                thresh2[sel],
                open_[sel],
            )
            r, a, s, ts, g = r[sel], a[sel], s[sel], ts[sel], g[sel]
            H = None if H is None else H[sel]
        if first_order:
            obj = HuberFixedScale(blk, s, theta, Q, t, 0.5 * blk.weighted(blk.y * blk.y).sum(-1))
            sol = run_solver(solver, obj, tol, inner_iter)
            theta = theta + sol.theta[:, 0]
            res["n_iter"][ids] += sol.n_iter[:, 0]
            bad = sol.diverged[:, 0] | ~torch.isfinite(theta).all(-1)
            open_ = open_ & ~bad
            continue
        ch = cholesky(H)  # newton: Σ c·ψ'·z zᵀ + Q; after SWITCH_ITER the IRLS matrix
        if hess == "newton" and not bool(ch.ok.all()):  # too few rows inside ±t·s
            Hw = blk.sums(a, (ts / a).clamp(max=1.0), Q)[1]
            ch = cholesky(torch.where(ch.ok[:, None, None], H, Hw))
        theta = theta - solve(ch, g) * open_[:, None]
        res["n_iter"][ids] += open_.to(torch.int32)
    res["hist"] = hist
    return res


class HuberPath:
    """Huber fits of every (asset, window) pair with enough rows, block by block."""

    def __init__(self, ctx):
        self.ctx = ctx  # rolling.FitContext

    def run(self, out) -> None:
        c = self.ctx
        A, T = c.y.shape
        p = c.p
        nobs = out.nobs  # (A, T) int32, written by the caller
        out.coef.fill_(math.nan)
        out.se_factor.fill_(math.nan)
        out.r2.fill_(math.nan)
        out.resid_vol.fill_(math.nan)
        out.se_sigma.fill_(math.nan)
        out.converged.zero_()
        out.n_iter.zero_()
        a_all, t_all = (nobs >= max(c.min_obs, p)).nonzero(as_tuple=True)
        if a_all.numel() == 0:
            if c.history:
                c.hist_parts.append(([], 0))
            return
        dev, dt = c.device, c.dtype
        solver = c.solver
        tol = default_tol(solver, dt) if c.tol is None else c.tol
        max_iter = c.max_iter
        if max_iter is None and solver == "newton":
            max_iter = default_max_iter("newton", quadratic=False)
        t = float(c.huber_t)
        Q = torch.zeros((p, p), dtype=dt, device=dev)
        q_all = c0_all = None
        if c.prior is not None:
            Qw, q_all, c0_all = c.prior_terms(0, A)  # (p, p), (A or 1, 1, p), (A or 1, 1)
            Q = Qw.to(device=dev, dtype=dt)
        L = c.bounds.max_length()
        nb = c.chunk_size or block_pairs(L, torch.empty((), dtype=dt).element_size(), dev)
        starts = list(range(0, a_all.numel(), nb))
        y_src = c.y.to(dev) if dev.type == "cuda" else c.y  # gathered where it lives
        hists: list[list[float]] = [[] for _ in starts]

        def run(bi: int) -> None:
            i0 = starts[bi]
            ai, ti = a_all[i0 : i0 + nb], t_all[i0 : i0 + nb]
            rows = gather_rows(y_src, c.ytf, c.xtf.x, c.x_valid, c.bounds, c.decay, ai, ti, dev, dt)
            N = ai.numel()
            full = bool(rows.valid.all())
            if full and c.decay == 1.0:
                w = None
            elif full:  # every pair has the same row weights: one shared row
                w = rows.w[:1]
            else:
                w = rows.w
            aid = ai.to(dev)
            if q_all is None:
                q = torch.zeros((N, p), dtype=dt, device=dev)
                c0 = torch.zeros(N, dtype=dt, device=dev)
            else:
                assert c0_all is not None
                pick = aid if q_all.shape[0] > 1 else torch.zeros_like(aid)
                q, c0 = q_all[pick, 0].to(dt), c0_all[pick, 0].to(dt)
            u2 = None if c.ytf.scale is None else c.ytf.scale.to(dev)[aid].square().to(dt)
            blk = _Block(
                rows.y, rows.x, w, median_fill(rows.valid, dt), rows.n, q, c0, c.intercept, u2=u2
            )
            res = _solve_block(blk, Q, t, solver, tol, max_iter, c.intercept, c.history)
            units = c.pair_units(aid)
            write_pair_statistics(
                out,
                ai,
                ti,
                res["theta"],
                res["rss"],
                res["tss"],
                rows.n,
                res["ginv"],
                units,
                res["ok"],
                se_sigma2=res["se2"],
            )
            ao, to = ai.to(out.converged.device), ti.to(out.converged.device)
            out.converged[ao, to] = res["ok"].to(out.converged.device)
            out.n_iter[ao, to] = res["n_iter"].to(out.converged.device)
            hists[bi] = res["hist"]

        workers = torch.get_num_threads() if dev.type == "cpu" else 1
        if workers > 1 and len(starts) > 1:
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    list(pool.map(run, range(len(starts))))
            finally:
                torch.set_num_threads(workers)
        else:
            for bi in range(len(starts)):
                run(bi)
        if c.history:
            L_ = max((len(h) for h in hists), default=0)
            tot = [sum(h[min(i, len(h) - 1)] for h in hists if h) for i in range(L_)]
            c.hist_parts.append((tot, int(a_all.numel())))
