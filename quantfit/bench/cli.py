"""``quantfit bench``: the benchmark table (and optionally the scaling figure) from the shell.

    quantfit bench [--tiny | --quick | --full] [--device D] [--json PATH] [--scaling] [--png PATH]
                   [--assets N] [--dates N] [--window N] [--repeats N] [--rows KEY,...] [--no-isolate]

``--quick`` (default) is W1, 500 assets × 2,520 dates, window 252: a minute or two on
a 2-core CPU. ``--full`` is W2, 5,000 × 5,040 (GPU scale), and includes the scaling sweep.
``--tiny`` (20 × 300, window 63) is for smoke tests. ``--scaling`` adds the sweep to the other
presets. The table prints as markdown on stdout; progress goes to stderr. Exit code 1 when a
row failed with an error (the others are still reported), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quantfit.errors import QuantfitError

#: Scaling grids per preset: (assets, windows, n_dates, base_assets, base_window).
_TINY_GRID = ((20, 40), (21, 63), 300, 20, 63)


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``quantfit bench``."""
    size = p.add_mutually_exclusive_group()
    for name, text in (("tiny", "20 assets × 300 dates, window 63 (smoke test)"),
                       ("quick", "W1: 500 × 2,520, window 252 (default)"),
                       ("full", "W2: 5,000 × 5,040, window 252, plus the scaling sweep")):
        size.add_argument(f"--{name}", dest="preset", action="store_const", const=name, help=text)
    p.set_defaults(preset="quick")
    p.add_argument("--device", default="cpu", help="device of the quantfit and torch rows: cpu "
                   "(default), cuda, cuda:1, auto; peers always run on the CPU")
    p.add_argument("--json", metavar="PATH", help="also write the rows (and metadata) as JSON")
    p.add_argument("--scaling", action="store_true",
                   help="also time newton/adam/huber against assets and window length")
    p.add_argument("--png", metavar="PATH", help="scaling figure (default: beside --json, or "
                   "./quantfit-bench-scaling.png)")
    p.add_argument("--assets", type=_count, metavar="N", help="override the preset's assets")
    p.add_argument("--dates", type=_count, metavar="N", help="override the preset's dates")
    p.add_argument("--window", type=_count, metavar="N", help="override the preset's window")
    p.add_argument("--repeats", type=_count, metavar="N", help="timed calls per row (median)")
    p.add_argument("--rows", metavar="KEY,...", help="only these rows: newton, gd, adam, pandas, "
                   "rollingols, polars, rlm, huber, torchloop")
    p.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="run rows in this process (faster start; no peak memory)")


def _command_line(args) -> str:
    """The command as the user could retype it (stored in the JSON and README)."""
    parts = ["quantfit", "bench", f"--{args.preset}"]
    for opt in ("device", "json", "png", "assets", "dates", "window", "repeats", "rows"):
        v = getattr(args, opt)
        if v is not None and not (opt == "device" and v == "cpu"):
            parts += [f"--{opt}", str(v)]
    if args.scaling:
        parts.append("--scaling")
    if not args.isolate:
        parts.append("--no-isolate")
    return " ".join(parts)


def run_cli(args) -> int:
    """Handler of ``quantfit bench``; returns the exit code."""
    from quantfit.bench.peers import ROW_KEYS
    from quantfit.bench.runner import config_for, run_bench
    from quantfit.bench.table import to_markdown, write_json
    from quantfit.spec import ComputeSpec

    device = str(ComputeSpec(device=args.device).resolve()[0])
    rows = None
    if args.rows:
        keys = [k.strip() for k in args.rows.split(",") if k.strip()]
        bad = [k for k in keys if k not in ROW_KEYS]
        if bad or not keys:
            raise QuantfitError(f"unknown rows {bad or args.rows!r}; choose from {', '.join(ROW_KEYS)}")
        rows = [ROW_KEYS[k] for k in keys]
    try:
        config = config_for(args.preset, device=device, assets=args.assets, dates=args.dates,
                            window=args.window, repeats=args.repeats, rows=rows,
                            isolate=args.isolate)
    except ValueError as exc:
        raise QuantfitError(str(exc)) from None
    w = config.workload
    if not 2 <= w.window <= w.n_dates:
        raise QuantfitError(f"window {w.window} must lie in [2, dates={w.n_dates}]")

    def progress(row: dict) -> None:
        took = "–" if row["wall_s"] is None else f"{row['wall_s']:.4g} s"
        print(f"bench: {row['name']}: {row['status']}, {took} {row['note']}", file=sys.stderr,
              flush=True)

    result = run_bench(config, progress=progress)
    result.meta["command"] = _command_line(args)
    if args.scaling or args.preset == "full":
        _scaling(args, result, device)
    print(to_markdown(result))
    if args.json:
        print(f"bench: wrote {write_json(result, args.json)}", file=sys.stderr)
    return 1 if any(r["status"] == "error" for r in result.rows) else 0


def _scaling(args, result, device: str) -> None:
    """Run the sweep into ``result.scaling`` and draw it."""
    from quantfit.bench.scaling import run_scaling
    from quantfit.report.bench import plot_scaling

    def progress(pt: dict) -> None:
        took = "–" if pt["wall_s"] is None else f"{pt['wall_s']:.4g} s"
        print(f"bench scaling: {pt['method']} A={pt['n_assets']} W={pt['window']}: {took} "
              f"{pt['note']}", file=sys.stderr, flush=True)

    kw = {}
    if args.preset == "tiny":
        a, wdw, t, ba, bw = _TINY_GRID
        kw = dict(assets=a, windows=wdw, n_dates=t, base_assets=ba, base_window=bw)
    result.scaling = run_scaling(device=device, progress=progress, **kw)
    png = Path(args.png) if args.png else (
        Path(args.json).with_name(Path(args.json).stem + "-scaling.png") if args.json
        else Path("quantfit-bench-scaling.png"))
    plot_scaling(result.scaling, png)
    result.meta["scaling_png"] = str(png)
    print(f"bench: wrote {png}", file=sys.stderr)
