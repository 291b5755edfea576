"""The ``quantfit`` command line: thin wrappers over the library.

    quantfit ingest sample               [--store DIR] [--quiet]
    quantfit ingest csv PATH             [--ticker T] [--date-format FMT] [--store DIR] [--quiet]
    quantfit ingest yfinance TICKER...   [--start D] [--end D] [--store DIR] [--quiet]
    quantfit prices [--store DIR] [--tickers T ...] [--start D] [--end D] [--tail N]
    quantfit store verify|compact|migrate [--store DIR] [--quiet]   (migrate: [--rename OLD NEW]...)
    quantfit refresh [--store DIR] [--out DIR] [--universe T,..|FILE] [--config FILE] ...
    quantfit report --out DIR [--title TEXT]
    quantfit bench [--tiny|--quick|--full] [--device D] [--json PATH] [--scaling] ...

Exit codes: 0 success; 1 done with warnings (e.g. some yfinance tickers returned nothing,
listed on stderr) or, for ``store verify``, damage found; 2 user error (bad file, tickers, dates, arguments), reported as one line
``quantfit: error: <message>`` on stderr, never a traceback.

Adding a subcommand: write ``register_<name>(subparsers)`` that adds a parser and sets
``func`` to a handler ``(args) -> int``, and append it to ``COMMANDS``. Handlers call library
functions and raise ``QuantfitError`` for user errors; ``main`` maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Callable, Sequence

from quantfit.errors import DataError, QuantfitError

PROG = "quantfit"
DEFAULT_STORE = "data/store"
#: ``report --years`` bound: more than any price history (pandas' dates span 584 years).
MAX_YEARS = 500


class _UsageError(Exception):
    """Bad command-line usage (argparse's complaints), exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so ``main`` owns stderr."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise _UsageError(f"{message} (see '{self.prog} --help')")


# ----------------------------------------------------------------------------- helpers
def _date(text: str) -> str:
    """argparse type for dates: the data layer's date rules; passed on as ISO text."""
    from quantfit.data.dates import parse_date
    try:
        return parse_date(text).date().isoformat()
    except QuantfitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _split_tickers(values: Sequence[str]) -> list[str]:
    """Tickers given as separate arguments and/or comma-separated, normalized (upper-cased,
    checked: ``quantfit.data.tickers``)."""
    from quantfit.data.tickers import normalize_ticker
    out = [t for v in values for t in v.split(",")]
    if not out or any(not t.strip() for t in out):
        raise DataError(f"bad ticker list {' '.join(values)!r}: empty ticker name")
    return list(dict.fromkeys(normalize_ticker(t) for t in out))


def _years(text: str) -> float:
    """argparse type for ``report --years``: a finite number of years in (0, MAX_YEARS]."""
    try:
        years = float(text)
    except ValueError:
        years = float("nan")
    if not (0 < years <= MAX_YEARS):  # False for NaN, too
        raise argparse.ArgumentTypeError(f"expected a number of years in (0, {MAX_YEARS}], got {text!r}")
    return years


def _store_option(parser: argparse.ArgumentParser, quiet: bool = False) -> None:
    parser.add_argument("--store", default=DEFAULT_STORE, metavar="DIR",
                        help=f"store directory (default: {DEFAULT_STORE})")
    if quiet:
        parser.add_argument("-q", "--quiet", action="store_true",
                            help="no progress bar (it is drawn only on a terminal anyway)")


def _progress(args, label: str, unit: str):
    """A progress bar for a long store operation (silent off a terminal or with --quiet)."""
    from quantfit.progress import Progress
    return Progress(label, unit=unit, quiet=getattr(args, "quiet", False))


# ----------------------------------------------------------------------------- ingest
def _ingest(frame, args, warnings_: list[str] | None = None) -> int:
    from quantfit.data.store import PriceStore
    with _progress(args, "ingest", "rows") as bar:
        summary = PriceStore(args.store).ingest(frame, progress=bar)
    print(f"{args.store}: {summary}")
    if warnings_:
        for line in warnings_:
            print(f"{PROG}: warning: {line}", file=sys.stderr)
        print(f"{PROG}: done with warnings", file=sys.stderr)
        return 1
    return 0


def _ingest_sample(args) -> int:
    from quantfit.data import sources
    return _ingest(sources.sample(), args)


def _ingest_csv(args) -> int:
    from quantfit.data import sources
    frame = sources.csv(args.path, ticker=args.ticker, date_format=args.date_format)
    for line in frame.attrs.get("notes", []):
        print(f"{PROG}: note: {line}", file=sys.stderr)
    return _ingest(frame, args)


def _ingest_yfinance(args) -> int:
    from quantfit.data import sources
    tickers = _split_tickers(args.tickers)
    with warnings.catch_warnings():
        # The source both warns and records attrs["missing"]; we report from the latter.
        warnings.simplefilter("ignore", sources.MissingTickersWarning)
        frame = sources.yfinance(tickers, start=args.start, end=args.end)
    missing = frame.attrs.get("missing", [])
    notes = [f"no prices for {len(missing)} ticker{'s' if len(missing) > 1 else ''}: "
             f"{', '.join(missing)}"] if missing else None
    return _ingest(frame, args, notes)


def register_ingest(subparsers) -> None:
    p = subparsers.add_parser("ingest", help="load prices into the store (upsert by date, ticker)",
                              description="Load prices into the store (upsert by date, ticker).")
    kinds = p.add_subparsers(dest="source", metavar="SOURCE", parser_class=_Parser)
    kinds.required = True
    s = kinds.add_parser("sample", help="the embedded sample (19 stocks + SPY)")
    _store_option(s, quiet=True)
    s.set_defaults(func=_ingest_sample)
    c = kinds.add_parser("csv", help="a long (date,ticker,close[,volume]), wide (date,T1,T2,...) "
                                     "or one ticker's (Date,Open,High,Low,Close,Adj Close,Volume) CSV")
    c.add_argument("path", metavar="PATH")
    c.add_argument("--ticker", metavar="T", help="the ticker of a one-ticker history file "
                                                 "(default: the file name's stem, e.g. AAPL.csv -> AAPL)")
    c.add_argument("--date-format", dest="date_format", metavar="FMT",
                   help="strptime format of the dates when they are ambiguous or unusual, "
                        "e.g. %%d.%%m.%%Y")
    _store_option(c, quiet=True)
    c.set_defaults(func=_ingest_csv)
    y = kinds.add_parser("yfinance", help="adjusted closes from Yahoo Finance")
    y.add_argument("tickers", nargs="+", metavar="TICKER")
    y.add_argument("--start", type=_date, help="first date (YYYY-MM-DD)")
    y.add_argument("--end", type=_date, help="end date, exclusive as in yfinance (YYYY-MM-DD)")
    _store_option(y, quiet=True)
    y.set_defaults(func=_ingest_yfinance)


# ----------------------------------------------------------------------------- prices
def _prices(args) -> int:
    from quantfit.data.store import PriceStore
    tickers = _split_tickers(args.tickers) if args.tickers else None
    wide = PriceStore(args.store).prices(tickers, start=args.start, end=args.end, field=args.field)
    if args.tail is not None:
        wide = wide.tail(args.tail)
    wide.to_csv(sys.stdout, date_format="%Y-%m-%d", float_format="%.10g")
    return 0


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def register_prices(subparsers) -> None:
    p = subparsers.add_parser("prices", help="print stored prices as a wide CSV (date x ticker)",
                              description="Print stored prices as a wide CSV (date x ticker).")
    _store_option(p)
    p.add_argument("--tickers", nargs="+", metavar="T", help="tickers (default: all)")
    p.add_argument("--start", type=_date, help="first date, inclusive (YYYY-MM-DD)")
    p.add_argument("--end", type=_date, help="last date, inclusive (YYYY-MM-DD)")
    p.add_argument("--field", choices=("close", "volume"), default="close")
    p.add_argument("--tail", type=_positive_int, metavar="N", help="only the last N dates")
    p.set_defaults(func=_prices)


# ----------------------------------------------------------------------------- store
def _store_verify(args) -> int:
    from quantfit.data.store import PriceStore
    with _progress(args, "verify", "bytes") as bar:
        report = PriceStore(args.store).verify(progress=bar)
    print(f"{args.store}: {report}")
    return 0 if report.ok else 1


def _store_compact(args) -> int:
    from quantfit.data.store import PriceStore
    with _progress(args, "compact", "rows") as bar:
        summary = PriceStore(args.store).compact(full=args.full, progress=bar)
    print(f"{args.store}: {summary}")
    return 0


def _store_migrate(args) -> int:
    from quantfit.data.store import PriceStore
    rename: dict[str, str] = {}
    for old, new in args.rename or []:
        if old in rename:
            raise DataError(f"--rename {old!r} given twice")
        rename[old] = new
    with _progress(args, "migrate", "rows") as bar:
        summary = PriceStore(args.store).migrate(rename=rename, progress=bar)
    print(f"{args.store}: {summary}")
    return 0


def register_store(subparsers) -> None:
    p = subparsers.add_parser("store", help="check, compact or migrate the price store",
                              description="Maintenance of the price store. Exit codes: 0 ok; "
                                          "1 damage found (verify); 2 user error or a damaged "
                                          "store (compact, migrate).")
    ops = p.add_subparsers(dest="op", metavar="OP", parser_class=_Parser)
    ops.required = True
    v = ops.add_parser("verify", help="check every data file against its recorded size and "
                                      "SHA-256; list what is wrong (exit 1 if anything is)")
    _store_option(v, quiet=True)
    v.set_defaults(func=_store_verify)
    c = ops.add_parser("compact", help="fold the delta files into the year segments "
                                       "(ingest does it when worthwhile); changes no data")
    _store_option(c, quiet=True)
    c.add_argument("--full", action="store_true", help="rewrite every segment, not only those "
                                                        "with pending deltas")
    c.set_defaults(func=_store_compact)
    m = ops.add_parser("migrate", help="rewrite a store of format v1 in the current format and "
                                       "rename tickers stored before the ticker rule (aapl -> "
                                       "AAPL); the first ingest of a v1 store does it too")
    _store_option(m, quiet=True)
    m.add_argument("--rename", nargs=2, action="append", metavar=("OLD", "NEW"),
                   help="store the ticker OLD (spelled as stored) as NEW: for a name the rule "
                        "cannot rename (two names that become one, like aapl and AAPL; an "
                        "invalid name); repeatable")
    m.set_defaults(func=_store_migrate)


# ----------------------------------------------------------------------------- report
def _report(args) -> int:
    import quantfit as qf
    from pathlib import Path
    fit = qf.read_results(args.out, last_years=args.years)
    index = qf.report.write_html(fit, Path(args.out) / "report", title=args.title)
    print(index)
    return 0


def register_report(subparsers) -> None:
    p = subparsers.add_parser("report", help="write the HTML report of the nightly job's results",
                              description="Read the results the nightly job wrote to DIR "
                                          "(qf.read_results) and write DIR/report/index.html.")
    p.add_argument("--out", required=True, metavar="DIR", help="the nightly job's output folder")
    p.add_argument("--title", default=None, help="page title (default: quantfit report)")
    p.add_argument("--years", type=_years, default=10.0,
                   help=f"show this many years up to the latest date (default: 10; at most {MAX_YEARS})")
    p.set_defaults(func=_report)


# ----------------------------------------------------------------------------- refresh, bench
def _register_delegate(subparsers, name: str, module: str, help: str, description: str) -> None:
    """A subcommand whose options and logic live in ``module`` (``add_arguments``, ``run_cli``)."""
    import importlib
    mod = importlib.import_module(module)
    p = subparsers.add_parser(name, help=help, description=description)
    mod.add_arguments(p)
    p.set_defaults(func=mod.run_cli)


def register_refresh(subparsers) -> None:
    _register_delegate(
        subparsers, "refresh", "quantfit.refresh",
        help="the nightly job: (update prices,) fit rolling betas, write results + report",
        description="Fit rolling betas of the universe and write them under --out (incremental, "
                    "idempotent, atomic). Exit codes: 0 done, 1 done with warnings, 2 user error.")


def register_bench(subparsers) -> None:
    _register_delegate(
        subparsers, "bench", "quantfit.bench.cli",
        help="benchmark quantfit against pandas, statsmodels, polars-ols, a torch loop",
        description="Time quantfit's solvers and the peers on one synthetic workload with known "
                    "betas; print a markdown table (peers need pip install 'quantfit[bench]').")


#: Subcommand registrars, in help order.
COMMANDS: list[Callable] = [register_ingest, register_prices, register_store, register_refresh,
                            register_report, register_bench]


def build_parser() -> argparse.ArgumentParser:
    from quantfit import __version__
    parser = _Parser(prog=PROG, description="Factor betas for thousands of securities at once.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 done with warnings, 2 user error)."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    except (_UsageError, QuantfitError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `quantfit prices | head`: the reader left; not an error. Silence the final flush.
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        # File-system problems with user-given paths (permissions, read-only store, ...).
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"{PROG}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
