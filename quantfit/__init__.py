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

from importlib import import_module
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from typing import TYPE_CHECKING

from quantfit.errors import DataError, FitError, QuantfitError

try:
    __version__ = _version("quantfit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "QuantfitError", "DataError", "FitError"]

# --- data layer -------------------------------------------------------------------------
from quantfit.data import PriceStore, compound, excess_returns, load_sample, returns, sources

__all__ += ["sources", "PriceStore", "returns", "load_sample", "compound", "excess_returns"]

# --- engine, results, adjustments, report -----------------------------------------------
# Loaded on first use (PEP 562), so that `quantfit ingest`/`prices` and strategies that only
# read betas do not pay for importing torch and matplotlib (about 2 s).
_LAZY: dict[str, tuple[str, str | None]] = {
    "fit_rolling": ("quantfit.fit", "fit_rolling"),
    "RollingFit": ("quantfit.results", "RollingFit"),
    "FitMeta": ("quantfit.results", "FitMeta"),
    "FitSpec": ("quantfit.spec", "FitSpec"),
    "spec": ("quantfit.spec", None),  # WindowSpec, EstimatorSpec, SolverSpec, ComputeSpec, ...
    "transforms": ("quantfit.transforms", None),  # welch_winsorize, dimson_lags
    "adjust": ("quantfit.adjust", None),
    "presets": ("quantfit.presets", None),  # named beta definitions: PRESETS, get
    "report": ("quantfit.report", None),
    "read_betas": ("quantfit.results_store", "read_betas"),  # nightly results of `quantfit refresh`
    "read_results": ("quantfit.results_store", "read_results"),
}

__all__ += list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from quantfit import adjust, presets, report, spec, transforms
    from quantfit.fit import fit_rolling
    from quantfit.results import FitMeta, RollingFit
    from quantfit.results_store import read_betas, read_results
    from quantfit.spec import FitSpec


def __getattr__(name: str):
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'quantfit' has no attribute {name!r}") from None
    module = import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
