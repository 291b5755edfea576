"""Validated options of a rolling fit: small frozen dataclasses, each checking itself once.

``qf.fit_rolling``'s flat keywords, ``quantfit refresh`` and its config file all build these
objects (``FitSpec.from_kwargs``), so every option has exactly one set of rules and one error
message, a ``FitError``. Units: ``min_obs`` and half-lives count **rows** (dates of the input,
after compounding to ``freq``); a window is a number of rows or a calendar lookback.

=================  ===============================================================================
``WindowSpec``     which rows a window holds: ``length`` rows, or a calendar lookback ("60M",
                   "2Y", "104W", "365D"), None = expanding; ``min_obs``, ``halflife``
                   (exponential row weights)
``EstimatorSpec``  what is estimated: ``loss`` ("mse", "huber"), ``intercept``, ``huber_t``,
                   a shrinkage ``prior`` with ``prior_strength``, ``adjust`` ("blume")
``SolverSpec``     how: ``name`` (newton, gd, adam, lbfgs), ``tol``, ``max_iter``, ``history``
``ComputeSpec``    where: ``device``, ``dtype``, ``chunk_size``
``TransformSpec``  input transforms: ``winsorize`` ("welch"), ``market``, ``lags`` (Dimson)
``SamplingSpec``   the time grid: ``freq`` (compound y and x to "W", "M", "Q" returns first),
                   ``kind`` ("simple", "log"), ``every`` (estimates only at the last date of
                   each "W", "M" or "Q" period)
``FitSpec``        the six together, plus the rules that involve several of them
=================  ===============================================================================

Calendar lookbacks: the window ending at t holds the rows dated in (t − lookback, t]; D and W
are days and weeks, M and Y calendar months and years (pandas ``DateOffset`` arithmetic, with
the end-of-month rule, see ``quantfit.sampling``). A calendar window has no row count, so
``min_obs`` is required, except where the window holds a known number of the fit's periods
(``freq="M"`` with "60M" or "5Y": 60; ``freq="Q"`` with "3Y": 12; ``freq="W"`` with "104W" or
"728D": 104), where it defaults to that number, as a row window's defaults to its length.
Daily data has no such number (it depends on the exchange's calendar), so it is never guessed.

Rules that need the data (the number of parameters p) are checked by ``FitSpec.resolve(k)``
with k the number of factors after the Dimson lags: ``window >= p`` (``>= 2p + 1`` for
Huber, whose MAD scale is 0 when half the residuals are), ``min_obs`` in ``[p, window]``
(default: the window; p when expanding). ``ComputeSpec.resolve()`` checks that the device
exists on this machine. ``to_dict`` / ``from_dict`` give a JSON-able form (a prior given per
asset as a Series or DataFrame is recorded as ``{"per_asset": true}``, not its values).
``FitSpec.from_kwargs(..., preset=name)`` starts from a named beta definition
(``quantfit.presets``); options given explicitly override it.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from quantfit.errors import FitError

Loss = Literal["mse", "huber"]
Solver = Literal["newton", "gd", "adam", "lbfgs"]
Precision = Literal["float32", "float64"]
Freq = Literal["W", "M", "Q"]

#: The losses and solvers a fit can use.
LOSSES: tuple[str, ...] = ("mse", "huber")
SOLVERS: tuple[str, ...] = ("newton", "gd", "adam", "lbfgs")
#: Return frequencies and output periods, finest first: weeks ending Friday, months, quarters.
FREQS: tuple[str, ...] = ("W", "M", "Q")
#: Adjustments of the beta reported beside the raw one.
ADJUSTMENTS: tuple[str, ...] = ("blume",)
#: Longest window accepted, in rows (four centuries of daily data).
MAX_ROWS = 100_000
#: Longest calendar lookback per unit (four centuries).
MAX_LOOKBACK = {"D": 146_100, "W": 20_871, "M": 4_800, "Y": 400}
_LOOKBACK = re.compile(r"^([0-9]+)([DWMY])$")


class _DefaultWindow(int):
    """``fit_rolling``'s default window (252 rows), told apart from a window given explicitly
    (which overrides a preset's)."""

    def __repr__(self) -> str:
        return "252"


DEFAULT_WINDOW = _DefaultWindow(252)
#: Shortest half-life accepted, in rows: below it every row but the newest weighs < 1e-30.
MIN_HALFLIFE = 0.01
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and not _is_np_bool(v)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and not _is_np_bool(v)


def _is_np_bool(v: Any) -> bool:
    return type(v).__name__ in ("bool_", "bool") and type(v).__module__ == "numpy"


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool) or _is_np_bool(v)


