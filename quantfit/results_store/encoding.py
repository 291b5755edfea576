"""How a result set's rows are encoded on disk, and turned back into the public shapes.

One row per (date, asset) window **with an estimate**, in parquet files of one asset group and
one calendar month. Columns, in this order:

    date                  date32         the window's last date (the date the estimate is "on")
    asset                 dictionary     the asset's name; the dictionary is the group's asset list
    estimate:<term>       float64        one pair per term, in the result set's term order
    std_error:<term>      float64
    r2, resid_vol         float64
    nobs                  int32          valid rows in the window
    converged             bool
    n_iter                int32

These are the columns of ``RollingFit.windows()`` (the one conversion of a fit to rows, also
behind ``to_frame`` and ``to_parquet``), cut into months. Rows are sorted by (date, asset in
group order), as ``windows()`` gives them, so a month is a contiguous slice.

The public tidy shape (``date, asset, term, estimate, std_error, t_stat, p_value, r2,
resid_vol, nobs, converged, n_iter``, sorted by date, asset, term) is rebuilt on read
(``to_tidy``); ``t_stat`` is ``estimate / std_error`` and ``p_value`` its two-sided p-value
(``quantfit.inference``, from ``nobs`` and the run's metadata): derived, not stored.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from quantfit.results import WindowColumns, term_column

#: Per-window statistics after the term columns: name -> arrow type.
STATS: dict[str, pa.DataType] = {
    "r2": pa.float64(), "resid_vol": pa.float64(), "nobs": pa.int32(),
    "converged": pa.bool_(), "n_iter": pa.int32(),
}
DATE_DTYPE = "datetime64[us]"  # the price store's date dtype, so indexes line up


def estimate_column(term: str) -> str:
    return term_column("estimate", term)


def std_error_column(term: str) -> str:
    return term_column("std_error", term)


def file_schema(terms: Sequence[str]) -> pa.Schema:
    """The arrow schema of a part file for these terms."""
    fields = [pa.field("date", pa.date32()), pa.field("asset", pa.dictionary(pa.int32(), pa.string()))]
    for t in terms:
        fields += [pa.field(estimate_column(t), pa.float64()), pa.field(std_error_column(t), pa.float64())]
    fields += [pa.field(k, v) for k, v in STATS.items()]
    return pa.schema(fields)


def month_starts(dates: np.ndarray) -> list[tuple[str, int, int]]:
    """``[(YYYY-MM, first row, end row)]`` of a sorted datetime64 array."""
    months = dates.astype("datetime64[M]")
    cut = np.flatnonzero(np.r_[True, months[1:] != months[:-1], True])
    return [(str(months[s]), int(s), int(e)) for s, e in zip(cut[:-1], cut[1:])]


def month_tables(w: WindowColumns, codes: np.ndarray, dictionary: pa.Array) -> Iterator[tuple[str, pa.Table]]:
    """The rows of ``w`` (``RollingFit.windows()``: date-major) as one table per month.

    ``codes`` (A,) int32: the position of each of the fit's assets in ``dictionary`` (its
    group's asset list). Each month is a contiguous slice of every column (zero-copy).
    """
    schema = file_schema(w.terms)
    if not len(w):
        return
    dates = w.index.values
    days = dates.astype("datetime64[D]").astype(np.int32)[w.date_pos]
    asset_codes = codes.astype(np.int32)[w.asset_pos]
    columns: list[np.ndarray] = [days, asset_codes]
    for i in range(len(w.terms)):
        columns += [w.estimate[:, i], w.std_error[:, i]]
    columns += [np.asarray(getattr(w, k), dtype=typ.to_pandas_dtype()) for k, typ in STATS.items()]
    for month, t0, t1 in month_starts(dates):
        lo, hi = np.searchsorted(w.date_pos, [t0, t1])
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
    (asset, date). Result sorted by (date, asset code), in ``new``'s dictionary: a group's asset
    list only grows at its end (assets added to it), so old codes stay valid.
    """
    if old is None or old.num_rows == 0:
        return _sorted(new)
    old = with_dictionary(old, dictionary_of(new) if new.num_rows else dictionary_of(old))
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


