"""quantfit: factor betas for thousands of securities at once.

    >>> import quantfit as qf
    >>> prices = qf.load_sample()                 # dates x tickers, SPY among them
    >>> rets = qf.returns(prices)
    >>> fit = qf.fit_rolling(rets.drop(columns="SPY"), rets["SPY"], window=252)
    >>> fit.beta.tail()

Layers (data flows one way): ``quantfit.data`` (sources, PriceStore, returns) ->
``quantfit.engine`` (pure torch) -> ``fit_rolling`` / ``RollingFit`` -> ``quantfit.report``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from quantfit.errors import DataError, FitError, QuantfitError

try:
    __version__ = _version("quantfit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "QuantfitError", "DataError", "FitError"]

# --- data layer -------------------------------------------------------------------------
from quantfit.data import PriceStore, load_sample, returns, sources

__all__ += ["sources", "PriceStore", "returns", "load_sample"]

# --- engine and results -----------------------------------------------------------------
from quantfit.fit import fit_rolling
from quantfit.results import RollingFit

__all__ += ["fit_rolling", "RollingFit"]

# --- adjustments --------------------------------------------------------------------------
from quantfit import adjust

__all__ += ["adjust"]

# --- report -----------------------------------------------------------------------------
from quantfit import report

__all__ += ["report"]

# --- nightly results (written by `quantfit refresh`) ---------------------------------------
from quantfit.results_store import read_betas, read_results

__all__ += ["read_betas", "read_results"]