def _count(name: str, v: Any, lo: int = 1, hi: int | None = None) -> int:
    if not _is_int(v) or v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi:,}]"
        raise FitError(f"{name} must be an integer {rng}, got {v!r}")
    return int(v)


def parse_lookback(value: Any) -> tuple[int, str]:
    """``"60M"`` -> (60, "M"): an integer >= 1 then D, W, M or Y (upper case); FitError else."""
    m = _LOOKBACK.match(value) if isinstance(value, str) else None
    if m is None or int(m.group(1)) < 1:
        raise FitError(f"window={value!r} is neither a number of rows nor a calendar lookback: "
                       f"use an integer (rows, e.g. 252) or an integer then D, W, M or Y "
                       f"(days, weeks, months, years: '365D', '104W', '60M', '2Y')")
    n, unit = int(m.group(1)), m.group(2)
    if n > MAX_LOOKBACK[unit]:
        raise FitError(f"window={value!r} is longer than four centuries "
                       f"(at most {MAX_LOOKBACK[unit]:,}{unit})")
    return n, unit


@dataclass(frozen=True)
class WindowSpec:
    """Window t holds the rows (t − length, t] (row t included): ``length`` rows, or a calendar
    lookback ``"60M"`` (the rows dated in (t − 60 months, t]; D, W, M, Y); ``length=None``:
    every row up to t (expanding). ``min_obs``: valid rows needed for an estimate (None = the
    default, see ``FitSpec.resolve``). ``halflife``: row s of the window at t weighs
    0.5 ** ((t − s) / h), age in rows."""

    length: int | str | None = 252
    min_obs: int | None = None
    halflife: float | None = None

    def __post_init__(self):
        if isinstance(self.length, str):
            parse_lookback(self.length)
        elif self.length is not None:
            object.__setattr__(self, "length", _count("window", self.length, 1, MAX_ROWS))
        if self.min_obs is not None:
            object.__setattr__(self, "min_obs", _count("min_obs", self.min_obs, 1, MAX_ROWS))
        if self.halflife is not None:
            h = self.halflife
            if not _is_real(h) or not math.isfinite(float(h)) or float(h) < MIN_HALFLIFE:
                raise FitError(f"halflife must be a number of rows >= {MIN_HALFLIFE} (finite), "
                               f"got {h!r}")
            object.__setattr__(self, "halflife", float(h))
        if self.min_obs is not None and self.rows is not None and self.min_obs > self.rows:
            raise FitError(f"min_obs={self.min_obs} is larger than window={self.length}")

    @property
    def expanding(self) -> bool:
        return self.length is None

    @property
    def rows(self) -> int | None:
        """The window's length in rows (None: expanding or a calendar lookback)."""
        return self.length if isinstance(self.length, int) else None

    @property
    def lookback(self) -> tuple[int, str] | None:
        """(count, unit) of a calendar window, e.g. (60, "M"); None for row windows."""
        return parse_lookback(self.length) if isinstance(self.length, str) else None


@dataclass(frozen=True)
class PerAssetPrior:
    """Stands for a prior given per asset (a Series or DataFrame) in a stored fit's metadata."""

    per_asset: bool = True


