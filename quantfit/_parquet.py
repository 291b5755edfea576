"""The parquet form of a ``RollingFit``: tidy rows (``RollingFit.tidy("valid")``) plus, in the
file's metadata, the exact dates, asset order, terms, metadata and loss history.

Labels travel as JSON descriptions (``_Labels``): a DatetimeIndex (with its unit and time zone),
a PeriodIndex (frequency and ordinals), or unique integers / strings / floats with their dtype.
Labels that cannot round-trip exactly are refused before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np
import pandas as pd

from quantfit.errors import FitError

_META_KEY = b"quantfit.rolling_fit"
_FORMAT = 2


def write_fit(fit, path: str | PathLike) -> None:
    """``RollingFit.to_parquet``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from quantfit._atomic import atomic_open

    dates, assets = _Labels.of(fit.index, "dates"), _Labels.of(fit.assets, "assets")
    cols = fit.tidy("valid")
    arrays = {name: pa.array(v) for name, v in cols.items()
              if name not in ("date", "asset", "term")}
    table = pa.table({
        "date": dates.column(cols["date"]), "asset": assets.column(cols["asset"]),
        "term": pa.array(cols["term"].astype(str), pa.string()), **arrays})
    meta = {"format": _FORMAT, "terms": fit.terms, "assets": assets.json,
            "index": dates.json, "meta": fit.meta.to_dict(),
            "history": None if fit.history is None else np.asarray(fit.history).tolist()}
    md = dict(table.schema.metadata or {})
    md[_META_KEY] = json.dumps(meta).encode()
    with atomic_open(path, "wb") as fh:
        pq.write_table(table.replace_schema_metadata(md), fh)


def read_fit(cls, path: str | PathLike):
    """``RollingFit.read_parquet``: the fit class ``cls`` rebuilt from the file."""
    import pyarrow.parquet as pq

    from quantfit.results import FitMeta

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(_META_KEY)
    if raw is None:
        raise FitError(f"{path}: not a quantfit RollingFit parquet file")
    m = json.loads(raw)
    if m.get("format") not in (1, _FORMAT):
        raise FitError(f"{path}: RollingFit file format {m.get('format')} is not supported")
    index, assets = _Labels.from_json(m["index"]), _Labels.from_json(m["assets"])
    cols = {name: (table.column(name).to_pandas() if name in ("date", "asset")
                   else table.column(name).to_numpy()) for name in table.column_names}
    meta = FitMeta.from_dict(m["meta"]) if "meta" in m else None
    fit = cls._from_columns(cols, index.index, assets.index, list(m["terms"]), meta=meta,
                            settings=m.get("settings"), where=str(path),
                            date_key=lambda i: index.key(), asset_key=lambda i: assets.key())
    if m.get("history") is not None:
        fit.history = np.asarray(m["history"], dtype=np.float64)
    return fit


@dataclass
class _Labels:
    """Dates or assets as they travel in a parquet file: a JSON description of the index and
    the values written in the tidy rows (``key()`` maps the index onto them)."""

    index: pd.Index
    kind: str
    json: dict[str, Any]

    @classmethod
    def of(cls, idx: pd.Index, what: str) -> _Labels:
        if isinstance(idx, pd.MultiIndex):
            raise FitError(f"to_parquet: {what} are a MultiIndex; flatten it to one level first")
        if not idx.is_unique:
            dup = idx[idx.duplicated()].unique()[:5].tolist()
            raise FitError(f"to_parquet: {what} must be unique to be written; repeated: {dup}")
        name = idx.name
        if name is not None and not isinstance(name, (str, int)):
            raise FitError(f"to_parquet: the {what} index name {name!r} is not a string")
        base: dict[str, Any] = {"name": name}
        if isinstance(idx, pd.DatetimeIndex):
            kind = "datetime"
            base.update(unit=idx.unit, tz=None if idx.tz is None else str(idx.tz),
                        values=idx.asi8.tolist())
        elif isinstance(idx, pd.PeriodIndex):
            kind = "period"
            base.update(freq=idx.freqstr, values=idx.asi8.tolist())
        else:
            vals = idx.to_numpy()
            inferred = pd.api.types.infer_dtype(vals, skipna=False)
            values: list[int] | list[str] | list[float]
            if any(isinstance(v, tuple) for v in vals):
                raise FitError(f"to_parquet: {what} labels are tuples; flatten them to strings "
                               f"first")
            if inferred in ("mixed-integer", "mixed-integer-float"):
                raise FitError(f"to_parquet: {what} labels mix numbers and strings; make them "
                               f"all strings or all integers")
            if inferred == "integer" and vals.dtype.kind in "iuO":
                kind, values = "int", [int(v) for v in vals]
            elif inferred == "string":
                kind, values = "str", [str(v) for v in vals]
            elif inferred == "floating" and what == "dates":
                kind, values = "float", [float(v) for v in vals]
            else:
                raise FitError(f"to_parquet: {what} of type {inferred!r} cannot be written; "
                               f"use {'a DatetimeIndex, a PeriodIndex, ' if what == 'dates' else ''}"
                               f"all-string or all-integer labels")
            base.update(values=values, dtype=str(idx.dtype))
        base["kind"] = kind
        return cls(idx, kind, base)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> _Labels:
        kind = d["kind"]
        if kind == "datetime":
            arr = np.asarray(d["values"], dtype=np.int64).view(f"datetime64[{d['unit']}]")
            idx = pd.DatetimeIndex(arr, name=d["name"])
            idx = idx.tz_localize("UTC").tz_convert(d["tz"]) if d["tz"] else idx
        elif kind == "period":
            idx = pd.PeriodIndex.from_ordinals(np.asarray(d["values"], dtype=np.int64),
                                               freq=d["freq"], name=d["name"])
        elif kind in ("int", "float", "str"):
            idx = pd.Index(d["values"], dtype=d.get("dtype"), name=d["name"])
        elif kind == "values":  # format 1
            idx = pd.Index(d["values"], name=d["name"])
        else:
            raise FitError(f"unknown label kind {kind!r}")
        return cls(idx, kind, dict(d))

    def column(self, values: np.ndarray):
        import pyarrow as pa
        if self.kind == "datetime":
            return pa.array(pd.DatetimeIndex(values) if self.index.tz is None else
                            pd.DatetimeIndex(values).tz_convert(self.index.tz))
        if self.kind == "period":
            return pa.array([str(v) for v in values], pa.string())
        if self.kind == "int":
            return pa.array(np.asarray(values, dtype=np.int64))
        if self.kind == "float":
            return pa.array(np.asarray(values, dtype=np.float64))
        return pa.array(np.asarray(values, dtype=object).astype(str), pa.string())

    def key(self) -> pd.Index:
        """The index as the values the file's rows carry."""
        if self.kind == "period":
            return pd.Index([str(v) for v in self.index])
        if self.kind == "datetime" and self.index.tz is not None:
            return self.index
        return self.index
