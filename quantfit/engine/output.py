"""The engine's results: host tensors, and a small pool that lets a new fit reuse the memory of
results nobody holds any more.

Why a pool: a fit writes a few (assets × dates) float64 arrays (10 MB each for 500 × 2,520).
Memory freshly mapped from the kernel costs a page fault per 4 KB page on first touch, which on
a busy machine takes longer than computing the numbers. Result buffers are kept in a bounded
pool after their fit is gone (a buffer is free again exactly when only the pool references
it), so the next fit of the same size writes into memory that is already mapped. They come
from torch's allocator, in 4 KB pages: numpy asks the kernel for transparent huge pages, whose
first touch was slower on average on a shared VM (the kernel compacts memory to find them).
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

#: Idle result buffers kept for reuse (bytes, all buffers together; and how many at most).
POOL_BYTES = 512 * 2**20
POOL_BUFFERS = 64
#: A pooled buffer serves a request up to this factor smaller than itself.
REUSE_SLACK = 1.25

_NP = {
    torch.float64: np.float64,
    torch.float32: np.float32,
    torch.int32: np.int32,
    torch.bool: np.bool_,
}


class BufferPool:
    """Host buffers for results; ``empty`` hands out a free pooled buffer of the same size when
    there is one. Thread-safe."""

    def __init__(self, max_bytes: int = POOL_BYTES):
        self.max_bytes = max_bytes
        self._bufs: list[np.ndarray] = []
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        npdt = np.dtype(_NP[dtype])
        n = int(np.prod(shape)) * npdt.itemsize
        with self._lock:
            buf = None
            for i in range(len(self._bufs)):
                # 2 = the list's reference + getrefcount's argument: nothing else holds it (a
                # result handed out is a view, which references its buffer). A buffer up to
                # REUSE_SLACK larger serves too, so fits of nearly equal sizes (chunks of a
                # universe) share buffers instead of each leaving its own in the pool.
                size = self._bufs[i].nbytes
                if n <= size <= n * REUSE_SLACK and sys.getrefcount(self._bufs[i]) == 2:
                    buf = self._bufs.pop(i)
                    break
            if buf is None:  # torch's allocator: 4 KB pages (see the module docstring)
                buf = torch.empty(n, dtype=torch.uint8).numpy()
            self._bufs.append(buf)  # most recently used last
            self._trim()
        return torch.from_numpy(buf[:n].view(npdt).reshape(shape))

    def _trim(self) -> None:
        total = sum(b.nbytes for b in self._bufs)
        i = 0
        while (total > self.max_bytes or len(self._bufs) > POOL_BUFFERS) and i < len(self._bufs):
            if sys.getrefcount(self._bufs[i]) == 2:  # idle: drop the oldest first
                total -= self._bufs.pop(i).nbytes
            else:
                i += 1

    def clear(self) -> None:
        with self._lock:
            self._bufs.clear()


POOL = BufferPool()


@dataclass
class RollingOutput:
    """Host float64 results of ``rolling_regression``; P = p + the summed terms.

    coef (P, A, T); se_factor (P, B, T) with B = 1 (shared by all assets) or A: the standard
    error of term i is ``se_sigma · se_factor[i]``, where ``se_sigma`` (A, T) is ``resid_vol``
    unless given (Huber). r2, resid_vol (A, T). nobs, converged, n_iter (A, T), possibly
    stride-0 broadcasts of one row shared by every asset (read-only in spirit: copy first).
    """

    coef: Tensor
    se_factor: Tensor
    r2: Tensor
    resid_vol: Tensor
    nobs: Tensor
    converged: Tensor
    n_iter: Tensor
    se_sigma: Tensor | None = None
    history: Tensor | None = None
    #: (asset, date) index pairs whose estimate was dropped after the flags were written
    #: (sums that overflowed): converged False and n_iter 0 there.
    dropped: list[tuple[Tensor, Tensor]] = field(default_factory=list)

    def stderr(self, i: int) -> Tensor:
        """(A, T) standard error of term i."""
        sigma = self.resid_vol if self.se_sigma is None else self.se_sigma
        return sigma * self.se_factor[i]

    def fill_startup(self, t0: int, assets: slice = slice(None)) -> None:
        """NaN in every float result of ``assets`` before row t0 (no window has min_obs rows)."""
        self.coef[:, assets, :t0] = float("nan")
        if self.se_factor.shape[1] != 1:
            self.se_factor[:, assets, :t0] = float("nan")
        for buf in (self.r2, self.resid_vol, self.se_sigma):
            if buf is not None:
                buf[assets, :t0] = float("nan")

    def drop(self, a_idx: Tensor, t_idx: Tensor) -> None:
        """No estimate at the (asset, date) pairs: NaN results, flags cleared at the end."""
        if a_idx.numel() == 0:
            return
        self.coef[:, a_idx, t_idx] = float("nan")
        for buf in (self.r2, self.resid_vol, self.se_sigma):
            if buf is not None:
                buf[a_idx, t_idx] = float("nan")
        self.dropped.append((a_idx.cpu(), t_idx.cpu()))

    def finish_flags(self, A: int) -> None:
        """Flags as (A, T): shared rows broadcast; per-asset copies where pairs were dropped."""
        T = self.coef.shape[-1]
        if self.dropped:
            self.converged = self.converged.expand(A, T).clone()
            self.n_iter = self.n_iter.expand(A, T).clone()
            for a, t in self.dropped:
                self.converged[a, t] = False
                self.n_iter[a, t] = 0
            self.dropped = []
        self.nobs, self.converged, self.n_iter = (
            f.expand(A, T) for f in (self.nobs, self.converged, self.n_iter)
        )
