"""Device and precision choice, and how many assets to process at once.

``pick_device("auto")`` prefers CUDA, then Apple MPS, then the CPU. ``default_dtype`` is
float64 on the CPU (cheap there, and exact enough for 1e-8 agreement with statsmodels) and
float32 on accelerators (where float64 is slow or missing). ``auto_chunk`` turns a memory
budget into a number of assets per chunk, so peak memory does not grow with the universe.
"""

from __future__ import annotations

import torch

#: Working-memory budget per chunk when the caller gives none (bytes).
CPU_CHUNK_BUDGET = 768 * 2**20
#: On the CPU, elementwise passes are much faster when one (assets × dates) slice of the chunk
#: stays in cache: aim for about this many elements per slice (~2 MB in float64).
CPU_CACHE_ELEMENTS = 2**18
GPU_CHUNK_FRACTION = 0.25  # of the free device memory


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """Resolve ``"auto"`` (CUDA, then MPS, then CPU) or any torch device spec."""
    if device is None or (isinstance(device, str) and device == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)  # ValueError / RuntimeError for a string torch cannot parse
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} requested but torch sees no CUDA device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={str(device)!r}: torch sees {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device={str(device)!r} requested but torch sees no Apple MPS device")
    elif dev.type != "cpu":
        raise ValueError(f"device={str(device)!r}: quantfit computes on 'cpu', 'cuda' or 'mps'")
    return dev


def default_dtype(device: torch.device) -> torch.dtype:
    """float64 on the CPU, float32 on GPUs (MPS has no float64 at all)."""
    return torch.float64 if device.type == "cpu" else torch.float32


def bytes_per_asset(n_dates: int, n_params: int, itemsize: int, iterative: bool) -> int:
    """Rough peak working memory of one asset's column through the engine (bytes).

    Per date: the window-sum series (Gram triangle, z·y, y·y, counts), about four live copies
    of them during the block cumulative sums (heads, tails and their reversals), the parameter-major Gram and its Cholesky factor,
    and the few (p,)-vectors of the solver (θ, gradient, and for L-BFGS its history).
    """
    p = n_params
    n_series = p * (p + 1) // 2 + p + 3
    per_date = 4 * n_series + 2 * p * p + (8 + (4 * 5 if iterative else 0)) * p + 8
    return per_date * n_dates * itemsize


def auto_chunk(
    n_assets: int,
    n_dates: int,
    n_params: int,
    dtype: torch.dtype,
    device: torch.device,
    iterative: bool,
) -> int:
    """Assets per chunk: within the memory budget and, on the CPU, cache-sized."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    per_asset = bytes_per_asset(n_dates, n_params, itemsize, iterative)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = int(free * GPU_CHUNK_FRACTION)
        return int(max(1, min(n_assets, budget // max(per_asset, 1))))
    by_memory = CPU_CHUNK_BUDGET // max(per_asset, 1)
    by_cache = max(8, CPU_CACHE_ELEMENTS // max(n_dates, 1))
    return int(max(1, min(n_assets, by_memory, by_cache)))
