"""Overlays: a revised asset's rows written once per night, not by rewriting its group's months.

Yahoo re-adjusts a ticker's whole history at every dividend and split, so on most nights some
tickers of every group are refitted from their first date. Merging their new rows into each
(group, month) file would rewrite the whole result set for a handful of tickers. Instead the
nightly job writes one **overlay** file per group and night: every window of the refitted
assets, sorted by date, in the group's schema (see ``encoding``). Its manifest entry::

    {"file": "overlays/part-<group>-<generation>-<id>.parquet", "rows": ..., "bytes": ...,
     "first": ..., "last": ...,          # the span of its rows (None when it has none)
     "through": "YYYY-MM-DD",            # the last date of the fit that wrote it
     "assets": [codes]}                  # the assets it replaces (codes in the group's list)

The rule, applied by every reader and by the job when it rewrites a month: in a month whose
part file is **older** than the overlay (a smaller generation in its name; or no part file),
the overlay's assets' rows dated up to ``through`` are those of the overlay, whatever the part
file holds. A part file written later already folded the overlays before it (the job rewrites
a month from its overlaid view), so overlays are skipped there. Several overlays apply in
generation order. The job folds a group's overlays (rewrites the months they apply to) when it has
``MAX_OVERLAYS`` of them (fewer for some groups, so that folds are staggered over nights), so
a month is never read with more than that.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from quantfit.results_store.encoding import dictionary_of, file_schema, with_dictionary

#: A group's overlays are folded into its month files once it has this many (a month read
#: then opens at most this many extra files).
MAX_OVERLAYS = 8
#: Groups fold at MAX_OVERLAYS - (group number % FOLD_SPREAD) overlays, staggered.
FOLD_SPREAD = 4
#: A refit reaching back fewer months than this merges into the month files directly.
OVERLAY_MIN_MONTHS = 3

_GENERATION = re.compile(r"/part-\d{4,}-(\d+)-[0-9a-f]{12}\.parquet$")


def generation_of(entry: dict | None) -> int:
    """The generation that wrote a part or overlay file (from its name); 0 for no file."""
    if entry is None:
        return 0
    m = _GENERATION.search(entry["file"])
    return int(m.group(1)) if m else 0


def month_span(month: str) -> tuple[str, str]:
    """The first and last ISO date of ``YYYY-MM``."""
    first = np.datetime64(month, "D")
    last = (np.datetime64(month, "M") + 1).astype("datetime64[D]") - 1
    return str(first), str(last)


def applicable(overlays: list[dict], month: str, base: dict | None) -> list[dict]:
    """The overlays that change ``month`` over its part file ``base`` (None: no file), in order."""
    gen, first = generation_of(base), month_span(month)[0]
    return sorted((o for o in overlays if generation_of(o) > gen and o["through"] >= first),
                  key=generation_of)


def apply(base: pa.Table, layers: Iterable[tuple[dict, pa.Table]]) -> pa.Table:
    """``base`` rows with each overlay's assets' rows up to its ``through`` replaced by the
    overlay's rows (``layers``: (entry, its rows in the same month and columns), in order).

    Dictionaries are unified on the longer asset list (a group's list only grows at its end).
    Rows are not sorted (readers sort; the job sorts what it writes).
    """
    out = base
    for entry, rows in layers:
        longest = max((dictionary_of(t) for t in (out, rows)), key=len)
        out, rows = with_dictionary(out, longest), with_dictionary(rows, longest)
        if out.num_rows:
            codes = out.column("asset").combine_chunks().indices
            days = out.column("date").combine_chunks()
            through = pa.scalar(_day(entry["through"]), pa.date32())
            hit = pc.and_(pc.is_in(codes, value_set=pa.array(entry["assets"], pa.int32())),
                          pc.less_equal(days, through))
            if pc.any(hit).as_py():
                out = out.filter(pc.invert(hit))
        if rows.num_rows:
            out = pa.concat_tables([out, rows.select(out.column_names).cast(out.schema)])
    return out


@dataclass
class GroupFiles:
    """A group's committed files: ``months`` (month -> part entry), ``overlays`` (entries in
    generation order) and the estimate count of its assets (``asset_rows``: what the job needs
    to keep the manifest's per-asset counts exact when an overlay replaces an asset's rows)."""

    months: dict[str, dict] = field(default_factory=dict)
    overlays: list[dict] = field(default_factory=list)
    asset_rows: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.months or self.overlays)


class GroupView:
    """Reads a group's months as the rule above says (overlays read once, then sliced).

    ``rs``: the ``ResultSet``; ``lo``/``hi``: ISO dates bounding what will be read (None:
    unbounded), so overlays are read only over that range.
    """

    def __init__(self, rs, files: GroupFiles, terms, lo: str | None = None, hi: str | None = None):
        self.rs, self.files, self.terms = rs, files, list(terms)
        self.lo, self.hi = lo, hi
        self._tables: dict[str, pa.Table] = {}

    def months(self) -> list[str]:
        """Months in ``lo..hi`` with a part file or overlay rows."""
        months = set(self.files.months)
        for o in self.files.overlays:
            if o["rows"]:
                t = self._overlay(o)
                if t.num_rows:
                    days = pc.unique(t.column("date")).to_numpy(zero_copy_only=False)
                    months |= {str(m) for m in np.unique(days.astype("datetime64[M]"))}
        return sorted(m for m in months if self._in_range(m))

    def _in_range(self, month: str) -> bool:
        first, last = month_span(month)
        return (self.lo is None or last >= self.lo) and (self.hi is None or first <= self.hi)

    def inside(self, month: str) -> bool:
        """Whether every date of ``month`` is in ``lo..hi``."""
        first, last = month_span(month)
        return (self.lo is None or first >= self.lo) and (self.hi is None or last <= self.hi)

    def _overlay(self, entry: dict) -> pa.Table:
        if entry["file"] not in self._tables:
            filters = [f for f in (None if self.lo is None else ("date", ">=", _day(self.lo)),
                                   None if self.hi is None else ("date", "<=", _day(self.hi)))
                       if f is not None]
            self._tables[entry["file"]] = self.rs.read_part(entry, filters or None) \
                if entry["rows"] else file_schema(self.terms).empty_table()
        return self._tables[entry["file"]]

    def month(self, month: str, filters=None, columns=None) -> pa.Table:
        """The month's rows (``filters``: pyarrow filters on the date; ``columns``: a subset)."""
        base_entry = self.files.months.get(month)
        layers = applicable(self.files.overlays, month, base_entry)
        cols = columns if columns is None or not layers else \
            list(dict.fromkeys(["date", "asset", *columns]))
        base = self.rs.read_part(base_entry, filters, cols) if base_entry is not None else \
            file_schema(self.terms).empty_table().select(cols or file_schema(self.terms).names)
        if not layers:
            return base
        first, last = month_span(month)
        cut = [("date", ">=", _day(first)), ("date", "<=", _day(last)), *(filters or [])]
        out = apply(base, [(o, _filter(self._overlay(o), cut).select(base.column_names))
                           for o in layers])
        return out.select(columns) if columns is not None else out


def _day(iso: str):
    return np.datetime64(iso, "D").astype(object)


def _filter(table: pa.Table, filters) -> pa.Table:
    """``table`` rows passing pyarrow-style ``filters`` (what ``read_part`` takes)."""
    return table.filter(pq.filters_to_expression(filters)) if filters else table


def group_files(manifest: dict) -> dict[int, GroupFiles]:
    """Every group's committed files from a manifest (groups without files are absent)."""
    rows = manifest.get("asset_rows", {})
    out: dict[int, GroupFiles] = {}
    overlays = manifest.get("overlays", {})
    for g in sorted({*manifest["files"], *overlays}, key=int):
        assets = manifest["groups"][int(g)]["assets"]
        out[int(g)] = GroupFiles(dict(manifest["files"].get(g, {})), list(overlays.get(g, [])),
                                 {a: rows[a] for a in assets if a in rows})
    return out
