"""The data layer: sources -> long frames -> PriceStore (parquet) -> wide prices -> returns.

Conventions: daily data; a *long* frame has columns ``date, ticker, close`` (and ``volume``
where known); a *wide* frame is indexed by a DatetimeIndex named ``date`` with one column
per ticker. This layer never imports the engine or the report.
"""

from quantfit.data.sample import load_sample

__all__ = ["load_sample"]
