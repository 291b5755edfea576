"""``quantfit.bench``: quantfit against the peers, side by side, on one synthetic workload.

    from quantfit.bench import config_for, run_bench, to_markdown
    result = run_bench(config_for("quick"))      # W1: 500 assets × 2,520 dates, window 252
    print(to_markdown(result))

Modules: ``workload`` (synthetic returns with known β), ``peers`` (one function per method;
peers import lazily and need ``pip install 'quantfit[bench]'``), ``runner`` (timing, peak
memory, accuracy, extrapolation), ``scaling`` (time against assets and window length),
``table`` (markdown and JSON). The figure is ``quantfit.report.bench.plot_scaling``.
Command line: ``quantfit bench`` (see ``quantfit bench --help``).
"""

from quantfit.bench.peers import METHODS, Job, Options, PeerUnavailable
from quantfit.bench.runner import PRESETS, BenchConfig, BenchResult, config_for, run_bench
from quantfit.bench.table import read_json, to_markdown, write_json
from quantfit.bench.workload import Workload, WorkloadSpec, make_workload

__all__ = [
    "METHODS", "PRESETS", "BenchConfig", "BenchResult", "Job", "Options", "PeerUnavailable",
    "Workload", "WorkloadSpec", "config_for", "make_workload", "read_json", "run_bench",
    "to_markdown", "write_json",
]
