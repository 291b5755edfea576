"""How a result set's rows are encoded on disk, and turned back into the public shapes.

One row per (date, asset) window **with an estimate**, in parquet files of one asset group and
one calendar month. Columns, in this order:

    date                  date32         the window's last date (the date the estimate is "on")
    asset                 dictionary     the asset's name; the dictionary is the group's asset list
    estimate[<term>]      float64        one pair per term, in the result set's term order
    std_error[<term>]     float64
    r2, resid_vol         float64
    nobs                  int32          valid rows in the window
    converged             bool
    n_iter                int32

Rows are sorted by (asset in group order, date): a chunk of the engine's (assets × dates)
output is cut into months by slicing dates, so writing needs no global reordering.

The public tidy shape (``date, asset, term, estimate, std_error, t_stat, r2, resid_vol, nobs,
converged, n_iter``, sorted by date, asset, term) is rebuilt on read (``to_tidy``); ``t_stat``
is ``estimate / std_error``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

#: Per-window statistics after the term columns: name -> arrow type.
STATS: dict[str, pa.DataType] = {
    "r2": pa.float64(), "resid_vol": pa.float64(), "nobs": pa.int32(),
    "converged": pa.bool_(), "n_iter": pa.int32(),
}
DATE_DTYPE = "datetime64[us]"  # the price store's date dtype, so indexes line up
TIDY_COLUMNS = ["date", "asset", "term", "estimate", "std_error", "t_stat", "r2", "resid_vol",
                "nobs", "converged", "n_iter"]


def estimate_column(term: str) -> str:
    return f"estimate[{term}]"


def std_error_column(term: str) -> str:
    return f"std_error[{term}]"


def file_schema(terms: Sequence[str]) -> pa.Schema:
    """The arrow schema of a part file for these terms."""
    fields = [pa.field("date", pa.date32()), pa.field("asset", pa.dictionary(pa.int32(), pa.string()))]
    for t in terms:
        fields += [pa.field(estimate_column(t), pa.float64()), pa.field(std_error_column(t), pa.float64())]
    fields += [pa.field(k, v) for k, v in STATS.items()]
    return pa.schema(fields)


@dataclass
class WindowArrays:
    """A fit's results as arrays: ``coef``/``stderr`` (p, A, T), the statistics (A, T).

    ``dates`` (T,) datetime64, ``assets`` (A,) names, ``terms`` (p,) names. A window has an
    estimate where ``coef[0]`` is finite.
    """

    dates: np.ndarray
    assets: list[str]
    terms: list[str]
    coef: np.ndarray
    stderr: np.ndarray
    r2: np.ndarray
    resid_vol: np.ndarray
    nobs: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray


def month_starts(dates: np.ndarray) -> list[tuple[str, int, int]]:
    """``[(YYYY-MM, first row, end row)]`` of a sorted datetime64 array."""
    months = dates.astype("datetime64[M]")
    cut = np.flatnonzero(np.r_[True, months[1:] != months[:-1], True])
    return [(str(months[s]), int(s), int(e)) for s, e in zip(cut[:-1], cut[1:])]


def month_tables(w: WindowArrays, codes: np.ndarray, dictionary: pa.Array,
                 t_start: int = 0) -> Iterator[tuple[str, pa.Table]]:
    """The windows with an estimate from date row ``t_start`` on, one table per month.

    ``codes`` (A,) int32: each asset's position in ``dictionary`` (its group's asset list).
    One pass finds the rows and orders them by (month, asset, date); each month is then a
    contiguous slice of every column (no per-month masking of strided slices).
    """
    schema = file_schema(w.terms)
    A, T = w.coef.shape[1:]
    dates = w.dates[t_start:]
    keep = np.isfinite(w.coef[0][:, t_start:])  # (A, T')
    a_idx, t_idx = np.nonzero(keep)  # asset-major, dates ascending within an asset
    if not len(a_idx):
        return
    spans = month_starts(dates)
    col_month = np.repeat(np.arange(len(spans), dtype=np.int32), [e - s for _, s, e in spans])
    order = np.argsort(col_month[t_idx], kind="stable")  # by month; asset-major within one
    flat = (a_idx.astype(np.int64) * T + (t_idx + t_start))[order]
    t_sorted = t_idx[order]
    n_per = np.bincount(col_month[t_sorted], minlength=len(spans))
    cuts = np.r_[0, np.cumsum(n_per)]
    days = dates.astype("datetime64[D]").astype(np.int32)[t_sorted]
    asset_codes = codes.astype(np.int32)[a_idx[order]]
    columns = [days, asset_codes]
    for i in range(len(w.terms)):
        columns += [w.coef[i].reshape(-1)[flat], w.stderr[i].reshape(-1)[flat]]
    for k, typ in STATS.items():
        columns.append(np.asarray(getattr(w, k), dtype=typ.to_pandas_dtype()).reshape(-1)[flat])
    del flat, order
    for m, (month, _, _) in enumerate(spans):
        lo, hi = int(cuts[m]), int(cuts[m + 1])
        if hi == lo:
            continue
        cols: list[pa.Array] = [
            pa.array(columns[0][lo:hi], pa.int32()).cast(pa.date32()),
            pa.DictionaryArray.from_arrays(pa.array(columns[1][lo:hi], pa.int32()), dictionary),
        ]
        cols += [pa.array(c[lo:hi]) for c in columns[2:]]
        yield month, pa.Table.from_arrays(cols, schema=schema)


def merge_month(old: pa.Table | None, new: pa.Table, replace: dict[int, int]) -> pa.Table:
    """``old`` rows of a (group, month) file, less those ``new`` replaces, plus ``new``.

    ``replace`` maps an asset code to the first day number (days since 1970) from which its old
    rows are superseded (assets recomputed from that date). New rows always win on the same
    (asset, date). Result sorted by (asset code, date).
    """
    if old is None or old.num_rows == 0:
        return _sorted(new)
    o_codes = old.column("asset").combine_chunks().indices.to_numpy(zero_copy_only=False)
    o_days = old.column("date").combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
    n_codes = new.column("asset").combine_chunks().indices.to_numpy(zero_copy_only=False)
    n_days = new.column("date").combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
    drop = np.zeros(old.num_rows, dtype=bool)
    if replace:
        cut = np.full(int(max(o_codes.max(initial=0), max(replace))) + 1, np.iinfo(np.int32).max,
                      dtype=np.int64)
        for code, day in replace.items():
            cut[code] = day
        drop |= o_days >= cut[o_codes]
    if len(n_codes):  # the same (asset, date) in both: the new row wins
        drop |= np.isin(o_codes.astype(np.int64) << 32 | o_days,
                        n_codes.astype(np.int64) << 32 | n_days)
    kept = old.filter(pa.array(~drop)) if drop.any() else old
    return _sorted(pa.concat_tables([kept, new.cast(old.schema)]))


def _sorted(table: pa.Table) -> pa.Table:
    codes = table.column("asset").combine_chunks().indices.to_numpy(zero_copy_only=False)
    days = table.column("date").combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
    order = np.lexsort((days, codes))
    if (order == np.arange(len(order))).all():
        return table.combine_chunks()
    return table.take(pa.array(order)).combine_chunks()


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy()


def to_tidy(table: pa.Table, terms: Sequence[str]) -> pd.DataFrame:
    """Part-file rows -> the public tidy frame, sorted by date, asset, term."""
    n, p = table.num_rows, len(terms)
    cat = pd.Categorical(table.column("asset").to_pandas()) if n else pd.Categorical([])
    names = np.asarray(cat.categories.astype(str), dtype=object)
    rank = np.argsort(np.argsort(names, kind="stable"), kind="stable")  # category -> sorted position
    asset = names[cat.codes] if n else np.empty(0, object)
    dates = table.column("date").to_numpy().astype(DATE_DTYPE) if n else np.empty(0, DATE_DTYPE)
    order = np.lexsort((rank[cat.codes], dates)) if n else np.empty(0, np.int64)
    est = np.stack([_column(table, estimate_column(t)) for t in terms], 1)[order] if n else np.empty((0, p))
    se = np.stack([_column(table, std_error_column(t)) for t in terms], 1)[order] if n else np.empty((0, p))
    with np.errstate(divide="ignore", invalid="ignore"):
        ts = est / se
    rep = lambda a: np.repeat(a[order], p)  # noqa: E731
    frame = pd.DataFrame({
        "date": rep(dates), "asset": rep(asset),
        "term": np.tile(np.asarray(list(terms), dtype=object), n),
        "estimate": est.ravel(), "std_error": se.ravel(), "t_stat": ts.ravel(),
        **{k: rep(_column(table, k)) if n else np.empty(0, STATS[k].to_pandas_dtype())
           for k in STATS},
    })
    frame["date"] = pd.to_datetime(frame["date"]).astype(DATE_DTYPE)
    return frame
