"""Price and factor sources: ``qf.sources.yfinance / csv / sample / french / factor_model``.

Price sources return one validated **long** frame (see ``quantfit.data.frames``): columns
``date`` (datetime64, tz-naive midnight), ``ticker`` (categorical of upper-cased str), ``close`` (adjusted
close, float64 > 0) and ``volume`` (float64, NaN where unknown); ``frame.attrs["has_volume"]``
says whether the source knew volumes. Feed it to ``PriceStore.ingest``.

``french`` is different on purpose: Fama-French factors are regressors, not prices, so it
returns a **wide** frame of factor returns in decimals (DatetimeIndex ``date`` x factors);
``factor_model(name, freq)`` assembles the named models (capm, ff3, ff5, carhart) from those
files, read from a local folder or downloaded.
"""

from quantfit.data.sources.csvfile import csv
from quantfit.data.sources.factor_models import MODELS, FactorDatesWarning, factor_model
from quantfit.data.sources.french import french
from quantfit.data.sources.sample import sample
from quantfit.data.sources.yahoo import MissingTickersWarning, NoPricesError, yfinance

__all__ = ["yfinance", "csv", "sample", "french", "MissingTickersWarning", "NoPricesError",
           "factor_model", "MODELS", "FactorDatesWarning"]
