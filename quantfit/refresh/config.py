"""Configuration of ``quantfit refresh``: the TOML config file, the command-line flags and
``run_cli``, which merges them (defaults <- config <- flags) and runs the job with logging.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from quantfit._files import read_text
from quantfit.data.tickers import normalize_ticker
from quantfit.errors import DataError
from quantfit.refresh.job import refresh
from quantfit.refresh.plan import GROUP_SIZE
from quantfit.refresh.params import (DEFAULT_OUT, DEFAULT_STORE, RefreshParams, parse_universe,
                                     parse_window)

log = logging.getLogger("quantfit.refresh")


# ----------------------------------------------------------------------------- configuration
#: Config-file keys (TOML) and their types; the same names as the long command-line flags.
CONFIG_KEYS: dict[str, tuple[type, ...]] = {
    "store": (str,), "out": (str,), "benchmark": (str,), "factors": (str,),
    "model": (str,), "factors_dir": (str,), "freq": (str,), "every": (str,), "preset": (str,),
    "universe": (str, list), "window": (int, str), "min_obs": (int,), "halflife": (int, float),
    "solver": (str,), "loss": (str,), "tol": (int, float), "max_iter": (int,), "device": (str,), "update": (str,), "report": (bool,),
    "quiet": (bool,), "verbose": (bool,), "log_file": (str,), "group_size": (int,), "jobs": (int,), "dask": (str,),
}
_PATH_KEYS = ("store", "out", "factors", "factors_dir", "log_file")
#: The largest config file read.
MAX_CONFIG_BYTES = 1 << 20


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML config: keys as the long flags (``min_obs`` or ``min-obs``).

    Relative paths in it (store, out, factors, log_file, a universe file) are resolved against
    the config file's directory, so a cron job works from any working directory.
    Unknown keys or wrong types raise ``DataError`` naming them; so does a file that is not a
    regular UTF-8 text file of at most ``MAX_CONFIG_BYTES``.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    path = Path(path)
    if not path.exists():
        raise DataError(f"config file {path} not found")
    # A regular UTF-8 file of bounded size (TOML is UTF-8; a FIFO or device is refused).
    text = read_text(path, "config file", MAX_CONFIG_BYTES)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"config file {path}: {exc}") from None
    cfg = {k.replace("-", "_"): v for k, v in raw.items()}
    unknown = sorted(k for k in cfg if k not in CONFIG_KEYS)
    if unknown:
        raise DataError(f"config file {path}: unknown key{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(unknown)} (known: {', '.join(CONFIG_KEYS)})")
    base = path.resolve().parent
    for k, v in cfg.items():
        types = CONFIG_KEYS[k]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            raise DataError(f"config file {path}: {k} must be {' or '.join(t.__name__ for t in types)}, "
                            f"got {v!r}")
        if k in _PATH_KEYS and not Path(v).is_absolute():
            candidate = base / v
            # A factors *name* (downloaded) stays a name; an existing or path-like value is a path.
            if k != "factors" or candidate.exists() or "/" in v or Path(v).suffix:
                cfg[k] = str(candidate)
        if k == "universe" and isinstance(v, str):
            cfg[k] = parse_universe(v, base)
        if k == "window":
            cfg[k] = parse_window(v)
    return cfg


def params_from(cfg: dict[str, Any]) -> RefreshParams:
    """RefreshParams from merged settings (defaults <- config <- flags); extra keys ignored."""
    names = set(RefreshParams.__dataclass_fields__)
    # window None means "expanding" (parsed from the flag or config); other Nones mean unset.
    kw = {k: v for k, v in cfg.items() if k in names and (v is not None or k == "window")}
    kw["store_given"] = "store" in kw
    if "universe" in kw and isinstance(kw["universe"], (str, list)):
        kw["universe"] = parse_universe(kw["universe"])
    if isinstance(kw.get("benchmark"), str):  # tickers are upper-cased everywhere: spy is SPY
        kw["benchmark"] = normalize_ticker(kw["benchmark"], "benchmark: ")
    return RefreshParams(**kw)


# ----------------------------------------------------------------------------- command line
def add_arguments(parser) -> None:
    """The ``quantfit refresh`` flags (every default is None so that config values show through)."""
    a = parser.add_argument
    a("--config", metavar="FILE", help="TOML file with any of the options below (flags override it)")
    a("--store", metavar="DIR", help=f"price store (default: {DEFAULT_STORE}; when that is empty, "
                                     f"the embedded sample is ingested first)")
    a("--out", metavar="DIR", help=f"results directory (default: {DEFAULT_OUT})")
    a("--benchmark", metavar="TICKER", help="the factor, a ticker in the store (default: SPY)")
    a("--factors", metavar="FILE", help="Ken French daily factors file: regress excess returns "
                                        "on its factors instead of the benchmark")
    a("--model", metavar="NAME", help="factor model by name: capm, ff3, ff5, carhart (Ken French "
                                      "files; monthly with --freq M, daily otherwise)")
    a("--factors-dir", dest="factors_dir", metavar="DIR",
      help="where the model's Ken French files are looked for first (default: data/factors)")
    a("--universe", metavar="TICKERS|FILE", help="comma-separated tickers or a file of tickers "
                                                 "(default: every ticker in the store but the benchmark)")
    a("--window", metavar="N", help="rows per window, a calendar lookback (60M, 2Y, 104W, 365D: "
                                    "needs --min-obs unless --freq fixes its rows), or 'expanding' "
                                    "(default: 252)")
    a("--freq", metavar="W|M|Q", help="compound returns to weeks ending Friday, months or "
                                      "quarters before fitting")
    a("--every", metavar="W|M|Q", help="estimates only at the last date of each week, month or "
                                       "quarter")
    a("--preset", metavar="NAME", help="a named beta definition: bloomberg, monthly60, ewma, welch "
                                       "(other options override it)")
    a("--min-obs", dest="min_obs", metavar="N", type=int, help="valid rows needed for an estimate "
                                                                "(default: the window)")
    a("--halflife", metavar="H", type=float, help="half-life of exponential weights, in rows")
    a("--solver", metavar="S", help="newton (default), gd, adam, lbfgs")
    a("--loss", metavar="L", help="mse (default)")
    a("--tol", metavar="X", type=float, help="convergence tolerance of gd/adam/lbfgs")
    a("--max-iter", dest="max_iter", metavar="N", type=int, help="iteration cap of gd/adam/lbfgs")
    a("--device", metavar="D", help="auto (default), cpu, cuda, cuda:1, mps")
    a("--update", metavar="SOURCE", help="ingest the latest prices first: yfinance")
    a("--group-size", dest="group_size", metavar="N", type=int,
      help=f"assets fitted and written together (default {GROUP_SIZE}; memory grows with it)")
    a("--dask", metavar="ADDRESS", help="run the groups on a Dask cluster: tcp://host:8786, or "
                                         "local:N for N local worker processes (pip install "
                                         "'quantfit[dask]'; store and --out on a shared file system)")
    a("--jobs", metavar="N", type=int,
      help="groups processed at once (default: one per core, up to 8; memory grows with it)")
    a("--no-report", dest="report", action="store_const", const=False,
      help="do not write the HTML report")
    a("--log-file", dest="log_file", metavar="FILE", help="also log (with timestamps) to FILE, "
                                                          "warnings included even with --quiet")
    a("-q", "--quiet", action="store_const", const=True, help="errors only on stderr (for cron)")
    a("-v", "--verbose", action="store_const", const=True, help="debug logging")


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"quantfit refresh: {level}{record.getMessage()}"


def run_cli(args) -> int:
    """Handler of ``quantfit refresh``: merge config and flags, run, log, return the exit code."""
    cfg: dict[str, Any] = {}
    if args.config:
        cfg.update(load_config(args.config))
    flags = {k: v for k, v in vars(args).items()
             if k in CONFIG_KEYS and v is not None}
    if "window" in flags:
        flags["window"] = parse_window(flags["window"])
    cfg.update(flags)
    quiet, verbose = bool(cfg.get("quiet")), bool(cfg.get("verbose"))
    handlers: list[logging.Handler] = []
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(_Formatter())
    console.setLevel(logging.ERROR if quiet else (logging.DEBUG if verbose else logging.INFO))
    handlers.append(console)
    if cfg.get("log_file"):
        fh = logging.FileHandler(cfg["log_file"])
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        fh.setLevel(logging.DEBUG if verbose else logging.INFO)
        handlers.append(fh)
    old_level = log.level
    log.setLevel(logging.DEBUG)
    for h in handlers:
        log.addHandler(h)
    try:
        params = params_from(cfg)
        show = not quiet and sys.stderr.isatty()
        outcome = refresh(params, progress=show)
        for line in outcome.warnings:
            log.warning(line)
        if outcome.warnings:
            log.warning("done with %d warning%s (listed above and in %s)", len(outcome.warnings),
                        "s" if len(outcome.warnings) > 1 else "", outcome.result_dir / "manifest.json")
            return 1
        log.info("done in %.1fs", outcome.timings.get("total", 0.0))
        return 0
    finally:
        for h in handlers:
            log.removeHandler(h)
            h.close()
        log.setLevel(old_level)
