"""Run the benchmark: every method on one workload, one row each, in one run.

``run_bench(config)`` builds the workload, computes the reference (``quantfit newton``,
float64, CPU), then measures each row and returns a ``BenchResult`` (rows + metadata).

What a row measures
-------------------
Three conditions, as a nightly job or a notebook sees them (every time divided by ``fraction``
when only a subset ran, ``extrapolated``; torch methods are synchronized before the clock
stops):

* ``first_s``: the first call in a fresh process (libraries imported, nothing run yet: no
  warm-up, no memory the method has used before);
* ``wall_s`` / ``best_s``: median / best of the ``repeats`` calls that follow (fewer when they
  exceed ``budget_s``);
* ``after_pandas_s``: one more call after the process has done other pandas work (the pandas
  peer's rolling computation, untimed), i.e. with the allocator's free memory reshuffled;
  skipped (None) for rows whose first call took longer than ``AFTER_PANDAS_MAX_S``.

``ratio_vs_pandas`` is pandas' ``wall_s`` over the row's; ``first_vs_pandas``,
``best_vs_pandas`` and ``after_vs_pandas`` compare the same condition of both rows.
* ``peak_mem_mb``: each row runs in a fresh child process (forked from a server that has
  already imported the libraries). After set-up and warm-up the child resets its peak resident
  set (``/proc/self/clear_refs``) and afterwards reads ``VmHWM``: the value is the peak
  resident memory the timed calls needed *above* what the process held before them (inputs,
  libraries), in MiB. It covers every allocator (numpy, torch, polars, Rust), unlike
  tracemalloc. Subset rows report the subset's peak (the loops run one regression at a time).
  On CUDA, ``peak_gpu_mb`` is ``torch.cuda.max_memory_allocated``. ``None`` when not isolated
  (``isolate=False``) or where /proc is not available.
* ``max_abs_dbeta``: max |β − β_ref| over the windows the row estimated; ``reference`` says
  against what (see ``peers.Job.reference``). ``rmse_vs_true``: RMS of β − the true β.
* ``transfer_s`` (CUDA only): host→device copy of y plus a device→host copy of the results'
  size, timed on their own; these copies are part of ``wall_s`` too.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from quantfit.bench.peers import HUBER, METHODS, PANDAS, RLM, Job, Options, PeerUnavailable
from quantfit.bench.workload import Workload, WorkloadSpec, make_workload

Clock = Callable[[], float]

#: Column order of a row.
FIELDS = ("name", "status", "wall_s", "ratio_vs_pandas", "first_s", "best_s", "after_pandas_s",
          "first_vs_pandas", "best_vs_pandas", "after_vs_pandas", "peak_mem_mb",
          "max_abs_dbeta", "reference", "rmse_vs_true", "extrapolated", "fraction", "repeats",
          "device", "transfer_s", "peak_gpu_mb", "note")
#: Rows whose first call takes longer than this skip the after-pandas call (seconds).
AFTER_PANDAS_MAX_S = 10.0


@dataclass
class BenchConfig:
    """What to run: the workload, timing settings, device, peer subset sizes, and which rows."""

    workload: WorkloadSpec
    repeats: int = 3
    budget_s: float = 20.0  # stop repeating a row once its timed calls took this long
    options: Options = field(default_factory=Options)
    rows: tuple[str, ...] = tuple(METHODS)
    isolate: bool = True  # one child process per row (needed for peak memory)
    preset: str = "custom"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["workload"] = self.workload.to_dict()
        d["rows"] = list(self.rows)
        return d


#: Named settings. quick = W1 (500 × 2,520, W = 252); full = W2 (5,000 × 5,040).
PRESETS: dict[str, BenchConfig] = {
    "tiny": BenchConfig(WorkloadSpec(20, 300, 63), repeats=2, budget_s=5.0, preset="tiny",
                        options=Options(rolling_ols_assets=3, rlm_windows=20, loop_windows=4)),
    "quick": BenchConfig(WorkloadSpec(500, 2520, 252), repeats=3, budget_s=20.0, preset="quick",
                         options=Options(rolling_ols_assets=10, rlm_windows=200, loop_windows=30)),
    "full": BenchConfig(WorkloadSpec(5000, 5040, 252), repeats=5, budget_s=60.0, preset="full",
                        options=Options(rolling_ols_assets=20, rlm_windows=500, loop_windows=50)),
}


def config_for(preset: str = "quick", *, device: str | None = None, assets: int | None = None,
               dates: int | None = None, window: int | None = None,
               repeats: int | None = None, rows: list[str] | None = None,
               isolate: bool | None = None) -> BenchConfig:
    """A preset with overrides; ``rows`` are names from ``peers.METHODS`` (validated)."""
    base = PRESETS[preset]
    w = base.workload
    spec = WorkloadSpec(assets or w.n_assets, dates or w.n_dates, window or w.window, w.seed)
    opts = replace(base.options, device=device or base.options.device)
    if rows is not None:
        unknown = [r for r in rows if r not in METHODS]
        if unknown:
            raise ValueError(f"unknown rows {unknown}; choose from {list(METHODS)}")
    return replace(base, workload=spec, options=opts, repeats=repeats or base.repeats,
                   rows=tuple(rows) if rows is not None else base.rows,
                   isolate=base.isolate if isolate is None else isolate)


@dataclass
class BenchResult:
    """Rows (dicts with ``FIELDS``), metadata (date, machine, versions, workload, command)
    and, when a scaling sweep ran, its points (see ``quantfit.bench.scaling``)."""

    rows: list[dict]
    meta: dict
    scaling: list[dict] = field(default_factory=list)

    def row(self, name: str) -> dict:
        return next(r for r in self.rows if r["name"] == name)


# ------------------------------------------------------------------------------ timing
def _sync(device: str | None) -> None:
    if device is not None and device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def time_repeats(fn: Callable[[], Any], repeats: int, budget_s: float, clock: Clock = time.perf_counter,
                 sync: Callable[[], None] = lambda: None) -> tuple[list[float], Any]:
    """Call ``fn`` up to ``repeats`` times (at least once; stop early once the calls took
    ``budget_s`` seconds in all). Returns the per-call seconds and the last output."""
    times: list[float] = []
    out = None
    for _ in range(max(1, repeats)):
        out = None  # let the previous output go before the next call allocates its own
        t0 = clock()
        out = fn()
        sync()
        times.append(clock() - t0)
        if sum(times) >= budget_s:
            break
    return times, out


def extrapolate(seconds: float, fraction: float) -> float:
    """Seconds for the whole workload from seconds for ``fraction`` of its regressions."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return seconds / fraction


