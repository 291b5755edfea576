"""Robust (Huber) regressions in every window: statsmodels ``RLM(norm=HuberT(t))``, batched.

The estimator, per window (rows with y and every factor present, row weights w_s from the
half-life, 1 without one):

    θ̂ minimizes  Σ_s w_s · s² · ρ_t((y_s − z_sᵀθ) / s)  [+ ½λ‖β − b0‖², see penalty.py]
    s  = median_s |y_s − z_sᵀθ̂| / Φ⁻¹(3/4)        (the scale of the final residuals)

with Huber's ρ_t (quadratic within ±t, linear outside) — the fixed point of statsmodels' RLM
with its defaults (``scale_est="mad"``, which is ``mad(resid, center=0)``, re-estimated at every
step). It needs each window's raw rows, not moments: the (asset, window) pairs to estimate are
gathered into flat blocks ``(N, W)`` (y, each factor, the valid mask), a block at a time, sized
by a memory budget, on the compute device. Missing rows carry weight 0 and are left out of the
median (they are padded with −1 / +inf in equal numbers so the middle of the padded row is the
median of the valid ones).

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

Statistics: ``stderr`` is RLM's default ``H1`` covariance,
``k² · [Σ ψ(u)² s²/(n − p)] / m² · (Σ w z zᵀ + Q)⁻¹`` with ``m = mean ψ'(u)``,
``k = 1 + p'/n · var ψ'(u) / m²`` (p' = p with an intercept, p + 1 without, as statsmodels'
``df_model + 1``); sums over the rows are w-weighted when a half-life is set. ``r2`` and
``resid_vol`` are computed from the robust residuals as for least squares (1 − RSS/TSS and
√(RSS/(n − p))). Row weights w and a prior Q enter as stated (statsmodels has neither).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

from quantfit.engine.linalg import cholesky, inverse, solve
from quantfit.engine.moments import centred_tss
from quantfit.engine.objectives import jacobi_gershgorin
from quantfit.engine.solvers import default_max_iter, default_tol, run_solver

MAD_C = 0.6744897501960817  # Φ⁻¹(3/4): the MAD of a standard normal
SWITCH_ITER = 10  # newton steps before the open windows fall back to IRLS steps
MAX_OUTER = 50  # scale re-estimations for the first-order solvers
CPU_BLOCK_ELEMENTS = 2**18  # (pairs × rows) per block on the CPU (cache-sized)
GPU_BLOCK_FRACTION = 0.25  # of the free device memory, across ~16 live (N, W) arrays
COMPACT_BELOW = 0.9  # drop finished pairs from a block when fewer than this share are open


class _Block:
    """One flat block of (asset, window) pairs.

    y (N, W) with 0 at missing rows; x: k factor columns (N, W), 0 at missing rows; c (N, W)
    or (1, W) or None: row weight × valid flag (None = all ones); fill (N, W) or None: the value
    a missing row takes in the median (−1 or +inf, NaN at valid rows); n (N,) valid rows;
    q (N, p) / c0 (N,) the prior's linear and constant terms (zeros without a prior).
    D (N, m, W): the c-weighted design columns z (p) then the products x_i·x_j (i ≤ j), so one
    ``bmm`` gives every Σ c·v·z and Σ c·h·z zᵀ of a step.
    """

    def __init__(self, y, x, c, fill, n, q, c0, intercept, D=None):
        self.y, self.x, self.c, self.fill, self.n, self.q, self.c0 = y, x, c, fill, n, q, c0
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

    def take(self, idx: Tensor) -> "_Block":
        sub = lambda v: None if v is None else (v if v.shape[0] == 1 else v[idx])  # noqa: E731
        return _Block(self.y[idx], [v[idx] for v in self.x], sub(self.c), sub(self.fill),
                      self.n[idx], self.q[idx], self.c0[idx], self.intercept, self.D[idx])

    def weighted(self, v: Tensor) -> Tensor:
        return v if self.c is None else v * self.c

    def residual(self, theta: Tensor) -> Tensor:  # y − zᵀθ, (N, W)
        ic = int(self.intercept)
        r = self.y - theta[:, :1] if ic else self.y.clone()
        for j, xj in enumerate(self.x):
            r.addcmul_(xj, theta[:, j + ic, None], value=-1.0)
        return r

    def sums(self, v: Tensor, h: Tensor | None = None, Q: Tensor | None = None):
        """(Σ c·v·z (N, p), Σ c·h·z zᵀ + Q (N, p, p) or None) in one bmm."""
        V = v[:, None] if h is None else torch.stack((v, h), 1)
        S = torch.bmm(V, self.D.mT)  # (N, 1|2, m)
        g = S[:, 0, :self.p]
        if h is None:
            return g, None
        G = S[:, 1, self.gidx].reshape(-1, self.p, self.p)
        return g, G if Q is None else G + Q

    def gram(self, Q: Tensor) -> Tensor:  # Σ c z zᵀ + Q
        return self.sums(torch.zeros_like(self.y), torch.ones_like(self.y), Q)[1]

    def median_abs(self, a: Tensor, prev: Tensor | None = None) -> Tensor:
        """median over the valid rows of a = |r| (the mean of the middle two for an even count).

        With ``prev`` (a nearby value, e.g. the last iteration's median) the middle order
        statistics are read off the counts around it when ``prev`` still splits the rows in the
        middle (two masked reductions, no selection); the other rows take the full median.
        """
        if self.fill is not None:
            a = torch.where(self.fill.isnan(), a, self.fill)
        n = self.n
        if prev is None:
            return self._median(a, n)
        p_ = prev[:, None]
        le = a <= p_
        cnt = le.sum(-1)
        if self.fill is not None:
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
            med = med.index_put((idx,), self._median(a[idx], n[idx]))
        return med

    @staticmethod
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


def _state(blk: _Block, theta: Tensor, Q: Tensor, t: float, prev: Tensor | None = None,
           hess: str | None = None):
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
    g = (theta @ Q - blk.q) - S[:, 0, :blk.p]
    H = None if hess is None else S[:, 1, blk.gidx].reshape(N, blk.p, blk.p) + Q
    return r, a, s, ts, g, H


def _finish(blk, theta, r, a, s, ts, Q, intercept, sums, res, idx):
    """Statistics of the (converged) pairs of ``blk``, written into ``res`` at ``idx``."""
    n = blk.n.to(theta.dtype)
    p = blk.p
    one = torch.ones_like(blk.y)
    sw = blk.weighted(one).sum(-1)
    rss = blk.weighted(r * r).sum(-1)
    sy = blk.weighted(blk.y).sum(-1)
    tss = centred_tss(blk.weighted(blk.y * blk.y).sum(-1), sy, 1.0 / sw)  # NaN: y constant
    inside = (a <= ts).to(theta.dtype)
    if blk.fill is not None:
        inside = inside * blk.fill.isnan()
    m = blk.weighted(inside).sum(-1) / sw
    var_dpsi = m - m * m
    pdf = p + (0 if intercept else 1)
    k = 1 + pdf / n * var_dpsi / (m * m)
    psi_s = torch.minimum(torch.maximum(r, -ts), ts)  # s·ψ(r/s)
    ss_psi_s2 = blk.weighted(psi_s * psi_s).sum(-1)  # Σ ψ² · s²
    dof = n - p
    factor = k * k * ss_psi_s2 / dof / (m * m)
    ch = cholesky(blk.gram(Q))
    ginv = inverse(ch)  # (N, p, p)
    ok = ch.ok & (dof > 0)
    nan = torch.full_like(rss, math.nan)
    res["coef"][idx] = torch.where(ok[:, None], theta, math.nan)
    se = torch.stack([ginv[:, i, i] for i in range(p)], -1) * factor[:, None]
    res["stderr"][idx] = torch.where(ok[:, None], se.clamp_min(0).sqrt(), math.nan)
    res["r2"][idx] = torch.where(ok, 1 - rss / tss, nan)
    res["resid_vol"][idx] = torch.where(ok, (rss / dof.clamp_min(1)).sqrt(), nan)
    res["converged"][idx] = ok
    for gi, grp in enumerate(sums):
        cs = sum(theta[:, i] for i in grp)
        vs = sum(ginv[:, i, j] for i in grp for j in grp) * factor
        res["sum_coef"][gi, idx] = torch.where(ok, cs, nan)
        res["sum_stderr"][gi, idx] = torch.where(ok, vs.clamp_min(0).sqrt(), nan)


def _solve_block(blk: _Block, Q: Tensor, t: float, solver: str, tol: float, max_iter: int | None,
                 intercept: bool, sums, record: bool) -> dict:
    N, p = blk.y.shape[0], blk.p
    dt, dev = blk.y.dtype, blk.y.device
    res = {"coef": torch.full((N, p), math.nan, dtype=dt, device=dev),
           "stderr": torch.full((N, p), math.nan, dtype=dt, device=dev),
           "r2": torch.full((N,), math.nan, dtype=dt, device=dev),
           "resid_vol": torch.full((N,), math.nan, dtype=dt, device=dev),
           "converged": torch.zeros(N, dtype=torch.bool, device=dev),
           "n_iter": torch.ones(N, dtype=torch.int32, device=dev),
           "sum_coef": torch.full((len(sums), N), math.nan, dtype=dt, device=dev),
           "sum_stderr": torch.full((len(sums), N), math.nan, dtype=dt, device=dev)}
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
        ids, theta, blk, inv_diag, thresh2 = ids[sel], theta[sel], blk.take(sel), inv_diag[sel], thresh2[sel]
    frozen = torch.zeros((), dtype=dt, device=dev)  # Σ final values of the pairs that left
    open_ = torch.ones(ids.shape, dtype=torch.bool, device=dev)
    first_order = solver != "newton"
    inner_iter, last = (max_iter, MAX_OUTER) if first_order else (None, max_iter)
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
            hist.append(float(frozen + v[open_].sum()))
            frozen = frozen + v[done].sum()
        if bool(conv.any()):
            sel = conv.nonzero()[:, 0]
            _finish(blk.take(sel), theta[sel], r[sel], a[sel], s[sel], ts[sel], Q, intercept,
                    sums, res, ids[sel])
        open_ = open_ & ~done
        n_open = int(open_.sum())
        if n_open == 0:
            break
        if n_open < COMPACT_BELOW * ids.numel() or (first_order and n_open < ids.numel()):
            sel = open_.nonzero()[:, 0]
            ids, theta, blk, inv_diag, thresh2, open_ = (
                ids[sel], theta[sel], blk.take(sel), inv_diag[sel], thresh2[sel], open_[sel])
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


def _block_pairs(W: int, p: int, itemsize: int, device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(1, int(free * GPU_BLOCK_FRACTION) // (16 * W * itemsize))
    return max(16, CPU_BLOCK_ELEMENTS // W)


def rolling_huber(y: Tensor, x: Tensor, spec, device: torch.device, dtype: torch.dtype,
                  out_device="cpu") -> dict:
    """Huber fits of every asset of ``y`` (A, T) on ``x`` (T, k) in trailing windows of
    ``spec.window`` rows. Returns host tensors: coef/stderr (p, A, T), r2/resid_vol/nobs/
    converged/n_iter (A, T), sum_coef/sum_stderr (len(spec.sums), A, T), history (1-D or None).
    """
    A, T = y.shape
    k = x.shape[1]
    W = spec.window
    p = k + int(spec.intercept)
    t = float(spec.huber_t)
    solver = spec.solver
    tol = default_tol("newton" if solver == "newton" else solver, dtype) if spec.tol is None else spec.tol
    max_iter = spec.max_iter
    if max_iter is None and solver == "newton":
        max_iter = default_max_iter("newton", quadratic=False)
    sums = tuple(tuple(g) for g in getattr(spec, "sums", ()) or ())
    x = x.to(torch.float64)
    x_valid = torch.isfinite(x).all(1)
    y_valid = torch.isfinite(y) & x_valid[None, :]
    # nobs of every window (rows before the data count as missing)
    cs = torch.nn.functional.pad(y_valid.to(torch.int64).cumsum(1), (1, 0))  # (A, T + 1)
    lo = (torch.arange(T) + 1 - W).clamp_min(0)
    nobs = cs[:, 1:] - cs[:, lo]
    nobs = nobs.to(torch.int32)
    est = nobs >= max(spec.min_obs, p)
    a_all, t_all = est.nonzero(as_tuple=True)
    f64 = dict(dtype=torch.float64, device=out_device)
    out = {"coef": torch.full((p, A, T), math.nan, **f64), "stderr": torch.full((p, A, T), math.nan, **f64),
           "r2": torch.full((A, T), math.nan, **f64), "resid_vol": torch.full((A, T), math.nan, **f64),
           "nobs": nobs.to(out_device), "converged": torch.zeros((A, T), dtype=torch.bool, device=out_device),
           "n_iter": torch.zeros((A, T), dtype=torch.int32, device=out_device),
           "sum_coef": torch.full((len(sums), A, T), math.nan, **f64),
           "sum_stderr": torch.full((len(sums), A, T), math.nan, **f64), "history": None}
    if a_all.numel() == 0:
        if spec.history:
            out["history"] = torch.zeros(0, dtype=torch.float64)
        return out
    # Padded, unfolded views on the device: window t holds rows t − W + 1 .. t.
    yp = torch.nn.functional.pad(y.to(device=device, dtype=dtype), (W - 1, 0), value=math.nan)
    xp = torch.nn.functional.pad(x.T.to(device=device, dtype=dtype), (W - 1, 0), value=math.nan)
    vp = torch.nn.functional.pad(y_valid.to(device), (W - 1, 0), value=False)
    yu, xu, vu = yp.unfold(1, W, 1), xp.unfold(1, W, 1), vp.unfold(1, W, 1)  # (A|k, T, W)
    decay = 1.0 if spec.halflife is None else 0.5 ** (1.0 / spec.halflife)
    wrow = (decay ** torch.arange(W - 1, -1, -1, dtype=torch.float64)).to(device=device, dtype=dtype)[None]
    Q = torch.zeros((p, p), dtype=dtype, device=device)
    b0 = None
    if getattr(spec, "prior_strength", 0.0) and spec.prior is not None:
        lam = float(spec.prior_strength)
        for i in range(int(spec.intercept), p):
            Q[i, i] = lam
        b0 = spec.prior.to(device=device, dtype=dtype)  # (A or 1, k)
    itemsize = torch.empty((), dtype=dtype).element_size()
    nb = spec.chunk_size or _block_pairs(W, p, itemsize, device)
    starts = list(range(0, a_all.numel(), nb))
    hists: list[list[float]] = [[] for _ in starts]
    a_all_d, t_all_d = a_all.to(device), t_all.to(device)

    def run(bi: int) -> None:
        i0 = starts[bi]
        ai, ti = a_all_d[i0:i0 + nb], t_all_d[i0:i0 + nb]
        valid = vu[ai, ti]  # (N, W)
        yv = torch.where(valid, yu[ai, ti], 0.0)
        xs = [torch.where(valid, xu[j][ti], 0.0) for j in range(k)]
        n = valid.sum(-1)
        if bool(valid.all()):
            c, fill = (None if spec.halflife is None else wrow), None
        else:
            c = wrow * valid
            miss = ~valid
            m = W - n
            n_low = (m + W % 2) // 2
            rank = miss.cumsum(-1)
            fill = torch.where(miss, torch.where(rank <= n_low[:, None], -1.0, math.inf), math.nan).to(dtype)
        if b0 is None:
            q = torch.zeros((ai.numel(), p), dtype=dtype, device=device)
            c0 = torch.zeros(ai.numel(), dtype=dtype, device=device)
        else:
            tb = b0[ai] if b0.shape[0] > 1 else b0.expand(ai.numel(), -1)
            q = torch.zeros((ai.numel(), p), dtype=dtype, device=device)
            q[:, int(spec.intercept):] = spec.prior_strength * tb
            c0 = 0.5 * spec.prior_strength * tb.square().sum(-1)
        blk = _Block(yv, xs, c, fill, n, q, c0, spec.intercept)
        res = _solve_block(blk, Q, t, solver, tol, max_iter, spec.intercept, sums, spec.history)
        ao, to = ai.to(out_device), ti.to(out_device)
        out["coef"][:, ao, to] = res["coef"].T.to(**f64)
        out["stderr"][:, ao, to] = res["stderr"].T.to(**f64)
        for key in ("r2", "resid_vol"):
            out[key][ao, to] = res[key].to(**f64)
        out["converged"][ao, to] = res["converged"].to(out_device)
        out["n_iter"][ao, to] = res["n_iter"].to(out_device)
        if sums:
            out["sum_coef"][:, ao, to] = res["sum_coef"].to(**f64)
            out["sum_stderr"][:, ao, to] = res["sum_stderr"].to(**f64)
        hists[bi] = res["hist"]

    workers = torch.get_num_threads() if device.type == "cpu" else 1
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
    if spec.history:
        L = max((len(h) for h in hists), default=0)
        tot = [sum(h[min(i, len(h) - 1)] for h in hists if h) for i in range(L)]
        out["history"] = torch.tensor(tot, dtype=torch.float64) / a_all.numel()
    return out
