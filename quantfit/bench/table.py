"""Benchmark output: the markdown table, and JSON that round-trips a ``BenchResult``.

``to_markdown(result)`` gives a GitHub table (one row per method, then a line with the
workload, date and machine); ``write_json(result, path)`` / ``read_json(path)`` store the rows
with every field (seconds, MiB, ratios as plain numbers; None as null) and the metadata.
"""

from __future__ import annotations

import json
import math
from os import PathLike
from pathlib import Path

from quantfit.bench.runner import BenchResult, describe_machine

_FORMAT = 1


def _num(v: float | None, fmt: str) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _seconds(v: float | None) -> str:
    if v is None:
        return "–"
    if v >= 3600:
        return f"{v:,.0f} ({v / 3600:.1f} h)"
    return f"{v:,.3g}" if v < 100 else f"{v:,.0f}"


def _mib(v: float | None) -> str:
    return "–" if v is None else (f"{v:.1f}" if v < 10 else f"{v:,.0f}")


def _ratio(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.3g}×" if v >= 0.01 else f"1/{1 / v:,.0f}"


def to_markdown(result: BenchResult) -> str:
    """The rows as a markdown table plus a caption line (workload, date, machine).

    Times are seconds in the three conditions of ``runner`` (first call in a fresh process /
    best of the repeats / a call after other pandas work), each also as a multiple of pandas'
    time in the same condition."""
    head = ("| method | first call s | best s | after pandas s | vs pandas (first / best / after) "
            "| peak MiB | max \\|Δβ\\| | Δβ against | RMSE vs true β | extrapolated | note |")
    lines = [head, "|" + "---|" * 11]
    for r in result.rows:
        extra = f"yes ({100 * r['fraction']:.2g} % run)" if r.get("extrapolated") else "no"
        if r["status"] != "ok":
            extra = "–"
        ratios = " / ".join(_ratio(r.get(k)) for k in ("first_vs_pandas", "best_vs_pandas",
                                                        "after_vs_pandas"))
        lines.append("| " + " | ".join([
            r["name"], _seconds(r.get("first_s")), _seconds(r.get("best_s")),
            _seconds(r.get("after_pandas_s")), ratios,
            _mib(r["peak_mem_mb"]), _num(r["max_abs_dbeta"], ".1e"),
            r["reference"] or "–", _num(r["rmse_vs_true"], ".3f"), extra,
            (r["note"] or "").replace("|", "/"),
        ]) + " |")
    m = result.meta
    lines.append("")
    lines.append(f"Workload: {m.get('workload', '')}. Device: {m['config']['options']['device']}. "
                 f"{m['date']}. {describe_machine(m)}.")
    return "\n".join(lines)


def to_json(result: BenchResult) -> str:
    """``{"format", "meta", "rows", "scaling"}`` as indented JSON (no NaN: missing = null)."""
    return json.dumps({"format": _FORMAT, "meta": result.meta, "rows": result.rows,
                       "scaling": result.scaling}, indent=2, allow_nan=False, default=_plain)


def _plain(v):
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    raise TypeError(f"not JSON serializable: {type(v).__name__}")


def write_json(result: BenchResult, path: str | PathLike) -> Path:
    """Write the result as JSON to ``path`` (directories created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(result) + "\n")
    return path


def read_json(path: str | PathLike) -> BenchResult:
    """Read a file written by ``write_json``."""
    d = json.loads(Path(path).read_text())
    return BenchResult(d["rows"], d["meta"], d.get("scaling", []))