@dataclass(frozen=True)
class EstimatorSpec:
    """What each window estimates.

    loss : "mse" (least squares) or "huber" (statsmodels RLM with HuberT(huber_t), MAD scale).
    intercept : fit α (term "alpha").
    prior, prior_strength : ``prior_strength · ‖β − prior‖²`` is added to each window's
        (weighted) sum of squared residuals. ``prior``: a number, a dict/Series by factor, a
        Series by asset or a DataFrame assets × factors (which one is decided against the
        data's names). Not compared by ``==``.
    adjust : "blume": report the Blume-adjusted beta 0.67·β + 0.33 beside the raw one
        (``fit.beta_adjusted``, formed on access from ``fit.beta``; ``qf.adjust.blume``).
    """

    loss: Loss = "mse"
    intercept: bool = True
    huber_t: float = 1.345
    prior: Any = field(default=None, compare=False)
    prior_strength: float = 0.0
    adjust: Literal["blume"] | None = None

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise FitError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if not _is_bool(self.intercept):
            raise FitError(f"intercept must be True or False, got {self.intercept!r}")
        object.__setattr__(self, "intercept", bool(self.intercept))
        t = self.huber_t
        if not _is_real(t) or not math.isfinite(float(t)) or float(t) <= 0:
            raise FitError(f"huber_t must be a positive number, got {t!r}")
        object.__setattr__(self, "huber_t", float(t))
        lam = self.prior_strength
        if not _is_real(lam) or not math.isfinite(float(lam)) or float(lam) < 0:
            raise FitError(f"prior_strength must be a number >= 0, got {lam!r}")
        object.__setattr__(self, "prior_strength", float(lam))
        _check_prior(self.prior)
        if self.prior_strength > 0 and self.prior is None:
            raise FitError("prior_strength > 0 needs prior= (the target beta b0)")
        if self.adjust is not None and self.adjust not in ADJUSTMENTS:
            raise FitError(f"adjust must be None or one of {', '.join(map(repr, ADJUSTMENTS))}, "
                           f"got {self.adjust!r}")

    def min_rows(self, p: int) -> int:
        """Fewest rows a window needs for this estimator with p parameters."""
        return 2 * p + 1 if self.loss == "huber" else p


def _check_prior(prior: Any) -> None:
    if prior is None or isinstance(prior, PerAssetPrior):
        return
    if _is_real(prior):
        if not math.isfinite(float(prior)):
            raise FitError(f"prior must be finite, got {prior!r}")
        return
    kind = type(prior).__name__
    if isinstance(prior, Mapping) or kind in ("Series", "DataFrame"):
        return
    raise FitError(f"prior must be a number, a dict/Series by factor, a Series by asset or a "
                   f"DataFrame assets × factors, got {kind}")


@dataclass(frozen=True)
class SolverSpec:
    """How each window is solved: ``name`` newton (exact normal equations), gd, adam or lbfgs
    (cold start, per-window convergence); ``tol`` / ``max_iter`` (None = the solver's default);
    ``history``: record the mean loss after every iteration."""

    name: Solver = "newton"
    tol: float | None = None
    max_iter: int | None = None
    history: bool = False

    def __post_init__(self):
        if self.name not in SOLVERS:
            raise FitError(f"unknown solver {self.name!r}; choose one of {', '.join(SOLVERS)}")
        if self.tol is not None:
            t = self.tol
            if not _is_real(t) or not math.isfinite(float(t)) or float(t) <= 0:
                raise FitError(f"tol must be a positive finite number, got {t!r}")
            object.__setattr__(self, "tol", float(t))
        if self.max_iter is not None:
            object.__setattr__(self, "max_iter", _count("max_iter", self.max_iter, 1, 10**7))
        if not _is_bool(self.history):
            raise FitError(f"history must be True or False, got {self.history!r}")
        object.__setattr__(self, "history", bool(self.history))


@dataclass(frozen=True)
class ComputeSpec:
    """Where: ``device`` "auto" (CUDA, then MPS, then the CPU), "cpu", "cuda", "cuda:N",
    "mps"; ``dtype`` "float32" / "float64" (torch dtypes accepted; None = float64 on the CPU,
    float32 on a GPU); ``chunk_size``: assets per batch (Huber: (asset, window) pairs)."""

    device: str = "auto"
    dtype: Precision | None = None
    chunk_size: int | None = None

    def __post_init__(self):
        dev = self.device
        if type(dev).__name__ == "device" and type(dev).__module__ == "torch":
            dev = str(dev)
        if not isinstance(dev, str) or not _DEVICE.match(dev):
            raise FitError(f"bad device {self.device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' "
                           f"or 'mps'")
        object.__setattr__(self, "device", dev)
        dt = self.dtype
        if dt is not None:
            name = str(dt).replace("torch.", "")
            if name not in ("float32", "float64") or not isinstance(dt, str) and \
                    type(dt).__module__ != "torch":
                raise FitError(f"dtype must be torch.float32 or torch.float64, got {dt!r}")
            object.__setattr__(self, "dtype", name)
        if self.chunk_size is not None:
            object.__setattr__(self, "chunk_size", _count("chunk_size", self.chunk_size))

    def resolve(self):
        """(torch.device, torch.dtype) on this machine; FitError when the device is missing."""
        import torch

        from quantfit.engine import default_dtype, pick_device
        try:
            dev = pick_device(self.device)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise FitError(f"bad device {self.device!r}: {exc}") from None
        dt = default_dtype(dev) if self.dtype is None else getattr(torch, self.dtype)
        if dev.type == "mps" and dt == torch.float64:
            raise FitError("MPS has no float64: use dtype='float32'")
        return dev, dt


