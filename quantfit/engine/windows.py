"""Trailing windows and their sums: every sum only ever adds rows that lie inside the window.

Conventions
-----------
* Dates run along the **last** dimension of every series, ``(..., T)``.
* Window ``t`` holds the rows ``lo[t] .. t`` (``WindowBounds``): ``lo[t] = t − W + 1`` (cut at
  row 0) for a fixed window of W rows, ``0`` for an expanding one, any non-decreasing
  ``lo`` for windows of varying length (e.g. a calendar lookback).
* A window is its first and last row: by default there is one window ending at every row
  (n = T windows); ``hi`` (increasing last rows) keeps only some of them, e.g. the last
  trading day of every month. The rows are still summed once (O(T)); everything per window
  (solves, statistics, results) then costs O(n).
* Row ``s`` of the window ending at row ``e`` has weight ``decay ** (e − s)`` (``decay = 1``:
  equal weights): age counts rows.

Why no subtraction (exactness)
------------------------------
A window sum taken as a difference of two prefix sums, or as a block total minus a partial
sum, carries rows that are *outside* the window and cancels them again; one huge value (a bad
tick of 1e8, a −99.99 missing-value code) then leaves rounding errors of its own size in
windows far away from it. Here a window is cut at one block boundary ``e`` into the tail of
the block before (``lo .. e − 1``: a reverse cumulative sum within that block) and the head of
the block after (``e .. t``: a forward cumulative sum within that block) — van Herk / Gil-Werman.
Both parts only contain rows of the window, so a value affects the windows that contain it
and nothing else, and float32 keeps its relative precision on any length of history.

Fixed windows use blocks of W rows (every window either crosses one boundary or is one
block). Windows of varying length use blocks of B = the longest window and a second blocking
shifted by ⌈B/2⌉: a window longer than ⌈B/2⌉ crosses a boundary of one of them. The rare
shorter windows are summed directly from their rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

#: Rescaling factors inside a decayed cumulative sum stay below 2**_RESCALE_BITS.
_RESCALE_BITS = 30


def decay_from_halflife(halflife: float | None) -> float:
    """``0.5 ** (1 / halflife)``, or 1.0 (no decay) for ``None``."""
    return 1.0 if halflife is None else 0.5 ** (1.0 / halflife)


@dataclass(frozen=True)
class WindowBounds:
    """Which rows each window holds: window ``j`` is rows ``lo[j] .. hi[j]`` of ``T`` rows.

    length : W for fixed windows (``lo = max(0, hi − W + 1)``), None otherwise.
    lo : (n,) int64, the first row of every window, for windows of varying length; None for
        fixed and expanding windows.
    hi : (n,) int64, the last row of every window (increasing), or None: a window ends at every
        row (n = T, ``hi[t] = t``).
    """

    T: int
    length: int | None = None
    lo: Tensor | None = None
    hi: Tensor | None = None

    @classmethod
    def fixed(cls, T: int, length: int, hi: Tensor | None = None) -> WindowBounds:
        """Windows of ``length`` rows ending at every row, or at the rows ``hi``."""
        return cls(T, int(length), None, _ends(hi, T))

    @classmethod
    def expanding(cls, T: int, hi: Tensor | None = None) -> WindowBounds:
        """Every row up to each row, or up to each of the rows ``hi``."""
        return cls(T, None, None, _ends(hi, T))

    @classmethod
    def variable(cls, lo: Tensor, hi: Tensor | None = None, T: int | None = None) -> WindowBounds:
        """Windows ``lo[j] .. hi[j]``. Without ``hi``: one window ending at every row,
        ``lo`` (T,). With ``hi`` (n,) increasing last rows ``0 <= hi[j] < T`` (``T``, the number
        of rows, must then be given). ``lo`` non-decreasing with ``0 <= lo[j] <= hi[j] + 1``
        (``lo[j] = hi[j] + 1``: an empty window)."""
        lo = torch.as_tensor(lo, dtype=torch.int64).cpu()
        if hi is None:
            T = lo.shape[0]
            last = torch.arange(T)
        else:
            if T is None:
                raise ValueError("WindowBounds.variable with hi= needs T (the number of rows)")
            ends = _ends(hi, T)
            assert ends is not None
            last = ends
            if last.shape != lo.shape:
                raise ValueError("window starts and ends must have the same length")
        if lo.numel() and not (
            bool((lo >= 0).all())
            and bool((lo <= last + 1).all())
            and bool((lo[1:] >= lo[:-1]).all())
        ):
            raise ValueError("window starts must be non-decreasing with 0 <= lo[j] <= hi[j] + 1")
        return cls(int(T), None, lo, None if hi is None else last)

    @property
    def expanding_(self) -> bool:
        return self.length is None and self.lo is None

    @property
    def n(self) -> int:
        """Number of windows (T unless ``hi`` keeps only some)."""
        return self.T if self.hi is None else int(self.hi.shape[0])

    def first_rows(self) -> Tensor:
        """(n,) int64: the first row of each window."""
        if self.lo is not None:
            return self.lo
        if self.length is None:
            return torch.zeros(self.n, dtype=torch.int64)
        return (self.last_rows() - self.length + 1).clamp_min(0)

    def last_rows(self) -> Tensor:
        """(n,) int64: the last row of each window."""
        return torch.arange(self.T) if self.hi is None else self.hi

    def startup(self, min_obs: int) -> int:
        """The number of leading windows that end before row ``min_obs − 1``: none of them
        can hold ``min_obs`` rows (callers skip them)."""
        if self.hi is None:
            return max(0, min(min_obs - 1, self.T))
        return int(torch.searchsorted(self.hi, torch.tensor(min_obs - 1)))

    def max_length(self) -> int:
        """Rows in the longest window."""
        if self.n == 0:
            return 0
        if self.lo is not None:
            return max(0, int((self.last_rows() - self.lo + 1).max()))
        return self.T if self.length is None else min(self.length, self.T)


def _ends(hi: Tensor | None, T: int) -> Tensor | None:
    """Window ends as (n,) int64 on the host, checked: increasing rows in [0, T)."""
    if hi is None:
        return None
    last = torch.as_tensor(hi, dtype=torch.int64).cpu()
    if last.numel() and not (
        bool((last[1:] > last[:-1]).all()) and int(last[0]) >= 0 and int(last[-1]) < T
    ):
        raise ValueError("window ends must be increasing rows in [0, T)")
    return last


def count_rows(rows: Tensor, bounds: WindowBounds) -> Tensor:
    """Number of ``rows`` (…, T) bool inside each window, (…, n) int32: an integer prefix
    count and its difference (integers subtract exactly)."""
    T = rows.shape[-1]
    c = torch.zeros(rows.shape[:-1] + (T + 1,), dtype=torch.int32, device=rows.device)
    torch.cumsum(rows, -1, dtype=torch.int32, out=c[..., 1:])
    lo = bounds.first_rows().to(rows.device)
    if bounds.hi is None:
        return c[..., 1:] - c.index_select(-1, lo)
    return c.index_select(-1, bounds.hi.to(rows.device) + 1) - c.index_select(-1, lo)


def decayed_cumsum_(z: Tensor, decay: float) -> Tensor:
    """In place: ``z[..., t] <- sum_{s <= t} decay**(t - s) * z[..., s]`` along the last dim.

    ``decay == 1`` is a plain cumulative sum. Otherwise the dates are cut into runs of ``c``
    rows with ``decay**-c <= 2**30``: inside a run the sum is a rescaled cumulative sum (no
    overflow, and rounding stays relative to the decayed sum itself), and the runs are chained
    by ``S_end(k) = decay**c * S_end(k-1) + local_end(k)`` in a short loop vectorized over
    everything else. Every term added is a row at or before ``t``.
    """
    if decay == 1.0:
        return z.cumsum_(-1)
    T = z.shape[-1]
    c = max(1, min(T, int(_RESCALE_BITS * math.log(2.0) / -math.log(decay))))
    n_runs = -(-T // c)
    zp = torch.nn.functional.pad(z, (0, n_runs * c - T)) if n_runs * c != T else z
    zr = zp.reshape(*z.shape[:-1], n_runs, c)
    r = torch.arange(c, device=z.device, dtype=z.dtype)
    up = torch.pow(decay, -r)
    loc = (zr * up).cumsum_(-1).mul_(1.0 / up)  # run-local decayed sums
    if n_runs > 1:
        ends = loc[..., -1]  # (..., n_runs)
        carry = torch.zeros_like(ends[..., 0])
        carries = []
        for k in range(n_runs):
            carries.append(carry)
            carry = carry * decay**c + ends[..., k]
        loc += torch.stack(carries, -1)[..., None] * torch.pow(decay, r + 1.0)
    z.copy_(loc.reshape(*z.shape[:-1], n_runs * c)[..., :T])
    return z


def padded_length(bounds: WindowBounds) -> int:
    """Length the date axis of a buffer given to ``window_sums_`` must have (zero-padded)."""
    T, W = bounds.T, bounds.length
    if W is None or W >= T:
        return T
    return -(-T // W) * W


def window_sums_(z: Tensor, bounds: WindowBounds, decay: float = 1.0) -> Tensor:
    """Decayed window sums along the last dim:
    ``out[..., j] = Σ_{s=lo[j]}^{hi[j]} decay**(hi[j]−s)·z[..., s]``.

    ``z``'s last dim must be ``padded_length(bounds)`` (rows past T zero); the result is
    written into ``z`` (its first n positions, one per window) and returned. Only rows inside
    each window are ever added (see the module docstring), so no window depends on a value
    outside it.
    """
    T, W = bounds.T, bounds.length
    if bounds.lo is None:
        if W is None or W >= T:  # expanding (or one window's worth)
            decayed_cumsum_(z, decay)
        else:
            _fixed_sums_(z, W, decay)
        if bounds.hi is not None:  # the windows kept: one gather of their columns
            z[..., : bounds.n].copy_(z[..., :T].index_select(-1, bounds.hi.to(z.device)))
        return z
    out = _variable_sums(z[..., :T], bounds.lo.to(z.device), bounds.last_rows().to(z.device), decay)
    z[..., : bounds.n].copy_(out)
    return z


def _tail_sums(zb: Tensor, decay: float) -> Tensor:
    """Reverse cumulative sums within blocks: ``R[..., b, r] = Σ_{u=r}^{B−1} decay**(B−1−u)·z[b, u]``
    for blocks ``zb`` (..., nb, B), i.e. the block's tail from r, weighted by age at the block end."""
    B = zb.shape[-1]
    rev = torch.flip(zb, (-1,))  # rev[b, j] = z[b, B − 1 − j]: age j at the block end
    if decay != 1.0:
        rev.mul_(torch.pow(decay, torch.arange(B, device=zb.device, dtype=zb.dtype)))
    return torch.flip(rev.cumsum_(-1), (-1,))


