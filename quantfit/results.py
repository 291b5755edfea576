"""``RollingFit``: the result of ``qf.fit_rolling`` as pandas objects, and its tidy forms.

Every accessor returns a DataFrame indexed like the input (dates × assets):
``coef(term)``, ``stderr(term)``, ``tstat(term)`` for a term (a factor name, ``"alpha"`` or a
derived term such as ``"beta_dimson"``), ``beta`` / ``alpha`` shortcuts, and the per-window
``r2``, ``resid_vol``, ``nobs``, ``converged``, ``n_iter``. Cells without an estimate (too few
rows, singular window, diverged solver) are NaN; ``nobs`` counts the valid rows of every window
even where there is no estimate. ``meta`` (a ``FitMeta``) says how the fit was made.

Inference is formed on access from those arrays (``quantfit.inference``, nothing more is
stored): ``pvalue(term)``, ``conf_int(term, alpha)``, ``r2_adj``, ``total_vol``, ``idio_vol``
(= ``resid_vol``), and ``beta_adjusted`` for a fit made with ``adjust="blume"``.

The tidy forms are layered, one conversion each:

* ``windows(keep)`` — one row per (date, asset) window, as numpy arrays (``WindowColumns``):
  ``date``, ``asset``, ``estimate:<term>`` and ``std_error:<term>`` per term, ``r2``,
  ``resid_vol``, ``nobs``, ``converged``, ``n_iter`` (``WINDOW_COLUMNS`` names the fixed ones).
  ``keep="estimate"``: windows with an estimate; ``"valid"``: windows with at least one valid
  row. Vectorized (no per-row Python), date-major order (then the fit's asset order).
* ``tidy(keep)`` — one row per (date, asset, term): ``TIDY_COLUMNS``, as numpy arrays.
* ``to_frame()`` (a DataFrame of the tidy rows), ``to_parquet()`` / ``read_parquet()`` (an exact
  round trip: dates, asset order, terms and metadata travel in the file's metadata).

Standard errors are stored as ``se_sigma · se_factor`` (σ per window times √[V]_ii, shared by all
assets when their rows are) and multiplied out on access.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np
import pandas as pd

from quantfit.errors import FitError
from quantfit.spec import FitSpec, PerAssetPrior

#: Columns of ``windows()`` besides the per-term ``estimate:<term>`` / ``std_error:<term>``.
WINDOW_COLUMNS = ("date", "asset", "r2", "resid_vol", "nobs", "converged", "n_iter")
#: Columns of the tidy long form (``tidy()``, ``to_frame()``, parquet files, result sets).
#: ``t_stat`` and ``p_value`` are formed from the others (``quantfit.inference``).
TIDY_COLUMNS = ("date", "asset", "term", "estimate", "std_error", "t_stat", "p_value", "r2",
                "resid_vol", "nobs", "converged", "n_iter")


def term_column(kind: str, term: str) -> str:
    """Name of a per-term column of ``windows()``: ``kind`` is "estimate" or "std_error"."""
    if kind not in ("estimate", "std_error"):
        raise FitError(f"term_column: kind must be 'estimate' or 'std_error', got {kind!r}")
    return f"{kind}:{term}"


# ------------------------------------------------------------------------------- metadata
@dataclass(frozen=True)
class FitMeta:
    """How a fit was made: its validated ``spec`` (``min_obs`` resolved), the ``device`` and
    ``dtype`` it ran in, the ``derived`` terms (sums such as ``"beta_dimson"``) and the term
    ``fit.beta`` returns (None: the only factor). ``preset``: the named definition the options
    started from (``quantfit.presets``), if any. ``origin``: where a stored fit was read from
    (e.g. a result set's key). ``preset`` and ``origin`` are informational, not compared."""

    spec: FitSpec = field(default_factory=FitSpec)
    device: str = "cpu"
    dtype: str = "float64"
    derived: tuple[str, ...] = ()
    beta_term: str | None = None
    origin: Mapping[str, Any] = field(default_factory=dict, compare=False)
    preset: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``FitMeta.from_dict`` reads it back)."""
        return {"spec": self.spec.to_dict(), "device": self.device, "dtype": self.dtype,
                "derived": list(self.derived), "beta_term": self.beta_term,
                "origin": dict(self.origin), "preset": self.preset}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FitMeta:
        return cls(spec=FitSpec.from_dict(d["spec"]), device=str(d.get("device", "cpu")),
                   dtype=str(d.get("dtype", "float64")), derived=tuple(d.get("derived", ())),
                   beta_term=d.get("beta_term"), origin=dict(d.get("origin", {})),
                   preset=d.get("preset"))

    @property
    def normal_inference(self) -> bool:
        """p-values and intervals from the normal distribution (Huber, as statsmodels' RLM)
        rather than Student's t."""
        return self.spec.estimator.loss == "huber"

    def settings(self) -> dict[str, Any]:
        """The flat view older code and stored manifests use (window, min_obs, expanding,
        halflife, intercept, solver, loss, tol, max_iter, device, dtype, ...)."""
        s = self.spec
        out: dict[str, Any] = dict(
            window=s.window.length, min_obs=s.window.min_obs, expanding=s.window.expanding,
            halflife=s.window.halflife, intercept=s.estimator.intercept, solver=s.solver.name,
            loss=s.estimator.loss, tol=s.solver.tol, max_iter=s.solver.max_iter,
            device=self.device, dtype=self.dtype)
        if s.estimator.loss == "huber":
            out["huber_t"] = s.estimator.huber_t
        if s.estimator.prior_strength > 0:
            out["prior_strength"] = s.estimator.prior_strength
            prior = s.estimator.prior
            if isinstance(prior, (int, float)) and not isinstance(prior, bool):
                out["prior"] = float(prior)
        if s.transforms.winsorize:
            out["winsorize"] = s.transforms.winsorize
        if s.transforms.lags:
            out.update(lags=s.transforms.lags, market=s.transforms.market,
                       derived=list(self.derived), beta_term=self.beta_term)
        sm = s.sampling
        if sm.freq:
            out.update(freq=sm.freq, kind=sm.kind)
        if sm.every:
            out["every"] = sm.every
        if s.estimator.adjust:
            out["adjust"] = s.estimator.adjust
            if s.transforms.market is not None:
                out["market"] = s.transforms.market
        out.update(self.origin)
        return out

    @classmethod
    def from_settings(cls, d: Mapping[str, Any]) -> FitMeta:
        """Read the flat ``settings`` dict of older files and manifests; keys it does not know
        become ``origin``."""
        known = {"window", "min_obs", "expanding", "halflife", "intercept", "solver", "loss",
                 "tol", "max_iter", "device", "dtype", "huber_t", "prior_strength", "prior",
                 "winsorize", "lags", "market", "derived", "beta_term", "freq", "kind", "every",
                 "adjust"}
        lam = float(d.get("prior_strength", 0.0) or 0.0)
        prior = d.get("prior", PerAssetPrior() if lam > 0 else None)
        spec = FitSpec.from_kwargs(
            d.get("window"), expanding=bool(d.get("expanding", d.get("window") is None)),
            min_obs=d.get("min_obs"), halflife=d.get("halflife"),
            intercept=d.get("intercept", True), solver=d.get("solver", "newton"),
            loss=d.get("loss", "mse"), tol=d.get("tol"), max_iter=d.get("max_iter"),
            huber_t=d.get("huber_t", 1.345), prior=prior, prior_strength=lam,
            winsorize=d.get("winsorize"), lags=d.get("lags", 0) or 0,
            market=d.get("market") if d.get("lags") or d.get("winsorize") or d.get("adjust")
            else None, freq=d.get("freq"), kind=d.get("kind", "simple"), every=d.get("every"),
            adjust=d.get("adjust"))
        return cls(spec=spec, device=str(d.get("device", "cpu")),
                   dtype=str(d.get("dtype", "float64")), derived=tuple(d.get("derived", ())),
                   beta_term=d.get("beta_term"),
                   origin={k: v for k, v in d.items() if k not in known})


# ------------------------------------------------------------------------------- windows
@dataclass
class WindowColumns:
    """One row per (date, asset) window: positions, labels and per-window numbers (n rows).

    date_pos / asset_pos (n,) int64 index into the fit's dates / assets; estimate / std_error
    (n, P) float64 in the order of ``terms``; r2, resid_vol (n,) float64; nobs, n_iter (n,)
    int32; converged (n,) bool. ``date`` / ``asset`` give the labels. ``n_params`` (p of each
    regression; None: the terms but ``beta_dimson``) and ``normal`` (Huber: normal rather than
    Student t) say how ``tidy`` forms p-values.
    """

    index: pd.Index
    assets: pd.Index
    terms: list[str]
    date_pos: np.ndarray
    asset_pos: np.ndarray
    estimate: np.ndarray
    std_error: np.ndarray
    r2: np.ndarray
    resid_vol: np.ndarray
    nobs: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    n_params: int | None = None
    normal: bool = False

    def __len__(self) -> int:
        return len(self.date_pos)

    @property
    def date(self) -> np.ndarray:
        return self.index.take(self.date_pos).to_numpy()

    @property
    def asset(self) -> np.ndarray:
        return self.assets.take(self.asset_pos).to_numpy()

    def tidy(self) -> dict[str, np.ndarray]:
        """The long form of these windows, one row per (window, term): ``TIDY_COLUMNS``, in
        the windows' order then term order (the one tidy conversion: ``RollingFit.tidy`` and
        the nightly result sets' readers use it)."""
        from quantfit.inference import pvalue

        P = len(self.terms)
        rep = lambda a: np.repeat(a, P)  # noqa: E731
        est, se = self.estimate.ravel(), self.std_error.ravel()
        t, nobs = _div(est, se), rep(self.nobs)
        p = self.n_params if self.n_params is not None else \
            sum(term != "beta_dimson" for term in self.terms)
        return {"date": rep(self.date), "asset": rep(self.asset),
                "term": np.tile(np.asarray(self.terms, dtype=object), len(self)),
                "estimate": est, "std_error": se, "t_stat": t,
                "p_value": pvalue(t, nobs, p, self.normal),
                "r2": rep(self.r2), "resid_vol": rep(self.resid_vol), "nobs": nobs,
                "converged": rep(self.converged), "n_iter": rep(self.n_iter)}

    def columns(self) -> dict[str, np.ndarray]:
        """The named columns: ``date``, ``asset``, ``estimate:<term>``, ``std_error:<term>``
        (per term, in term order), ``r2``, ``resid_vol``, ``nobs``, ``converged``, ``n_iter``."""
        out = {"date": self.date, "asset": self.asset}
        for i, t in enumerate(self.terms):
            out[term_column("estimate", t)] = self.estimate[:, i]
            out[term_column("std_error", t)] = self.std_error[:, i]
        out.update(r2=self.r2, resid_vol=self.resid_vol, nobs=self.nobs,
                   converged=self.converged, n_iter=self.n_iter)
        return out


# ------------------------------------------------------------------------------- the fit
class RollingFit:
    """Rolling regression results for many assets.

    Arrays are stored parameter-major: ``coef`` (P, A, T) with ``terms`` naming the P rows
    (``"alpha"`` first when the fit has an intercept, then the factors, then derived terms);
    the standard errors either as ``stderr`` (P, A, T) or as ``se_factor`` (P, B, T), B = 1 or
    A, times ``se_sigma`` (A, T) (default: ``resid_vol``); the others (A, T) (flags may be
    read-only broadcasts of one row shared by every asset).
    """

    def __init__(
        self, *, index: pd.Index, assets: pd.Index, terms: Sequence[str], coef: np.ndarray,
        r2: np.ndarray, resid_vol: np.ndarray, nobs: np.ndarray, converged: np.ndarray,
        n_iter: np.ndarray, stderr: np.ndarray | None = None, se_factor: np.ndarray | None = None,
        se_sigma: np.ndarray | None = None, meta: FitMeta | None = None,
        settings: Mapping[str, Any] | None = None, history: np.ndarray | None = None,
    ):
        P, A, T = coef.shape
        if (len(terms), len(assets), len(index)) != (P, A, T):
            raise FitError(f"RollingFit: shapes {coef.shape} do not match terms/assets/dates "
                           f"({len(terms)}, {len(assets)}, {len(index)})")
        if (stderr is None) == (se_factor is None):
            raise FitError("RollingFit: give stderr= or se_factor= (with se_sigma=), not both")
        if stderr is not None:  # standard errors as they are: σ_se = 1
            se_factor, se_sigma = stderr, np.broadcast_to(np.float64(1.0), (A, T))
        for name, arr in (("r2", r2), ("resid_vol", resid_vol), ("nobs", nobs),
                          ("converged", converged), ("n_iter", n_iter)):
            if arr.shape != (A, T):
                raise FitError(f"RollingFit: {name} has shape {arr.shape}, expected {(A, T)}")
        if se_factor.shape[0] != P or se_factor.shape[1] not in (1, A) or se_factor.shape[2] != T:
            raise FitError(f"RollingFit: se_factor has shape {se_factor.shape}")
        if meta is None:
            meta = FitMeta.from_settings(settings) if settings else FitMeta(
                spec=FitSpec(), derived=tuple(t for t in terms if t == "beta_dimson"))
        self.index = index
        self.assets = assets
        self.terms = list(terms)
        self.meta = meta
        self.history = history
        self._coef = coef
        self._se_factor, self._se_sigma = se_factor, se_sigma
        self._stats = {"r2": r2, "resid_vol": resid_vol, "nobs": nobs, "converged": converged,
                       "n_iter": n_iter}
        self._frames: dict[tuple[str, str], pd.DataFrame] = {}

    # ---- accessors ------------------------------------------------------------------------
    @property
    def settings(self) -> dict[str, Any]:
        """The metadata as a flat dict (``meta.settings()``); prefer ``meta``."""
        return self.meta.settings()

    @property
    def factors(self) -> list[str]:
        """The factor terms (every term but ``"alpha"`` and derived terms such as
        ``"beta_dimson"``), in the order of x's columns."""
        derived = set(self.meta.derived)
        return [t for t in self.terms if t != "alpha" and t not in derived]

    def _frame(self, kind: str, key: str, arr: np.ndarray) -> pd.DataFrame:
        # One zero-copy frame per array, handed out as shallow copies: copy-on-write keeps a
        # caller's edits from reaching the stored results.
        f = self._frames.get((kind, key))
        if f is None:
            f = pd.DataFrame(arr.T, index=self.index, columns=self.assets, copy=False)
            self._frames[(kind, key)] = f
        return f.copy(deep=False)

    def _term(self, term: str) -> int:
        if term not in self.terms:
            raise FitError(f"unknown term {term!r}; this fit has {self.terms}")
        return self.terms.index(term)

    def coef(self, term: str) -> pd.DataFrame:
        """Estimated coefficient of ``term`` (factor name or ``"alpha"``): dates × assets."""
        return self._frame("coef", term, self._coef[self._term(term)])

    def _stderr_array(self, i: int) -> np.ndarray:
        sigma = self._stats["resid_vol"] if self._se_sigma is None else self._se_sigma
        return _mul(sigma, self._se_factor[i])

    def stderr(self, term: str) -> pd.DataFrame:
        """Standard error of ``term``: √(σ² [(ZᵀWZ)⁻¹]_jj) with σ² = RSS/(n−p) for least
        squares (the prior's matrix added with one; RLM's H1 covariance for Huber)."""
        i = self._term(term)
        return pd.DataFrame(self._stderr_array(i).T, index=self.index, columns=self.assets,
                            copy=False)

    def tstat(self, term: str) -> pd.DataFrame:
        """``coef(term) / stderr(term)``."""
        i = self._term(term)
        t = _div(self._coef[i], self._stderr_array(i))
        return pd.DataFrame(t.T, index=self.index, columns=self.assets, copy=False)

    # ---- inference, formed on access (quantfit.inference) -----------------------------------
    @property
    def n_params(self) -> int:
        """Parameters p per window: the intercept and the factors (derived terms such as
        ``beta_dimson`` are functions of them); the residual degrees of freedom are n − p."""
        derived = set(self.meta.derived)
        return sum(t not in derived for t in self.terms)

    def _dates_assets(self, arr: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(arr.T, index=self.index, columns=self.assets, copy=False)

    def pvalue(self, term: str) -> pd.DataFrame:
        """Two-sided p-value of ``tstat(term)``: Student t with n − p degrees of freedom
        (statsmodels ``RollingOLS(...).fit().pvalues``, also WLS with a half-life); the normal
        distribution for ``loss="huber"`` (as ``RLM``)."""
        from quantfit.inference import pvalue

        i = self._term(term)
        t = _div(self._coef[i], self._stderr_array(i))
        return self._dates_assets(pvalue(t, self._stats["nobs"], self.n_params,
                                         self.meta.normal_inference))

    def conf_int(self, term: str, alpha: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(lower, upper) bounds of the 1 − ``alpha`` confidence interval of ``term``:
        coef ∓ q·SE, q the 1 − α/2 quantile of the distribution ``pvalue`` uses (statsmodels'
        ``conf_int(alpha)``)."""
        from quantfit.inference import conf_bounds

        if not isinstance(alpha, (int, float, np.floating)) or isinstance(alpha, bool) \
                or not 0.0 < float(alpha) < 1.0:
            raise FitError(f"alpha must be a number in (0, 1), got {alpha!r}")
        i = self._term(term)
        lo, hi = conf_bounds(self._coef[i], self._stderr_array(i), self._stats["nobs"],
                             self.n_params, float(alpha), self.meta.normal_inference)
        return self._dates_assets(lo), self._dates_assets(hi)

    @property
    def r2_adj(self) -> pd.DataFrame:
        """Adjusted R² = 1 − (1 − R²)(n − 1)/(n − p) (statsmodels ``rsquared_adj`` with an
        intercept)."""
        from quantfit.inference import r2_adjusted

        return self._dates_assets(r2_adjusted(self._stats["r2"], self._stats["nobs"],
                                              self.n_params))

    @property
    def total_vol(self) -> pd.DataFrame:
        """Standard deviation of y in each window, √(TSS/(n − 1)) (weighted with a half-life),
        in y's units per row: derived from R², σ and n (``quantfit.inference``; 0 for a
        constant y, NaN for an exact fit, R² = 1)."""
        from quantfit.inference import total_vol

        st = self._stats
        return self._dates_assets(total_vol(st["r2"], st["resid_vol"], st["nobs"],
                                            self.n_params))

    @property
    def idio_vol(self) -> pd.DataFrame:
        """Idiosyncratic volatility: the residual volatility √(RSS/(n − p)) (``resid_vol``)."""
        return self.resid_vol

    @property
    def beta_adjusted(self) -> pd.DataFrame:
        """The adjusted beta the fit was asked for (``adjust="blume"``: 0.67·β + 0.33, Blume
        1971, ``qf.adjust.blume``), formed on access from the raw beta: ``fit.beta``, or the
        ``market`` factor's coefficient in a fit with several factors."""
        adjust = self.meta.spec.estimator.adjust
        if adjust is None:
            raise FitError("this fit has no adjusted beta: fit with adjust='blume' (or "
                           "preset='bloomberg'), or use qf.adjust.blume(fit.beta)")
        from quantfit.adjust import blume

        market = self.meta.spec.transforms.market
        raw = self.coef(market) if self.meta.beta_term is None and market is not None and \
            len(self.factors) > 1 else self.beta
        return blume(raw)

    @property
    def beta(self) -> pd.DataFrame:
        """Coefficient of the only factor (FitError when the fit has several); for a Dimson fit
        (``lags=``) the summed market coefficient, term ``"beta_dimson"``."""
        if self.meta.beta_term:
            return self.coef(self.meta.beta_term)
        factors = self.factors
        if len(factors) != 1:
            raise FitError(f"fit.beta needs exactly one factor; use fit.coef(name) for {factors}")
        return self.coef(factors[0])

    @property
    def alpha(self) -> pd.DataFrame:
        """Intercept per window (in y's units per row, e.g. daily return)."""
        if "alpha" not in self.terms:
            raise FitError("this fit has no intercept (intercept=False)")
        return self.coef("alpha")

    @property
    def r2(self) -> pd.DataFrame:
        """Centred R² = 1 − RSS/TSS per window (weighted when halflife is set)."""
        return self._frame("stat", "r2", self._stats["r2"])

    @property
    def resid_vol(self) -> pd.DataFrame:
        """Residual volatility √(RSS/(n−p)) per window, in y's units per row."""
        return self._frame("stat", "resid_vol", self._stats["resid_vol"])

    @property
    def nobs(self) -> pd.DataFrame:
        """Number of valid rows (y and every factor present) in each window."""
        return self._frame("stat", "nobs", self._stats["nobs"])

    @property
    def converged(self) -> pd.DataFrame:
        """True where the solver converged and an estimate exists."""
        return self._frame("stat", "converged", self._stats["converged"])

    @property
    def n_iter(self) -> pd.DataFrame:
        """Iterations the solver used per window (1 for newton on the squared loss)."""
        return self._frame("stat", "n_iter", self._stats["n_iter"])

    def __repr__(self) -> str:
        s = self.meta.spec
        win = "expanding" if s.window.expanding else f"window={s.window.length}"
        return (f"<RollingFit {len(self.index)} dates x {len(self.assets)} assets, "
                f"terms={self.terms}, {win}, solver={s.solver.name!r}, loss={s.estimator.loss!r}>")

    # ---- selection and concatenation -------------------------------------------------------
    def isel(self, dates: Any = None, assets: Any = None) -> RollingFit:
        """The fit restricted to date / asset *positions* (slices, integer arrays, masks)."""
        ti = _positions(dates, len(self.index))
        ai = _positions(assets, len(self.assets))

        def take(arr: np.ndarray, shared_ok: bool = True) -> np.ndarray:
            a = arr if arr.shape[-2] == 1 and shared_ok else arr[..., ai, :]
            return a[..., ti]

        def flag(arr: np.ndarray) -> np.ndarray:
            row = _shared_row(arr)
            if row is not None:
                return np.broadcast_to(row[:, ti], (len(_as_range(ai, len(self.assets))),
                                                    len(_as_range(ti, len(self.index)))))
            return arr[ai][:, ti]

        return RollingFit(
            index=self.index[ti], assets=self.assets[ai], terms=self.terms,
            coef=self._coef[:, ai][..., ti], se_factor=take(self._se_factor),
            se_sigma=None if self._se_sigma is None else take(self._se_sigma, False),
            r2=self._stats["r2"][ai][:, ti], resid_vol=self._stats["resid_vol"][ai][:, ti],
            nobs=flag(self._stats["nobs"]), converged=flag(self._stats["converged"]),
            n_iter=flag(self._stats["n_iter"]), meta=self.meta, history=self.history)

    def sel(self, dates: Any = None, assets: Any = None) -> RollingFit:
        """The fit restricted to date / asset *labels*: a slice (``slice("2020", "2021-06")``,
        both ends inclusive as in ``.loc``) or a list of labels (kept in the order given);
        FitError for labels the fit does not have."""
        return self.isel(_labels(self.index, dates, "dates"), _labels(self.assets, assets, "assets"))

    @classmethod
    def concat(cls, fits: Sequence[RollingFit], axis: str = "assets") -> RollingFit:
        """Join fits made with the same spec and terms: ``axis="assets"`` (the same dates; no
        asset twice) or ``axis="dates"`` (the same assets in the same order; dates strictly
        increasing across the fits)."""
        fits = list(fits)
        if not fits:
            raise FitError("RollingFit.concat needs at least one fit")
        first = fits[0]
        for f in fits[1:]:
            if f.terms != first.terms:
                raise FitError(f"RollingFit.concat: terms differ ({first.terms} vs {f.terms})")
            if f.meta != first.meta:
                raise FitError("RollingFit.concat: the fits were made with different settings")
        if axis not in ("assets", "dates"):
            raise FitError(f"RollingFit.concat: axis must be 'assets' or 'dates', got {axis!r}")
        huber = any(f._se_sigma is not None for f in fits)
        sig = [f._stats["resid_vol"] if f._se_sigma is None else f._se_sigma for f in fits]
        if axis == "assets":
            for f in fits[1:]:
                if not f.index.equals(first.index):
                    raise FitError("RollingFit.concat(axis='assets'): the fits' dates differ")
            assets = first.assets.append([f.assets for f in fits[1:]])
            if assets.has_duplicates:
                dup = assets[assets.duplicated()].unique()[:5].tolist()
                raise FitError(f"RollingFit.concat: assets appear in several fits: {dup}")
            cat, index = (lambda arrs: np.concatenate(arrs, axis=-2)), first.index
        else:
            for f in fits[1:]:
                if not f.assets.equals(first.assets):
                    raise FitError("RollingFit.concat(axis='dates'): the fits' assets differ")
            index = first.index.append([f.index for f in fits[1:]])
            if not index.is_monotonic_increasing or index.has_duplicates:
                raise FitError("RollingFit.concat(axis='dates'): dates must increase strictly "
                               "from one fit to the next")
            cat, assets = (lambda arrs: np.concatenate(arrs, axis=-1)), first.assets
        A = len(assets)

        def shared_or_full(arrs: list[np.ndarray]) -> np.ndarray:
            rows = [_shared_row(a) for a in arrs]
            if all(r is not None for r in rows) and (axis == "dates" or all(
                    np.array_equal(rows[0], r, equal_nan=r.dtype.kind == "f") for r in rows)):
                row = rows[0] if axis == "assets" else np.concatenate(rows, axis=-1)
                return np.broadcast_to(row, (A, row.shape[-1]))
            return cat([np.ascontiguousarray(a) for a in arrs])

        factors = [f._se_factor for f in fits]
        if all(s.shape[1] == 1 for s in factors) and (axis == "dates" or all(
                np.array_equal(factors[0], s, equal_nan=True) for s in factors)):
            se_factor = factors[0] if axis == "assets" else np.concatenate(factors, axis=-1)
        else:
            se_factor = cat([np.broadcast_to(s, (s.shape[0], len(f.assets), s.shape[2]))
                             for s, f in zip(factors, fits)])
        return cls(
            index=index, assets=assets, terms=first.terms, coef=cat([f._coef for f in fits]),
            se_factor=se_factor, se_sigma=cat(sig) if huber else None,
            r2=cat([f._stats["r2"] for f in fits]),
            resid_vol=cat([f._stats["resid_vol"] for f in fits]),
            nobs=shared_or_full([f._stats["nobs"] for f in fits]),
            converged=shared_or_full([f._stats["converged"] for f in fits]),
            n_iter=shared_or_full([f._stats["n_iter"] for f in fits]), meta=first.meta)

    # ---- tidy forms -------------------------------------------------------------------------
    def windows(self, keep: str = "estimate") -> WindowColumns:
        """One row per (date, asset) window, date-major (see the module docstring): the windows
        with an estimate (``keep="estimate"``) or with at least one valid row (``"valid"``)."""
        if keep == "estimate":
            mask = np.isfinite(self._coef[0])
        elif keep == "valid":
            mask = self._stats["nobs"] > 0
        else:
            raise FitError(f"keep must be 'estimate' or 'valid', got {keep!r}")
        # Date-major order. Each (A, T) array is transposed once (a blocked copy) and masked
        # in order: sequential reads, where gathering (a, t) pairs from (A, T) storage would
        # jump a whole row of dates between neighbouring windows (several times slower).
        mask_t = np.ascontiguousarray(mask.T)  # (T, A)
        t_idx, a_idx = np.nonzero(mask_t)
        P = len(self.terms)
        scratch: dict[np.dtype, np.ndarray] = {}  # one (T, A) buffer per dtype: faulted in once

        def take(arr: np.ndarray) -> np.ndarray:  # (A or 1, T) -> (n,) in date-major order
            row = _shared_row(arr)
            if row is not None:
                return row[0][t_idx]
            buf = scratch.get(arr.dtype)
            if buf is None:
                buf = scratch[arr.dtype] = np.empty(mask_t.shape, arr.dtype)
            np.copyto(buf, arr.T)
            return buf[mask_t]

        sig = take(self._stats["resid_vol"] if self._se_sigma is None else self._se_sigma)
        est = np.empty((len(t_idx), P))
        se = np.empty((len(t_idx), P))
        for i in range(P):
            est[:, i] = take(self._coef[i])
            np.multiply(take(self._se_factor[i]), sig, out=se[:, i])
        st = self._stats
        return WindowColumns(
            self.index, self.assets, self.terms, t_idx.astype(np.int64), a_idx.astype(np.int64),
            est, se, take(st["r2"]), take(st["resid_vol"]), take(st["nobs"]).astype(np.int32),
            take(st["converged"]).astype(bool), take(st["n_iter"]).astype(np.int32),
            self.n_params, self.meta.normal_inference)

    def tidy(self, keep: str = "estimate") -> dict[str, np.ndarray]:
        """The long form, one row per (date, asset, term), as numpy arrays named
        ``TIDY_COLUMNS``; date-major, then asset, then term order."""
        return self.windows(keep).tidy()

    def to_frame(self, dropna: bool = True) -> pd.DataFrame:
        """Tidy long frame ``TIDY_COLUMNS`` sorted by date, asset, term. ``dropna=False`` keeps
        every window that has at least one valid row (estimate NaN where there is none)."""
        cols = self.tidy("estimate" if dropna else "valid")
        return pd.DataFrame(cols, columns=list(TIDY_COLUMNS))

    @classmethod
    def from_frame(cls, tidy: pd.DataFrame, *, index: pd.Index | None = None,
                   assets: pd.Index | None = None, terms: list[str] | None = None,
                   meta: FitMeta | None = None,
                   settings: Mapping[str, Any] | None = None) -> RollingFit:
        """Rebuild a fit from its tidy long form (the inverse of ``to_frame``).

        ``tidy`` needs ``date, asset, term, estimate, std_error, r2, resid_vol, nobs``
        (``t_stat`` and ``p_value`` are recomputed); optional ``converged`` and ``n_iter`` columns are used when
        present, otherwise ``converged`` is True where there is an estimate and ``n_iter`` 0.
        ``index`` / ``assets`` / ``terms`` default to the sorted dates and assets of the rows and
        their terms (``"alpha"`` first); pass them to keep dates or assets without any row.
        Windows absent from ``tidy`` are NaN (``nobs`` 0).
        """
        need = ["date", "asset", "term", "estimate", "std_error", "r2", "resid_vol", "nobs"]
        missing = [c for c in need if c not in tidy.columns]
        if missing:
            raise FitError(f"from_frame: tidy frame lacks column(s) {missing}")
        if index is None:
            index = pd.DatetimeIndex(pd.unique(tidy["date"]), name="date").sort_values()
        if assets is None:
            assets = pd.Index(sorted(pd.unique(tidy["asset"])), dtype=object, name="asset")
        if terms is None:
            found = [str(t) for t in pd.unique(tidy["term"])]
            terms = (["alpha"] if "alpha" in found else []) + [t for t in found if t != "alpha"]
        cols = {c: tidy[c].to_numpy() for c in tidy.columns}
        return cls._from_columns(cols, index, assets, list(terms), meta=meta, settings=settings,
                                 where="from_frame")

    @classmethod
    def from_windows(cls, w: WindowColumns, *, meta: FitMeta | None = None) -> RollingFit:
        """Rebuild a fit from its window rows (the inverse of ``windows()``): dates, assets and
        terms are ``w``'s; windows without a row are NaN (``nobs`` 0, not converged)."""
        P, A, T = len(w.terms), len(w.assets), len(w.index)
        ti, ai = w.date_pos, w.asset_pos
        coef = np.full((P, A, T), np.nan)
        stderr = np.full((P, A, T), np.nan)
        coef[:, ai, ti] = w.estimate.T
        stderr[:, ai, ti] = w.std_error.T
        stats = {"r2": np.full((A, T), np.nan), "resid_vol": np.full((A, T), np.nan),
                 "nobs": np.zeros((A, T), np.int32), "converged": np.zeros((A, T), bool),
                 "n_iter": np.zeros((A, T), np.int32)}
        for k, arr in stats.items():
            arr[ai, ti] = getattr(w, k)
        return cls(index=w.index, assets=w.assets, terms=w.terms, coef=coef, stderr=stderr,
                   meta=meta, **stats)

    @classmethod
    def _from_columns(cls, cols: Mapping[str, np.ndarray], index: pd.Index, assets: pd.Index,
                      terms: list[str], *, meta: FitMeta | None, settings: Any,
                      where: str, date_key: Any = None, asset_key: Any = None) -> RollingFit:
        P, A, T = len(terms), len(assets), len(index)
        ti = (date_key or (lambda i: i))(index).get_indexer(pd.Index(cols["date"]))
        ai = (asset_key or (lambda i: i))(assets).get_indexer(pd.Index(cols["asset"]))
        ki = pd.Index(terms).get_indexer(pd.Index(cols["term"]))
        if (ti < 0).any() or (ai < 0).any() or (ki < 0).any():
            raise FitError(f"{where}: rows do not match the given dates/assets/terms")
        coef = np.full((P, A, T), np.nan)
        stderr = np.full((P, A, T), np.nan)
        coef[ki, ai, ti] = np.asarray(cols["estimate"], dtype=float)
        stderr[ki, ai, ti] = np.asarray(cols["std_error"], dtype=float)
        stats = {"r2": np.full((A, T), np.nan), "resid_vol": np.full((A, T), np.nan),
                 "nobs": np.zeros((A, T), np.int32), "converged": np.zeros((A, T), bool),
                 "n_iter": np.zeros((A, T), np.int32)}
        for k, arr in stats.items():
            if k in cols:
                arr[ai, ti] = np.asarray(cols[k]).astype(arr.dtype)
        if "converged" not in cols:
            stats["converged"] = np.isfinite(coef[0])
        return cls(index=index, assets=assets, terms=terms, coef=coef, stderr=stderr,
                   meta=meta, settings=settings, **stats)

    # ---- parquet ----------------------------------------------------------------------------
    def to_parquet(self, path: str | PathLike) -> None:
        """Write the fit (every window with a valid row) to one parquet file, atomically.

        FitError, before anything is written, when the labels cannot round-trip: assets must be
        unique and all strings or all integers; dates a DatetimeIndex, a PeriodIndex, or unique
        integers / strings / floats; no MultiIndex on either axis.
        """
        from quantfit._parquet import write_fit

        write_fit(self, path)

    @classmethod
    def read_parquet(cls, path: str | PathLike) -> RollingFit:
        """Read a file written by ``to_parquet`` back into an identical ``RollingFit``."""
        from quantfit._parquet import read_fit

        return read_fit(cls, path)


# ------------------------------------------------------------------------------- helpers
def _mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    torch = sys.modules.get("torch")  # torch multiplies on every core; reading never loads it
    if torch is not None and a.flags.writeable and b.flags.writeable and a.dtype == b.dtype:
        return torch.mul(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    return a * b


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    torch = sys.modules.get("torch")
    if torch is not None and a.flags.writeable and b.flags.writeable and a.dtype == b.dtype:
        return torch.div(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / b


def _shared_row(arr: np.ndarray) -> np.ndarray | None:
    """The one row of a flag that every asset shares (a stride-0 broadcast), else None."""
    if arr.ndim == 2 and (arr.shape[0] == 1 or arr.strides[0] == 0):
        return arr[:1]
    return None


def _positions(sel: Any, n: int) -> Any:
    if sel is None:
        return slice(None)
    if isinstance(sel, slice):
        return sel
    arr = np.asarray(sel)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise FitError(f"a boolean selection needs {n} entries, got {arr.shape}")
        return np.flatnonzero(arr)
    if arr.dtype.kind not in "iu":
        raise FitError("isel takes positions (slices, integers or a boolean mask)")
    return arr.astype(np.int64)


def _as_range(pos: Any, n: int) -> Any:
    return range(n)[pos] if isinstance(pos, slice) else pos


def _labels(index: pd.Index, sel: Any, what: str) -> Any:
    if sel is None:
        return None
    if isinstance(sel, slice):
        try:
            return index.slice_indexer(sel.start, sel.stop, sel.step)
        except (KeyError, TypeError, ValueError) as exc:
            raise FitError(f"sel({what}=...): {exc}") from None
    labels = [sel] if isinstance(sel, (str, bytes)) or np.isscalar(sel) else list(sel)
    if isinstance(index, pd.DatetimeIndex):
        try:
            labels = list(pd.DatetimeIndex(labels, tz=index.tz))
        except (TypeError, ValueError) as exc:
            raise FitError(f"sel({what}=...): {exc}") from None
    pos = index.get_indexer(pd.Index(labels)) if index.is_unique else None
    if pos is None:
        raise FitError(f"sel({what}=...) needs unique {what} to select by label")
    if (pos < 0).any():
        bad = [lab for lab, p in zip(labels, pos) if p < 0][:5]
        raise FitError(f"sel({what}=...): not in the fit: {bad}")
    return pos
