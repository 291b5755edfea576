"""Price and factor sources: ``qf.sources.yfinance / csv / sample / french``.

Price sources return one validated **long** frame (see ``quantfit.data.frames``): columns
``date`` (datetime64, tz-naive midnight), ``ticker`` (categorical of upper-cased str), ``close`` (adjusted
close, float64 > 0) and ``volume`` (float64, NaN where unknown); ``frame.attrs["has_volume"]``
says whether the source knew volumes. Feed it to ``PriceStore.ingest``.

``french`` is different on purpose: Fama-French factors are regressors, not prices, so it
returns a **wide** frame of factor returns in decimals (DatetimeIndex ``date`` x factors).
"""

from quantfit.data.sources.csvfile import csv
from quantfit.data.sources.french import french
from quantfit.data.sources.sample import sample
from quantfit.data.sources.yahoo import MissingTickersWarning, NoPricesError, yfinance

__all__ = ["yfinance", "csv", "sample", "french", "MissingTickersWarning", "NoPricesError"]
