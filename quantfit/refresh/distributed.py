"""Running the nightly job's group tasks on a Dask cluster (``quantfit refresh --dask ADDRESS``).

Nothing here is imported unless ``--dask`` (or ``client=``) is used, so Dask is optional
(``pip install "quantfit[dask]"``).

* ``connect(address)``: ``"local:N"`` starts a ``LocalCluster`` of N worker processes with one
  thread each (stopped again when the job ends); anything else is a scheduler address
  (``tcp://host:8786``), reached within ``CONNECT_TIMEOUT`` seconds or refused with
  ``DataError`` (exit 2, one line).
* ``run_dask(client, ctx, work, old, bar)``: one Dask task per asset group. The job context
  (calendar, regressors, fit options: a few hundred KB) is scattered once to every worker;
  each task reads its group's prices from the store itself, writes its part files into the
  result set directory and returns a small ``GroupResult``. So the store and the output must
  be on a file system every worker sees. Only the driver commits the manifest: a worker killed
  mid-task has its task rerun by Dask elsewhere (the half-written files it leaves are named
  in no manifest and removed by the next run); a killed driver commits nothing.
* Workers run torch with one thread (Dask's nanny already sets ``OMP_NUM_THREADS=1``) and
  glibc's allocator set back to serving tensors from its heap (``tune_malloc``); on GPU
  workers (``dask_cuda.LocalCUDACluster``: one process per GPU, each seeing its own device as
  ``cuda:0``) ``device="auto"`` fits on that worker's GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
from pathlib import Path
from typing import Iterable, Iterator

from quantfit.errors import DataError
from quantfit.refresh.plan import GroupWork
from quantfit.refresh.task import GroupResult, JobContext, check_inputs, run_group
from quantfit.results_store.overlays import GroupFiles

log = logging.getLogger("quantfit.refresh")

#: Seconds to reach a scheduler before giving up (exit 2).
CONNECT_TIMEOUT = 5
#: Bytes of working memory per asset and row of a group task (about a dozen float64 arrays of
#: (assets × rows) alive at its peak), to size groups by the workers' memory limit.
BYTES_PER_CELL = 100


def _distributed():
    try:
        import distributed
    except ImportError:
        raise DataError("--dask needs Dask's distributed scheduler: pip install 'quantfit[dask]'") from None
    return distributed


def parse_address(address: str) -> tuple[str, int | str]:
    """``"local:N"`` -> ("local", N); a scheduler address -> ("remote", address)."""
    if not isinstance(address, str) or not address.strip():
        raise DataError(f"bad --dask address {address!r}: use local:N or tcp://host:port")
    address = address.strip()
    if address.startswith("local:"):
        n = address[len("local:"):]
        if not (n.isdigit() and 1 <= int(n) <= 512):
            raise DataError(f"bad --dask address {address!r}: local:N needs 1 <= N <= 512 workers")
        return "local", int(n)
    if "://" not in address and ":" not in address:
        raise DataError(f"bad --dask address {address!r}: use local:N or tcp://host:port")
    return "remote", address


@contextlib.contextmanager
def connect(address: str) -> Iterator:
    """A ``distributed.Client`` for ``address`` (see the module docstring), closed afterwards."""
    kind, where = parse_address(address)
    distributed = _distributed()
    if kind == "local":
        cluster = distributed.LocalCluster(n_workers=int(where), threads_per_worker=1,
                                           processes=True, dashboard_address=None,
                                           silence_logs=logging.ERROR)
        client = distributed.Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
        return
    try:
        client = distributed.Client(where, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise DataError(f"cannot reach the Dask scheduler at {where}: {exc}") from None
    try:
        yield client
    finally:
        client.close()


def worker_group_size(client, n_rows: int, default: int) -> int:
    """Assets per group so that a task fits in half of the smallest worker's memory limit."""
    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info().get("workers", {}).values()]
    limits = [m for m in limits if m > 0]
    if not limits:
        return default
    return int(max(50, min(default, min(limits) // 2 // (BYTES_PER_CELL * max(n_rows, 1)))))


def _task(ctx: JobContext, work: GroupWork, old: GroupFiles) -> GroupResult:
    """``run_group`` on a worker, with torch on one thread (the worker has one core) and
    glibc's allocator tuned for tensors (``tune_malloc``), after checking that the worker sees
    the driver's store and result set."""
    import torch
    torch.set_num_threads(1)
    tune_malloc()
    check_inputs(ctx)
    return run_group(ctx, work, old)


#: glibc's largest dynamic mmap threshold, and the free heap top it keeps before trimming.
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 64 * 2**20


@functools.cache
def tune_malloc() -> bool:
    """Let glibc's heap serve tensor-sized blocks again in a Dask worker process (once).

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` so that freed memory
    goes back to the OS. Setting it also freezes glibc's mmap threshold at 128 KiB, so every
    tensor of more than 128 KiB is a fresh ``mmap`` whose pages fault in one by one: the
    Huber fit, which allocates many such temporaries per iteration, ran 2.4x slower. Raise the
    mmap threshold to the 32 MiB glibc itself reaches dynamically, and trim only when 64 MiB
    lie free at the heap's top. False where this is not glibc (nothing to do)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD)
                    and libc.mallopt(m_trim_threshold, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False


def run_dask(client, ctx: JobContext, work: list[GroupWork], old: dict[int, GroupFiles],
             bar) -> Iterable[GroupResult]:
    """The group tasks on ``client``'s cluster, yielded as they complete (feeding ``bar``)."""
    distributed = _distributed()
    ctx_future = client.scatter(ctx, broadcast=True, hash=False)
    futures = {
        client.submit(_task, ctx_future, w, old.get(w.group, GroupFiles()), pure=False,
                      key=f"quantfit-{Path(ctx.result_dir).name}-{ctx.generation}-group-{w.group}"): w
        for w in work
    }
    try:
        for fut in distributed.as_completed(futures):
            res = fut.result()
            bar.update(len(futures[fut].fit_from))
            yield res
    finally:
        for fut in futures:
            fut.cancel()