def dictionary_of(table: pa.Table) -> pa.Array:
    col = table.column("asset")
    return col.chunk(0).dictionary if col.num_chunks else pa.array([], pa.string())


def with_dictionary(table: pa.Table, dictionary: pa.Array) -> pa.Table:
    """``table`` with its asset codes over ``dictionary``, which must extend its own."""
    col = table.column("asset").combine_chunks()
    if col.dictionary.equals(dictionary):
        return table
    if len(col.dictionary) > len(dictionary) or not dictionary.slice(0, len(col.dictionary)).equals(col.dictionary):
        raise ValueError("a group's asset list may only grow at its end")
    asset = pa.DictionaryArray.from_arrays(col.indices, dictionary)
    return table.set_column(table.schema.get_field_index("asset"), "asset", asset)


def _sorted(table: pa.Table) -> pa.Table:
    codes = table.column("asset").combine_chunks().indices.to_numpy(zero_copy_only=False)
    days = table.column("date").combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
    order = np.lexsort((codes, days))
    if (order == np.arange(len(order))).all():
        return table.combine_chunks()
    return table.take(pa.array(order)).combine_chunks()


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy()


def to_windows(table: pa.Table, terms: Sequence[str], meta=None) -> WindowColumns:
    """Part-file rows (any order, several groups) -> ``WindowColumns`` sorted by date, then
    asset name: the form ``RollingFit.windows()`` gives, for the one tidy conversion.
    ``meta`` (the run's ``FitMeta``) says how p-values are formed (parameters, distribution)."""
    n = table.num_rows
    cat = pd.Categorical(table.column("asset").to_pandas()) if n else pd.Categorical([])
    names = np.asarray(cat.categories.astype(str), dtype=object)
    rank = np.argsort(np.argsort(names, kind="stable"), kind="stable")  # category -> sorted position
    days = table.column("date").cast(pa.int32()).to_numpy() if n else np.empty(0, np.int32)
    order = np.lexsort((rank[cat.codes], days)) if n else np.empty(0, np.int64)
    uniq_days, date_pos = np.unique(days[order], return_inverse=True)
    assets = pd.Index(np.sort(names), dtype=object, name="asset")
    asset_pos = rank[cat.codes][order].astype(np.int64)
    index = pd.DatetimeIndex(uniq_days.astype("datetime64[D]").astype(DATE_DTYPE), name="date")

    def col(name: str, dtype) -> np.ndarray:
        return _column(table, name).astype(dtype, copy=False)[order] if n else np.empty(0, dtype)

    def pairs(kind) -> np.ndarray:
        if not n:
            return np.empty((0, len(terms)))
        return np.stack([_column(table, term_column(kind, t))[order] for t in terms], 1)

    n_params = None if meta is None else sum(t not in meta.derived for t in terms)
    return WindowColumns(index, assets, list(terms), date_pos.astype(np.int64), asset_pos,
                         pairs("estimate"), pairs("std_error"), col("r2", np.float64),
                         col("resid_vol", np.float64), col("nobs", np.int32),
                         col("converged", bool), col("n_iter", np.int32), n_params,
                         bool(meta is not None and meta.normal_inference))


def to_tidy(table: pa.Table, terms: Sequence[str], meta=None) -> pd.DataFrame:
    """Part-file rows -> the public tidy frame (``TIDY_COLUMNS``), sorted by date, asset, term;
    ``p_value`` formed from the stored columns (``meta``: the run's ``FitMeta``)."""
    frame = pd.DataFrame(to_windows(table, terms, meta).tidy())
    frame["date"] = pd.to_datetime(frame["date"]).astype(DATE_DTYPE)
    return frame
