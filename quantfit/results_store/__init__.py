"""Result sets on disk: the output of ``quantfit refresh``, and the readers strategies use.

    >>> qf.read_betas("data/results")                  # latest date: Series asset -> beta
    >>> qf.read_betas("data/results", "2024-06-28")    # one date: reads that month's files only
    >>> fit = qf.read_results("data/results", start="2024-01-01", assets=["AAPL"])  # a RollingFit

Modules: ``encoding`` (the columns of a part file; the public tidy shape), ``resultset`` (one
result set directory: manifest, part files, lock, commit), ``overlays`` (a revised asset's
rows written once per night and applied on read), ``readers`` (``read_betas``,
``read_tidy``, ``read_results``). See ``resultset`` for the layout and its guarantees.
"""

from quantfit.results import TIDY_COLUMNS
from quantfit.results_store.encoding import (
    estimate_column,
    file_schema,
    merge_month,
    month_tables,
    std_error_column,
    to_tidy,
    to_windows,
)
from quantfit.results_store.readers import read_betas, read_results, read_table, read_tidy
from quantfit.results_store.resultset import (
    FORMAT,
    LATEST,
    MANIFEST,
    VERSION,
    ResultSet,
    check_manifest,
    open_results,
    write_latest,
)

__all__ = [
    "FORMAT", "LATEST", "MANIFEST", "TIDY_COLUMNS", "VERSION", "ResultSet",
    "check_manifest", "estimate_column", "file_schema", "merge_month", "month_tables",
    "open_results", "read_betas", "read_results", "read_table", "read_tidy",
    "std_error_column", "to_tidy", "to_windows", "write_latest",
]