@dataclass(frozen=True)
class TransformSpec:
    """Transforms of the inputs before fitting (``quantfit.transforms``): ``winsorize="welch"``
    (Welch 2022: y clipped to between −2 and 4 times the market's return), ``lags=L`` (Dimson
    1979: the market lagged 1..L rows as extra regressors, summed into ``beta_dimson``);
    ``market``: the market factor for both (default: the only factor)."""

    winsorize: Literal["welch"] | None = None
    market: str | None = None
    lags: int = 0

    def __post_init__(self):
        if self.winsorize not in (None, "welch"):
            raise FitError(f"winsorize must be None or 'welch', got {self.winsorize!r}")
        object.__setattr__(self, "lags", _count("lags", self.lags, 0, 1000))
        if self.market is not None:
            object.__setattr__(self, "market", str(self.market))


def _check_freq(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or value not in FREQS):
        raise FitError(f"{name} must be None, 'W' (weeks ending Friday), 'M' (month ends) or "
                       f"'Q' (quarter ends), got {value!r}")


@dataclass(frozen=True)
class SamplingSpec:
    """The time grid of a fit.

    freq : "W", "M" or "Q": y and x are compounded to weekly (ending Friday), monthly or
        quarterly returns on the same calendar periods before fitting (``qf.compound``;
        inputs already at that frequency, dated on the periods' calendar ends, are used as
        they are). None: the rows as given.
    kind : the returns' kind for compounding: "simple" (∏(1 + r) − 1) or "log" (Σ r).
    every : "W", "M" or "Q": estimates only for the windows ending on the last date of the
        input in each period (computed only there). None: every date.
    """

    freq: Freq | None = None
    kind: Literal["simple", "log"] = "simple"
    every: Freq | None = None

    def __post_init__(self):
        _check_freq("freq", self.freq)
        _check_freq("every", self.every)
        if self.kind not in ("simple", "log"):
            raise FitError(f"kind must be 'simple' or 'log', got {self.kind!r}")
        if self.kind != "simple" and self.freq is None:
            raise FitError("kind= says how freq= compounds returns; freq is not set")
        if self.freq and self.every and FREQS.index(self.every) < FREQS.index(self.freq):
            raise FitError(f"every={self.every!r} is finer than the returns' freq={self.freq!r}: "
                           f"every {self.freq} row already ends a period")


_PARTS = {"window": WindowSpec, "estimator": EstimatorSpec, "solver": SolverSpec,
          "compute": ComputeSpec, "transforms": TransformSpec, "sampling": SamplingSpec}
#: Flat keyword -> (part, field) for ``FitSpec.from_kwargs``.
_FLAT = {"min_obs": ("window", "min_obs"), "halflife": ("window", "halflife"),
         "loss": ("estimator", "loss"), "intercept": ("estimator", "intercept"),
         "huber_t": ("estimator", "huber_t"), "prior": ("estimator", "prior"),
         "prior_strength": ("estimator", "prior_strength"), "tol": ("solver", "tol"),
         "max_iter": ("solver", "max_iter"), "history": ("solver", "history"),
         "device": ("compute", "device"), "dtype": ("compute", "dtype"),
         "chunk_size": ("compute", "chunk_size"), "winsorize": ("transforms", "winsorize"),
         "market": ("transforms", "market"), "lags": ("transforms", "lags"),
         "adjust": ("estimator", "adjust"), "freq": ("sampling", "freq"),
         "kind": ("sampling", "kind"), "every": ("sampling", "every")}