# ------------------------------------------------------------------------------ memory
def _proc_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> int | None:
    """Reset this process' peak RSS to its current RSS (Linux ≥ 4.0); returns that RSS in
    KiB, or None where it cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return None
    return _proc_status_kb("VmRSS")


# ------------------------------------------------------------------------------ accuracy
def beta_errors(beta: np.ndarray, cells, ref: np.ndarray, true_beta: np.ndarray,
                window: int) -> dict:
    """max |β − ref| and RMS(β − true β) over the windows a method covered.

    ``beta`` is (T, A) when ``cells`` is None (full windows only are compared, rows ≥ W−1),
    else 1-D aligned with ``cells = (date_idx, asset_idx)``. ``ref`` is (T, A). ``n_missing``
    counts covered windows where the reference has a β and the method has none.
    """
    if cells is None:
        b = np.asarray(beta, dtype=float)[window - 1:]
        r = np.asarray(ref)[window - 1:]
        truth = np.broadcast_to(true_beta, b.shape)
    else:
        t, a = cells
        b = np.asarray(beta, dtype=float)
        r = np.asarray(ref)[t, a]
        truth = true_beta[a]
    both = np.isfinite(b) & np.isfinite(r)
    missing = int((np.isfinite(r) & ~np.isfinite(b)).sum())
    if not both.any():
        return dict(max_abs_dbeta=None, rmse_vs_true=None, n_compared=0, n_missing=missing)
    return dict(max_abs_dbeta=float(np.abs(b[both] - r[both]).max()),
                rmse_vs_true=float(np.sqrt(np.mean((b[both] - truth[both]) ** 2))),
                n_compared=int(both.sum()), n_missing=missing)


def _cells_of(beta: np.ndarray, cells) -> np.ndarray:
    """β at ``cells`` whatever the layout of ``beta``."""
    return np.asarray(beta)[cells] if beta.ndim == 2 else np.asarray(beta)


# ------------------------------------------------------------------------------ one row
def empty_row(name: str, device: str) -> dict:
    row = dict.fromkeys(FIELDS)
    row.update(name=name, device=device, extrapolated=False, note="")
    return row


def measure_row(name: str, config: BenchConfig, shared: str,
                methods: dict[str, Callable[[Workload, Options], Job]] | None = None,
                clock: Clock = time.perf_counter, work: Workload | None = None,
                measure_memory: bool = False) -> dict:
    """Set up, warm up and time one method; compare its β with the reference in ``shared``.

    Never raises for a method's failure: a missing package or feature gives status
    ``"not available"`` and anything else ``"error"``, with the reason in ``note``.
    """
    opts = config.options
    device = "cpu" if name in (PANDAS, "statsmodels RollingOLS (loop over assets)",
                               "polars-ols rolling_ols", RLM) else opts.device
    row = empty_row(name, device)
    try:
        work = work or make_workload(**config.workload.to_dict())
        job = (methods or METHODS)[name](work, opts)
        base_kb = reset_peak_rss() if measure_memory else None
        cuda = job.torch_device is not None and job.torch_device.startswith("cuda")
        if cuda:
            import torch
            torch.cuda.reset_peak_memory_stats()
        sync = lambda: _sync(job.torch_device)  # noqa: E731
        (first,), out = time_repeats(job.run, 1, math.inf, clock, sync)  # fresh process, cold
        out = None
        times, out = time_repeats(job.run, config.repeats, config.budget_s, clock, sync)
        if base_kb is not None:
            hwm = _proc_status_kb("VmHWM")
            row["peak_mem_mb"] = None if hwm is None else max(hwm - base_kb, 0) / 1024
        after = None
        if first <= AFTER_PANDAS_MAX_S:
            out = None
            pandas_work(work)
            (after,), out = time_repeats(job.run, 1, math.inf, clock, sync)
        f = job.fraction
        row.update(first_s=extrapolate(first, f), best_s=extrapolate(min(times), f),
                   after_pandas_s=None if after is None else extrapolate(after, f))
        if cuda:
            row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
            if name.startswith("quantfit"):
                row["transfer_s"] = transfer_seconds(work, job.torch_device)
        row.update(status="ok", repeats=len(times), fraction=job.fraction,
                   extrapolated=job.fraction < 1.0,
                   wall_s=extrapolate(statistics.median(times), job.fraction))
        notes = [job.note_from(out) if job.note_from else "", job.note]
        beta = job.betas(out)
        _compare(row, job, beta, work, shared)
        if "epochs" in job.extra and job.extra["epochs"]:
            notes.append(f"median {int(np.median(job.extra['epochs']))} epochs")
        row["note"] = "; ".join(n for n in notes + [row["note"]] if n)
    except PeerUnavailable as exc:
        row.update(status="not available", note=f"not available: {exc}")
    except Exception as exc:  # noqa: BLE001 - a broken peer must not end the benchmark
        row.update(status="error", note=f"{type(exc).__name__}: {exc}".splitlines()[0])
        row["traceback"] = traceback.format_exc(limit=4)
    return row


def _compare(row: dict, job: Job, beta: np.ndarray, work: Workload, shared: str) -> None:
    """Fill max_abs_dbeta / reference / rmse_vs_true for one row (see ``Job.reference``)."""
    W = work.window
    if job.reference == "ols":
        ref = np.load(os.path.join(shared, "ref_ols.npy"), mmap_mode="r")
        err = beta_errors(beta, job.cells, ref, work.beta, W)
        row["reference"] = "quantfit newton float64"
    elif job.reference == "huber":  # the RLM row: keep its β for the huber row to compare
        vals = _cells_of(beta, job.cells)
        np.savez(os.path.join(shared, "rlm.npz"), t=job.cells[0], a=job.cells[1], beta=vals)
        ok = np.isfinite(vals)
        dev = vals[ok] - work.beta[job.cells[1]][ok]
        err = dict(max_abs_dbeta=None, n_missing=int((~ok).sum()),  # Δβ: from the huber row
                   rmse_vs_true=float(np.sqrt(np.mean(dev ** 2))) if ok.any() else None)
        row["reference"] = "quantfit huber"
    else:  # "rlm": a Huber fit, compared with RLM on RLM's windows
        path = os.path.join(shared, "rlm.npz")
        if not os.path.exists(path):
            row["note"] = "no RLM row to compare with"
            return
        z = np.load(path)
        cells = (z["t"], z["a"])
        ref = np.full((work.spec.n_dates, work.spec.n_assets), np.nan)
        ref[cells] = z["beta"]
        err = beta_errors(_cells_of(beta, cells), cells, ref, work.beta, W)
        if job.cells is None:  # RMSE against the true β over every window, not RLM's few
            ols = np.load(os.path.join(shared, "ref_ols.npy"), mmap_mode="r")
            err["rmse_vs_true"] = beta_errors(beta, None, ols, work.beta, W)["rmse_vs_true"]
        row["reference"] = "statsmodels RLM (its windows)"
    row["max_abs_dbeta"], row["rmse_vs_true"] = err["max_abs_dbeta"], err["rmse_vs_true"]
    if err["n_missing"]:
        row["note"] = f"{err['n_missing']:,} windows without β"


def pandas_work(work: Workload) -> None:
    """Other pandas work in the process: the pandas peer's rolling β on the workload."""
    W = work.window
    work.y.rolling(W).cov(work.x).div(work.x.rolling(W).var(), axis=0)