def _fixed_sums_(z: Tensor, W: int, decay: float) -> Tensor:
    """Windows of W rows on blocks of W rows: window t = (b+1)W + r (r < W − 1) is the tail of
    block b from r + 1 plus the head of block b + 1 up to r; at r = W − 1 it is block b + 1."""
    Tp = z.shape[-1]
    nb = Tp // W
    zb = z.view(*z.shape[:-1], nb, W)
    tails = _tail_sums(zb[..., :-1, 1:], decay) if nb > 1 and W > 1 else None
    decayed_cumsum_(zb, decay)  # heads: forward sums inside each block
    if tails is not None:
        head = zb[..., 1:, : W - 1]
        if decay != 1.0:  # the tail's rows are r + 1 rows older at the window's end
            tails.mul_(torch.pow(decay, torch.arange(1, W, device=z.device, dtype=z.dtype)))
        head += tails
    return z


def _blocked(z: Tensor, B: int, offset: int) -> tuple[Tensor, int]:
    """z (..., T) zero-padded so that block boundaries fall at offset + kB: (..., nb, B), front pad."""
    T = z.shape[-1]
    front = (B - offset) % B
    n = -(-(T + front) // B) * B
    zp = torch.nn.functional.pad(z, (front, n - T - front))
    return zp.view(*z.shape[:-1], n // B, B), front


def _variable_sums(z: Tensor, lo: Tensor, t: Tensor, decay: float) -> Tensor:
    """Windows ``lo[j] .. t[j]`` of varying length, (..., n) (see the module docstring)."""
    dev, dt = z.device, z.dtype
    n = t - lo + 1  # rows per window (0 = empty)
    out = torch.zeros(z.shape[:-1] + t.shape, dtype=dt, device=dev)
    done = n <= 0
    B = int(n.max()) if n.numel() else 0
    if B >= 1:
        for offset in (0, -(-B // 2)):
            if bool(done.all()):
                break
            zb, front = _blocked(z, B, offset)
            heads = decayed_cumsum_(zb.clone(), decay).flatten(-2)  # (..., n)
            tails = _tail_sums(zb, decay).flatten(-2)
            tp, lp = t + front, lo + front  # positions in the padded series
            lp = lp.clamp_max(heads.shape[-1] - 1)  # an empty window's start may lie past the end
            bt, bl = tp // B, lp // B
            start_t = bt * B  # first row of t's block
            same = (bt == bl) & ((lp == start_t) | (tp == start_t + B - 1)) & ~done
            cross = (bt == bl + 1) & ~done
            # within one block: from its start (a head) or to its end (a tail)
            head_only = same & (lp == start_t)
            tail_only = same & ~head_only
            for mask, part in (
                (head_only, heads.index_select(-1, tp)),
                (tail_only, tails.index_select(-1, lp)),
            ):
                if bool(mask.any()):
                    out = torch.where(mask, part, out)
            if bool(cross.any()):
                age = (tp - start_t + 1).to(dt)  # the tail's end is this many rows before t
                w = torch.pow(torch.tensor(decay, dtype=dt, device=dev), age)
                both = heads.index_select(-1, tp) + tails.index_select(-1, lp) * w
                out = torch.where(cross, both, out)
            done = done | same | cross
    for j in torch.nonzero(~done).flatten().tolist():  # short windows: their rows directly
        a, e = int(lo[j]), int(t[j])
        w = torch.pow(
            torch.tensor(decay, dtype=dt, device=dev),
            torch.arange(e - a, -1, -1, device=dev, dtype=dt),
        )
        out[..., j] = (z[..., a : e + 1] * w).sum(-1)
    return out
