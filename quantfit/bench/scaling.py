"""Scaling sweep: quantfit's time against the number of assets and against window length.

``run_scaling()`` times ``quantfit newton``, ``adam`` and ``huber`` (``qf.fit_rolling`` on the
whole workload, median of repeats) on two axes:

* assets 100 → 5,000 at 2,520 dates and window 252;
* window 21 → 1,260 at 500 assets and 2,520 dates.

Each point is a dict: ``method, axis ("assets" | "window"), n_assets, n_dates, window,
wall_s, repeats, status, note, device``. Runs in-process (no peak memory). On a slow device a
method whose point took longer than ``max_point_s`` skips the larger points of that axis
(status ``"skipped"``, and the note says why) so that the sweep ends in bounded time.
Draw it with ``quantfit.report.bench.plot_scaling``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from quantfit.bench.peers import Options, PeerUnavailable, quantfit_fit
from quantfit.bench.runner import Clock, _sync, time_repeats
from quantfit.bench.workload import make_workload

ASSETS_GRID = (100, 250, 500, 1000, 2500, 5000)
WINDOW_GRID = (21, 63, 126, 252, 504, 1260)
#: Row name -> fit_rolling (solver, loss).
SCALING_METHODS = {"quantfit newton": ("newton", "mse"), "quantfit adam": ("adam", "mse"),
                   "quantfit huber": (None, "huber")}


def _points(assets, windows, n_dates, base_assets, base_window):
    for a in assets:
        yield "assets", a, n_dates, base_window
    for w in windows:
        yield "window", base_assets, n_dates, w


def run_scaling(methods: tuple[str, ...] = tuple(SCALING_METHODS),
                assets: tuple[int, ...] = ASSETS_GRID, windows: tuple[int, ...] = WINDOW_GRID,
                n_dates: int = 2520, base_assets: int = 500, base_window: int = 252,
                device: str = "cpu", repeats: int = 3, budget_s: float = 10.0,
                max_point_s: float = 120.0, progress: Callable[[dict], None] | None = None,
                clock: Clock = time.perf_counter) -> list[dict]:
    """Time each method at each point of both axes; see the module docstring."""
    out: list[dict] = []
    slow: dict[tuple[str, str], float] = {}  # (method, axis) -> the time that stopped it
    opts = Options(device=device)
    for axis, A, T, W in _points(assets, windows, n_dates, base_assets, base_window):
        work = make_workload(A, T, W)
        for name in methods:
            pt = dict(method=name, axis=axis, n_assets=A, n_dates=T, window=W, wall_s=None,
                      repeats=0, status="ok", note="", device=device)
            if (name, axis) in slow:
                pt.update(status="skipped",
                          note=f"a smaller point took {slow[(name, axis)]:.0f} s > {max_point_s:.0f} s")
            else:
                try:
                    solver, loss = SCALING_METHODS[name]
                    job = quantfit_fit(work, opts, solver, loss)
                    job.warmup()
                    times, _ = time_repeats(job.run, repeats, budget_s, clock,
                                            lambda job=job: _sync(job.torch_device))
                    pt.update(wall_s=statistics.median(times), repeats=len(times))
                    if pt["wall_s"] > max_point_s:
                        slow[(name, axis)] = pt["wall_s"]
                except PeerUnavailable as exc:
                    pt.update(status="not available", note=f"not available: {exc}")
            out.append(pt)
            if progress:
                progress(pt)
    return out