def transfer_seconds(work: Workload, device: str) -> float:
    """Host→device copy of y (float32) plus a device→host copy of the results' size
    (coef and stderr for α and β, r², residual vol, nobs ≈ 7 float64 arrays of A × T)."""
    import torch
    y = torch.from_numpy(work.y.to_numpy().T.copy())
    out_dev = torch.empty((7,) + tuple(y.shape), dtype=torch.float64, device=device)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    y.to(device=device, dtype=torch.float32)
    out_dev.cpu()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def _child_row(name: str, config: BenchConfig, shared: str) -> dict:
    """Entry point of a row's child process (must be importable: forkserver pickles it)."""
    return measure_row(name, config, shared, measure_memory=True)


# ------------------------------------------------------------------------------ the run
def reference_beta(work: Workload) -> np.ndarray:
    """β of ``quantfit newton`` in float64 on the CPU: the exact least-squares reference."""
    import quantfit as qf
    return qf.fit_rolling(work.y, work.x, window=work.window, solver="newton",
                          device="cpu", dtype="float64").beta.to_numpy()


def run_bench(config: BenchConfig, progress: Callable[[dict], None] | None = None,
              methods: dict[str, Callable[[Workload, Options], Job]] | None = None,
              clock: Clock = time.perf_counter) -> BenchResult:
    """Measure every row of ``config`` on one workload; see the module docstring.

    ``methods`` and ``clock`` replace the real methods and clock (tests; in-process only).
    """
    if methods is not None and config.isolate:
        raise ValueError("custom methods run in-process only: use isolate=False")
    meta = dict(date=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                machine=machine_info(config.options.device), versions=versions(),
                config=config.to_dict())
    work = make_workload(**config.workload.to_dict())
    meta["workload"] = work.describe()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="quantfit-bench-") as shared:
        np.save(os.path.join(shared, "ref_ols.npy"), reference_beta(work))
        pool = _pool() if config.isolate else None
        try:
            for name in config.rows:
                if pool is not None:
                    row = pool.submit(_child_row, name, config, shared).result()
                else:
                    row = measure_row(name, config, shared, methods, clock, work)
                rows.append(row)
                if progress:
                    progress(row)
        finally:
            if pool is not None:
                pool.shutdown()
    _finish(rows)
    if hasattr(os, "getloadavg"):
        meta["machine"]["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    return BenchResult(rows, meta)


def _finish(rows: list[dict]) -> None:
    """Cross-row columns: ratio_vs_pandas, and the RLM row's Δβ from the huber row."""
    by = {r["name"]: r for r in rows}
    base = by.get(PANDAS, {})
    for r in rows:
        for col, field_ in (("ratio_vs_pandas", "wall_s"), ("first_vs_pandas", "first_s"),
                            ("best_vs_pandas", "best_s"), ("after_vs_pandas", "after_pandas_s")):
            if base.get(field_) and r.get(field_):
                r[col] = base[field_] / r[field_]
    if RLM in by and HUBER in by and by[RLM]["status"] == "ok":
        by[RLM]["max_abs_dbeta"] = by[HUBER]["max_abs_dbeta"]


def _pool():
    """A one-worker pool that forks a fresh child per task from a server that has already
    imported the heavy libraries (seconds saved per row; no OpenMP state is forked)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    ctx = mp.get_context("forkserver")
    # Missing optional peers are skipped by the forkserver's preload.
    ctx.set_forkserver_preload(["quantfit.bench.runner", "statsmodels.api",
                                "statsmodels.regression.rolling", "polars", "polars_ols"])
    return ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1)


# ------------------------------------------------------------------------------ metadata
def machine_info(device: str = "cpu") -> dict:
    """CPU model, cores, memory, OS, torch threads, and the GPU's name when one is used."""
    import torch
    cpu = platform.processor() or platform.machine()
    mem = None
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
        mem = (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) / 2**30
    except (OSError, ValueError):
        pass
    # The load average tells a reader whether other work shared the CPU during the run.
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    info = dict(cpu=cpu, cores=os.cpu_count(), memory_gib=None if mem is None else round(mem, 1),
                os=platform.platform(), python=platform.python_version(),
                torch_threads=torch.get_num_threads(), gpu=None,
                load_avg_1m=None if load is None else round(load[0], 2))
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def versions() -> dict:
    """Installed versions of quantfit and of every peer package (None = not installed)."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for pkg in ("quantfit", "torch", "numpy", "pandas", "statsmodels", "polars", "polars-ols"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def describe_machine(meta: dict) -> str:
    """One line: 'Intel Xeon ..., 2 cores, 23 GiB, Linux-...; torch 2.13 (2 threads)'."""
    m, v = meta["machine"], meta["versions"]
    gpu = f"; GPU {m['gpu']}" if m.get("gpu") else ""
    load = (f"; load average {m['load_avg_1m']} before, {m.get('load_avg_1m_after')} after"
            if m.get("load_avg_1m") is not None else "")
    return (f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}; "
            f"torch {v['torch']} ({m['torch_threads']} threads){gpu}{load}")
