"""The data layer: sources -> long frames -> PriceStore (parquet) -> wide prices -> returns.

Conventions: daily data; a *long* frame has columns ``date, ticker, close`` (and ``volume``
where known); a *wide* frame is indexed by a DatetimeIndex named ``date`` with one column
per ticker. This layer never imports the engine or the report.

* ``sources``: ``yfinance``, ``csv``, ``sample`` (long prices), ``french`` and ``factor_model``
  (wide factor returns);
* ``PriceStore``: upserting, crash-safe parquet store (``ingest``, ``prices``, ``tickers``);
* ``returns``: simple or log returns, optionally in excess of a risk-free rate;
  ``excess_returns``: that excess rule for returns at any frequency;
* ``compound``: daily returns -> weekly (Friday), month-end or quarter-end returns;
* ``validate_long`` / ``to_long``: the checks every ingest goes through, and wide -> long;
* ``dates`` / ``tickers``: the rules every date and ticker from the outside follows.
"""

from quantfit.data import sources
from quantfit.data.frames import to_long, validate_long
from quantfit.data.frequency import compound
from quantfit.data.returns import excess_returns, returns
from quantfit.data.sample import load_sample
from quantfit.data.store import IngestSummary, PriceStore

__all__ = ["load_sample", "sources", "PriceStore", "IngestSummary", "returns", "to_long", "validate_long",
           "compound", "excess_returns"]