@dataclass(frozen=True)
class FitSpec:
    """Everything ``fit_rolling`` needs besides the data."""

    window: WindowSpec = field(default_factory=WindowSpec)
    estimator: EstimatorSpec = field(default_factory=EstimatorSpec)
    solver: SolverSpec = field(default_factory=SolverSpec)
    compute: ComputeSpec = field(default_factory=ComputeSpec)
    transforms: TransformSpec = field(default_factory=TransformSpec)
    sampling: SamplingSpec = field(default_factory=SamplingSpec)

    def __post_init__(self):
        for name, cls in _PARTS.items():
            if not isinstance(getattr(self, name), cls):
                raise FitError(f"FitSpec.{name} must be a {cls.__name__}, "
                               f"got {type(getattr(self, name)).__name__}")
        if self.estimator.loss == "huber" and self.window.expanding:
            raise FitError("loss='huber' needs a fixed window (it keeps every row of every "
                           "window); expanding windows are for loss='mse'")
        if self.estimator.prior is not None and self.transforms.lags:
            raise FitError("prior= with lags= is not supported (which coefficients would it "
                           "shrink?)")
        tr = self.transforms
        if tr.market is not None and not (tr.winsorize or tr.lags or self.estimator.adjust):
            raise FitError("market= is used by winsorize='welch', lags= and adjust=; none is set")
        w = self.window
        if w.lookback is not None and w.min_obs is None and self.calendar_rows() is None:
            raise FitError(
                f"window={w.length!r} is a calendar lookback: give min_obs= (the valid rows a "
                f"window needs); it has a default only when freq= makes the rows a known "
                f"number of periods (e.g. freq='M' with '60M')")
        # The fewest parameters any data can give (one factor, plus the intercept): refuse
        # what can never work before the data is read.
        self._check_sizes(1 + self.transforms.lags)

    def calendar_rows(self) -> int | None:
        """The rows a full calendar window holds when that is a known number of the fit's
        periods: ``freq="W"`` with W (or a multiple of 7 D), ``freq="M"`` with M or Y,
        ``freq="Q"`` with a multiple of 3 M or Y; None otherwise (and for row windows)."""
        lb, freq = self.window.lookback, self.sampling.freq
        if lb is None or freq is None:
            return None
        n, unit = lb
        months = {"M": n, "Y": 12 * n}.get(unit)
        if freq == "W":
            days = {"W": 7 * n, "D": n}.get(unit)
            return days // 7 if days is not None and days % 7 == 0 else None
        if freq == "M":
            return months
        return months // 3 if months is not None and months % 3 == 0 else None

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def from_kwargs(cls, window: Any = DEFAULT_WINDOW, *, expanding: bool = False,
                    solver: Any = "newton", estimator: EstimatorSpec | None = None,
                    compute: ComputeSpec | None = None, transforms: TransformSpec | None = None,
                    sampling: SamplingSpec | None = None, preset: str | None = None,
                    **flat: Any) -> FitSpec:
        """The spec of ``fit_rolling``'s keywords. ``window`` is a row count, a calendar
        lookback ("60M"), None (with ``expanding=True``) or a ``WindowSpec``; ``solver`` a name
        or a ``SolverSpec``; ``estimator`` / ``compute`` / ``transforms`` / ``sampling`` spec
        objects. A flat keyword may not also be given through the spec object that holds it.
        ``preset``: start from a named definition (``quantfit.presets``); every keyword given
        here (a window other than the default ``DEFAULT_WINDOW``), and every spec object,
        replaces the preset's values."""
        unknown = sorted(set(flat) - set(_FLAT))
        if unknown:
            raise FitError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
        if not _is_bool(expanding):
            raise FitError(f"expanding must be True or False, got {expanding!r}")
        given = {"estimator": estimator, "compute": compute, "transforms": transforms,
                 "sampling": sampling,
                 "window": window if isinstance(window, WindowSpec) else None,
                 "solver": solver if isinstance(solver, SolverSpec) else None}
        parts: dict[str, dict[str, Any]] = {name: {} for name in _PARTS}
        if preset is not None:
            from quantfit import presets

            for key, value in presets.get(preset).options.items():
                if key == "window":
                    if window is DEFAULT_WINDOW and not expanding:
                        window = value
                    continue
                part, fname = _FLAT[key]
                if given[part] is None and key not in flat:
                    parts[part][fname] = value
        for key, value in flat.items():
            part, fname = _FLAT[key]
            if given[part] is not None:
                raise FitError(f"{key}= and {part}={type(given[part]).__name__}(...) both given; "
                               f"set {fname} in the spec object")
            parts[part][fname] = value
        if isinstance(window, WindowSpec):
            if expanding and not window.expanding:
                raise FitError("expanding=True with a WindowSpec of fixed length")
            w = window
        else:
            if expanding and window is not None:
                raise FitError("expanding=True uses every row up to t: pass window=None")
            if not expanding and window is None:
                raise FitError("window=None needs expanding=True")
            w = WindowSpec(window, **parts["window"])
        s = solver if isinstance(solver, SolverSpec) else SolverSpec(solver, **parts["solver"])
        return cls(window=w,
                   estimator=estimator or EstimatorSpec(**parts["estimator"]),
                   solver=s,
                   compute=compute or ComputeSpec(**parts["compute"]),
                   transforms=transforms or TransformSpec(**parts["transforms"]),
                   sampling=sampling or SamplingSpec(**parts["sampling"]))

    # ---- rules that need the data ------------------------------------------------------
    def n_params(self, n_factors: int) -> int:
        """p for ``n_factors`` regressors (the Dimson lags included)."""
        return n_factors + int(self.estimator.intercept)

    def _check_sizes(self, n_factors: int) -> int:
        p = self.n_params(n_factors)
        need = self.estimator.min_rows(p)
        w = self.window
        what = "" if self.estimator.loss == "mse" else (
            f" (loss='huber' needs 2p + 1 = {need}: its MAD scale is 0 when half the residuals are)")
        rows = w.rows if w.rows is not None else self.calendar_rows()
        per = {"W": "weeks", "M": "months", "Q": "quarters"}.get(str(self.sampling.freq))
        unit = "" if w.rows is not None else f" ({rows} {per})"
        if rows is not None and rows < need:
            raise FitError(f"window={w.length!r}{unit} is shorter than the {need} rows {p} "
                           f"parameters need{what}")
        if w.min_obs is not None and w.min_obs < need:
            raise FitError(f"min_obs={w.min_obs} must lie in [{need}, "
                           f"{'window' if w.length else 'rows'}]{what}")
        if w.min_obs is not None and w.rows is None and rows is not None and w.min_obs > rows:
            raise FitError(f"min_obs={w.min_obs} is larger than the {rows} rows "
                           f"window={w.length!r}{unit} holds")
        return need

    def resolve(self, n_factors: int) -> FitSpec:
        """Check the sizes against ``n_factors`` regressors (after the Dimson lags) and fill
        ``min_obs``'s default: the window's rows (a calendar window's known number of
        periods, see ``calendar_rows``), or the parameters' minimum when expanding."""
        need = self._check_sizes(n_factors)
        w = self.window
        if w.min_obs is not None:
            return self
        full = w.rows if w.rows is not None else self.calendar_rows()
        return replace(self, window=replace(w, min_obs=need if w.expanding else full))

    # ---- JSON ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the prior as a number, a dict by factor, or {"per_asset": true})."""
        d = {name: asdict(getattr(self, name)) for name in _PARTS}
        d["estimator"]["prior"] = _prior_json(self.estimator.prior)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FitSpec:
        parts = {}
        for name, klass in _PARTS.items():
            values = dict(d.get(name, {}))
            known = {f.name for f in fields(klass)}
            extra = set(values) - known
            if extra:
                raise FitError(f"FitSpec.from_dict: unknown {name} field(s) {sorted(extra)}")
            if name == "estimator" and isinstance(values.get("prior"), dict) \
                    and values["prior"].get("per_asset") is True:
                values["prior"] = PerAssetPrior()
            parts[name] = klass(**values)
        return cls(**parts)


def _prior_json(prior: Any) -> Any:
    if prior is None or _is_real(prior):
        return None if prior is None else float(prior)
    if isinstance(prior, PerAssetPrior):
        return {"per_asset": True}
    if isinstance(prior, Mapping):
        return {str(k): float(v) for k, v in prior.items()}
    return {"per_asset": True}  # a Series / DataFrame: decided against the data, not stored
