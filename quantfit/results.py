"""``RollingFit``: the result of ``qf.fit_rolling`` as pandas objects.

Every accessor returns a DataFrame indexed like the input (dates × assets):
``coef(term)``, ``stderr(term)``, ``tstat(term)`` for a term (a factor name or ``"alpha"``),
``beta`` / ``alpha`` shortcuts, and the per-window ``r2``, ``resid_vol``, ``nobs``,
``converged``, ``n_iter``. Cells without an estimate (too few rows, singular window, diverged
solver) are NaN; ``nobs`` counts the valid rows of every window even where there is no estimate.

``to_frame()`` gives the tidy long form (one row per date, asset and term) and
``to_parquet`` / ``RollingFit.read_parquet`` round-trip a fit exactly (the full date index,
asset order, terms and fit settings travel in the parquet metadata).
"""

from __future__ import annotations

import json
import sys
from os import PathLike
from typing import Any

import numpy as np
import pandas as pd

from quantfit.errors import FitError

_META_KEY = b"quantfit.rolling_fit"
_FORMAT = 1


class RollingFit:
    """Rolling regression results for many assets.

    Arrays are stored asset-major: ``coef`` and ``stderr`` (p, A, T), the others (A, T), with
    ``terms`` naming the p parameters (``"alpha"`` first when the fit has an intercept).
    """

    def __init__(
        self, *, index: pd.Index, assets: pd.Index, terms: list[str],
        coef: np.ndarray, stderr: np.ndarray, r2: np.ndarray, resid_vol: np.ndarray,
        nobs: np.ndarray, converged: np.ndarray, n_iter: np.ndarray,
        settings: dict[str, Any] | None = None,
    ):
        p, A, T = coef.shape
        if (len(terms), len(assets), len(index)) != (p, A, T):
            raise FitError(f"RollingFit: shapes {coef.shape} do not match terms/assets/dates")
        self.index = index
        self.assets = assets
        self.terms = list(terms)
        self.settings = dict(settings or {})
        self._coef, self._stderr = coef, stderr
        self._stats = {"r2": r2, "resid_vol": resid_vol, "nobs": nobs,
                       "converged": converged, "n_iter": n_iter}
        self._frames: dict[tuple[str, str], pd.DataFrame] = {}
        #: Mean loss over the windows after each iteration (``fit_rolling(history=True)``).
        self.history: np.ndarray | None = None

    # ---- accessors ------------------------------------------------------------------------
    @property
    def factors(self) -> list[str]:
        """The factor terms (every term but ``"alpha"`` and derived terms such as
        ``"beta_dimson"``), in the order of x's columns."""
        derived = set(self.settings.get("derived", ()))
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

    def stderr(self, term: str) -> pd.DataFrame:
        """Classical OLS/WLS standard error of ``term``: √(σ² [(ZᵀWZ)⁻¹]_jj), σ² = RSS/(n−p)."""
        return self._frame("stderr", term, self._stderr[self._term(term)])

    def tstat(self, term: str) -> pd.DataFrame:
        """``coef(term) / stderr(term)``."""
        i = self._term(term)
        c, s = self._coef[i], self._stderr[i]
        # torch divides on every core, numpy on one; but reading results never loads torch.
        torch = sys.modules.get("torch")
        if torch is not None and c.flags.writeable and s.flags.writeable:
            t = torch.div(torch.from_numpy(c), torch.from_numpy(s)).numpy()
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                t = c / s
        return pd.DataFrame(t.T, index=self.index, columns=self.assets, copy=False)

    @property
    def beta(self) -> pd.DataFrame:
        """Coefficient of the only factor (FitError when the fit has several); for a Dimson fit
        (``lags=``) the summed market coefficient, term ``"beta_dimson"``."""
        if self.settings.get("beta_term"):
            return self.coef(self.settings["beta_term"])
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
        s = self.settings
        win = "expanding" if s.get("expanding") else f"window={s.get('window')}"
        return (f"<RollingFit {len(self.index)} dates x {len(self.assets)} assets, "
                f"terms={self.terms}, {win}, solver={s.get('solver')!r}>")

    # ---- long form and parquet -------------------------------------------------------------
    def to_frame(self, dropna: bool = True) -> pd.DataFrame:
        """Tidy long frame: ``date, asset, term, estimate, std_error, t_stat, r2, resid_vol,
        nobs`` sorted by date, asset, term. ``dropna=False`` keeps every window that has at
        least one valid row (estimate NaN where there is none)."""
        keep = np.isfinite(self._coef[0]) if dropna else self._stats["nobs"] > 0  # (A, T)
        t_idx, a_idx = np.nonzero(keep.T)  # date-major order
        p = len(self.terms)
        est = self._coef[:, a_idx, t_idx].T  # (n, p)
        se = self._stderr[:, a_idx, t_idx].T
        with np.errstate(divide="ignore", invalid="ignore"):
            ts = est / se
        rep = lambda a: np.repeat(a, p)  # noqa: E731
        frame = pd.DataFrame({
            "date": self.index.take(t_idx).repeat(p),
            "asset": self.assets.take(a_idx).repeat(p),
            "term": np.tile(np.asarray(self.terms, dtype=object), len(t_idx)),
            "estimate": est.ravel(), "std_error": se.ravel(), "t_stat": ts.ravel(),
            **{k: rep(self._stats[k][a_idx, t_idx]) for k in ("r2", "resid_vol", "nobs")},
        })
        return frame

    @classmethod
    def from_frame(cls, tidy: pd.DataFrame, *, index: pd.Index | None = None,
                   assets: pd.Index | None = None, terms: list[str] | None = None,
                   settings: dict[str, Any] | None = None) -> RollingFit:
        """Rebuild a fit from its tidy long form (the inverse of ``to_frame``).

        ``tidy`` needs ``date, asset, term, estimate, std_error, r2, resid_vol, nobs``
        (``t_stat`` is recomputed); optional ``converged`` and ``n_iter`` columns are used when
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
        p, A, T = len(terms), len(assets), len(index)
        ti = index.get_indexer(pd.Index(tidy["date"]))
        ai = assets.get_indexer(pd.Index(tidy["asset"]))
        ki = pd.Index(terms).get_indexer(pd.Index(tidy["term"]))
        if (ti < 0).any() or (ai < 0).any() or (ki < 0).any():
            raise FitError("from_frame: rows do not match the given dates/assets/terms")
        coef = np.full((p, A, T), np.nan)
        stderr = np.full((p, A, T), np.nan)
        coef[ki, ai, ti] = tidy["estimate"].to_numpy(float)
        stderr[ki, ai, ti] = tidy["std_error"].to_numpy(float)
        stats = {"r2": np.full((A, T), np.nan), "resid_vol": np.full((A, T), np.nan),
                 "nobs": np.zeros((A, T), np.int32), "converged": np.zeros((A, T), bool),
                 "n_iter": np.zeros((A, T), np.int32)}
        for k in ("r2", "resid_vol", "nobs", "converged", "n_iter"):
            if k in tidy.columns:
                stats[k][ai, ti] = tidy[k].to_numpy(stats[k].dtype)
        if "converged" not in tidy.columns:
            stats["converged"] = np.isfinite(coef[0])
        return cls(index=index, assets=assets, terms=terms, coef=coef, stderr=stderr,
                   settings=settings, **stats)

    def to_parquet(self, path: str | PathLike) -> None:
        """Write the fit (every window with a valid row) to one parquet file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        frame = self.to_frame(dropna=False)
        keep = self._stats["nobs"] > 0
        t_idx, a_idx = np.nonzero(keep.T)
        p = len(self.terms)
        frame["converged"] = np.repeat(self._stats["converged"][a_idx, t_idx], p)
        frame["n_iter"] = np.repeat(self._stats["n_iter"][a_idx, t_idx], p)
        meta = {"format": _FORMAT, "terms": self.terms, "assets": _index_to_json(self.assets),
                "index": _index_to_json(self.index), "settings": self.settings}
        table = pa.Table.from_pandas(frame, preserve_index=False)
        md = dict(table.schema.metadata or {})
        md[_META_KEY] = json.dumps(meta).encode()
        pq.write_table(table.replace_schema_metadata(md), path)

    @classmethod
    def read_parquet(cls, path: str | PathLike) -> RollingFit:
        """Read a file written by ``to_parquet`` back into an identical ``RollingFit``."""
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(_META_KEY)
        if raw is None:
            raise FitError(f"{path}: not a quantfit RollingFit parquet file")
        meta = json.loads(raw)
        index, assets, terms = _index_from_json(meta["index"]), _index_from_json(meta["assets"]), meta["terms"]
        p, A, T = len(terms), len(assets), len(index)
        df = table.to_pandas()
        ti = index.get_indexer(pd.Index(df["date"]))
        ai = assets.get_indexer(pd.Index(df["asset"]))
        ki = pd.Index(terms).get_indexer(pd.Index(df["term"]))
        if (ti < 0).any() or (ai < 0).any() or (ki < 0).any():
            raise FitError(f"{path}: rows do not match the stored dates/assets/terms")
        coef = np.full((p, A, T), np.nan)
        stderr = np.full((p, A, T), np.nan)
        coef[ki, ai, ti] = df["estimate"].to_numpy(float)
        stderr[ki, ai, ti] = df["std_error"].to_numpy(float)
        stats = {"r2": np.full((A, T), np.nan), "resid_vol": np.full((A, T), np.nan),
                 "nobs": np.zeros((A, T), np.int32), "converged": np.zeros((A, T), bool),
                 "n_iter": np.zeros((A, T), np.int32)}
        for k, arr in stats.items():
            arr[ai, ti] = df[k].to_numpy(arr.dtype)
        return cls(index=index, assets=assets, terms=terms, coef=coef, stderr=stderr,
                   settings=meta["settings"], **stats)


def _index_to_json(idx: pd.Index) -> dict[str, Any]:
    if isinstance(idx, pd.DatetimeIndex):
        return {"kind": "datetime", "unit": idx.unit, "tz": None if idx.tz is None else str(idx.tz),
                "name": idx.name, "values": idx.asi8.tolist()}
    values = [v.item() if isinstance(v, np.generic) else v for v in idx.tolist()]
    return {"kind": "values", "name": idx.name, "values": values}


def _index_from_json(d: dict[str, Any]) -> pd.Index:
    if d["kind"] == "datetime":
        arr = np.asarray(d["values"], dtype=np.int64).view(f"datetime64[{d['unit']}]")
        idx = pd.DatetimeIndex(arr, name=d["name"])
        return idx.tz_localize("UTC").tz_convert(d["tz"]) if d["tz"] else idx
    return pd.Index(d["values"], name=d["name"])
