"""Parameters of a refresh: ``RefreshParams`` and its defaults, their validation and parsing,
and the canonical parameters whose hash keys a result set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantfit.errors import DataError, FitError
from quantfit.results_store import FORMAT, VERSION
from quantfit.spec import DEFAULT_WINDOW, FitSpec

DEFAULT_STORE = "data/store"
DEFAULT_OUT = "data/results"
DEFAULT_FACTORS_DIR = "data/factors"


@dataclass
class RefreshParams:
    """Everything one refresh needs. Paths are as given (relative to the working directory).

    store, out : price store and results directories.
    benchmark : ticker of the single factor (default mode) and the ticker left out of the
        default universe.
    factors : Ken French daily factors file (or dataset name); replaces the benchmark as x.
    model : a factor model by name, "capm", "ff3", "ff5" or "carhart"
        (``qf.sources.factor_model``): its factors replace the benchmark as x, asset returns in
        excess of its RF; the monthly Ken French files with ``freq="M"``, the daily ones
        otherwise. Not with ``factors``.
    factors_dir : where the model's files are looked for first (default ``data/factors``).
    universe : tickers to fit; None = every ticker in the store except the benchmark.
    window : rows per window, or a calendar lookback ("60M", "2Y"; None = expanding);
        ``DEFAULT_WINDOW`` (252) unless given, so that a preset's window applies.
    min_obs : valid rows needed (default: the window's rows).
    halflife : exponential weights' half-life in rows (None = equal weights).
    freq, every : "W", "M", "Q": returns compounded to that frequency before fitting; estimates
        only at the last date of each period (``qf.spec.SamplingSpec``).
    preset : a named beta definition (``quantfit.presets``); the options given override it.
    solver, loss, tol, max_iter, device : passed to ``qf.fit_rolling`` (tol and max_iter
        matter to the iterative solvers only; None = the solver's default).
    update : "yfinance" to ingest the latest prices first, or None.
    report : write ``out/report/index.html``.
    group_size : assets per group, the unit of work (read, fit, write together; one part file
        per month); None = ``plan.GROUP_SIZE``. Only new groups use it (a full rebuild, added
        assets); it changes memory and file counts, never the numbers.
    jobs : group tasks run at once in this process (threads; torch then uses one thread per
        task); None = one per core, at most ``job.MAX_JOBS``. Peak memory grows with
        ``jobs × group_size``; the numbers never change.
    dask : run the group tasks on a Dask cluster: a scheduler address (``tcp://host:8786``)
        or ``"local:N"`` (a ``LocalCluster`` of N worker processes, started and stopped by the
        job); see ``quantfit.refresh.distributed``. The store and ``out`` must be on a file
        system every worker sees.
    store_given : False when ``store`` is the default; only then may an empty store be filled
        with the embedded sample (a mistyped ``--store`` must not silently become the sample).
    """

    store: str = DEFAULT_STORE
    out: str = DEFAULT_OUT
    benchmark: str = "SPY"
    factors: str | None = None
    model: str | None = None
    factors_dir: str = DEFAULT_FACTORS_DIR
    universe: list[str] | None = None
    window: int | str | None = DEFAULT_WINDOW
    min_obs: int | None = None
    halflife: float | None = None
    freq: str | None = None
    every: str | None = None
    preset: str | None = None
    solver: str = "newton"
    loss: str = "mse"
    tol: float | None = None
    max_iter: int | None = None
    device: str = "auto"
    update: str | None = None
    report: bool = True
    store_given: bool = False
    group_size: int | None = None
    jobs: int | None = None
    dask: str | None = None


def fit_spec(p: RefreshParams) -> FitSpec:
    """The fit options of a refresh as the validated spec ``qf.fit_rolling`` uses (one set of
    rules for both: ``quantfit.spec``). Options left unset (None) do not override a preset's."""
    given = {k: v for k, v in dict(min_obs=p.min_obs, halflife=p.halflife, tol=p.tol,
                                   max_iter=p.max_iter, freq=p.freq, every=p.every).items()
             if v is not None}
    return FitSpec.from_kwargs(p.window, expanding=p.window is None, solver=p.solver,
                               loss=p.loss, device=p.device, preset=p.preset, **given)


def model_name(p: RefreshParams) -> str | None:
    """``p.model`` checked and lower-cased (None without a model)."""
    from quantfit.data.sources.factor_models import MODELS
    if p.model is None:
        return None
    name = p.model.strip().lower() if isinstance(p.model, str) else p.model
    if name not in MODELS:
        raise DataError(f"unknown factor model {p.model!r}; choose one of {', '.join(MODELS)}")
    if p.factors is not None:
        raise DataError("give --model (factors by name) or --factors (a file), not both")
    return name


def model_freq(spec: FitSpec) -> str:
    """The Ken French files a model reads: monthly ("M") for monthly returns, daily ("D")
    otherwise (daily factors are compounded with the stocks for weekly or quarterly fits)."""
    return "M" if spec.sampling.freq == "M" else "D"


def check_params(p: RefreshParams) -> None:
    """Validate the parameters before any work; ``FitError``/``DataError`` name the problem.

    The fit options are checked by ``fit_spec`` (``quantfit.spec``'s rules, the device's
    presence on this machine included); the rest here."""
    spec = fit_spec(p)
    spec.compute.resolve()
    freq = spec.sampling.freq
    if model_name(p) is not None and freq in ("W", "Q"):
        raise DataError(f"--model with --freq {freq}: the Ken French files are daily or monthly; "
                        f"use --freq M (monthly files) or no --freq (daily files)")
    if p.factors is not None and freq is not None:
        raise DataError(f"--factors (a daily file) with --freq {freq}: daily excess returns do not "
                        f"compound to {freq} excess returns; use --model NAME --freq M")
    if not isinstance(p.factors_dir, str) or not p.factors_dir:
        raise DataError(f"factors_dir must be a folder name, got {p.factors_dir!r}")
    if p.group_size is not None and not (isinstance(p.group_size, int) and not isinstance(p.group_size, bool)
                                         and 1 <= p.group_size <= 1_000_000):
        raise DataError(f"group_size must be an integer in [1, 1000000], got {p.group_size!r}")
    if p.dask is not None:
        from quantfit.refresh.distributed import parse_address
        parse_address(p.dask)
    if p.jobs is not None and not (isinstance(p.jobs, int) and not isinstance(p.jobs, bool)
                                   and 1 <= p.jobs <= 256):
        raise DataError(f"jobs must be an integer in [1, 256], got {p.jobs!r}")
    if p.update not in (None, "yfinance"):
        raise DataError(f"unknown update source {p.update!r}; the only one is 'yfinance'")
    if not p.benchmark:
        raise DataError("benchmark must be a ticker")
    if p.universe is not None and not p.universe:
        raise DataError("the universe is empty")


#: The largest universe file read (10,000 tickers take about 100 KB).
MAX_UNIVERSE_BYTES = 16 << 20


def parse_universe(spec: str | list[str] | None, base: Path | None = None) -> list[str] | None:
    """``"AAPL,BRK/B"``, a file of tickers or a list -> normalized tickers (upper-cased, checked:
    ``quantfit.data.tickers``); order kept, duplicates dropped.

    A string naming an existing file (relative to ``base`` when given; a directory does not
    count) is read as a file: one ticker per line, or several separated by commas, ``#``
    starts a comment, blank lines are skipped; a line with an invalid ticker (``has space``)
    is refused with its line number. A string that is not an existing file is a
    comma-separated ticker list (``BRK/B`` is a ticker), except that a name ending in ``.txt``
    or ``.csv`` is reported as a missing universe file.
    """
    from quantfit._files import read_text
    from quantfit.data.tickers import normalize_ticker
    if spec is None:
        return None
    if isinstance(spec, str):
        path = Path(spec) if base is None or Path(spec).is_absolute() else base / spec
        if path.exists() and not path.is_dir():
            names = []
            text = read_text(path, "universe file", MAX_UNIVERSE_BYTES)
            for n, line in enumerate(text.splitlines(), 1):
                for t in line.split("#", 1)[0].split(","):
                    if t.strip():
                        names.append(normalize_ticker(t, f"universe file {path}, line {n}: "))
            if not names:
                raise DataError(f"universe file {path} lists no tickers")
        elif Path(spec).suffix.lower() in (".txt", ".csv"):
            raise DataError(f"universe file {path} not found")
        else:
            names = [normalize_ticker(t, "universe: ") for t in spec.split(",")]
    elif isinstance(spec, (list, tuple)):
        names = [normalize_ticker(t, "universe: ") for t in spec]
    else:
        raise DataError(f"universe must be tickers or a file, got {spec!r}")
    return list(dict.fromkeys(names))


def parse_window(value: int | str) -> int | str | None:
    """``252`` / ``"252"`` -> 252; ``"expanding"`` -> None; ``"60M"`` (a calendar lookback, an
    integer then D, W, M or Y) stays as it is; anything else -> ``DataError``."""
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "expanding":
            return None
        if text.isdigit():
            return int(text)
        from quantfit.spec import parse_lookback
        try:
            parse_lookback(text)
        except FitError:
            raise DataError(f"window must be a number of rows, a calendar lookback (an integer "
                            f"then D, W, M or Y: 60M, 2Y, 104W, 365D) or 'expanding', "
                            f"got {value!r}") from None
        return text
    return value


def canonical_params(p: RefreshParams, n_factors: int) -> dict[str, Any]:
    """The parameters that define a result set (its key): what changes the numbers.

    Paths to factor files are made absolute; ``min_obs`` is resolved to its default. The
    universe is not part of it (a changed universe recomputes the same set), nor the device
    (only the precision it implies).
    """
    spec = fit_spec(p).resolve(n_factors)
    model = model_name(p)
    if model is not None:
        regressors = f"model:{model}:{model_freq(spec)}:{Path(p.factors_dir).resolve()}"
    elif p.factors is None:
        regressors = f"benchmark:{p.benchmark}"
    else:
        f = Path(p.factors)
        regressors = f"french:{f.resolve() if f.exists() else p.factors}"
    _, dtype = spec.compute.resolve()
    out = {"format": FORMAT, "version": VERSION, "regressors": regressors,
           "window": None if spec.window.expanding else spec.window.length,
           "min_obs": spec.window.min_obs, "halflife": spec.window.halflife,
           "solver": spec.solver.name, "loss": spec.estimator.loss, "tol": spec.solver.tol,
           "max_iter": spec.solver.max_iter, "dtype": str(dtype).replace("torch.", "")}
    # options that change the numbers, recorded only when used: the keys of existing result
    # sets stay what they were
    sm = spec.sampling
    extra = {"freq": sm.freq, "kind": sm.kind if sm.freq else None, "every": sm.every,
             "adjust": spec.estimator.adjust, "winsorize": spec.transforms.winsorize}
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def params_key(params: dict[str, Any]) -> str:
    """Short stable hash of the canonical parameters (12 hex digits)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
