"""The nightly job behind ``quantfit refresh``: store -> returns -> rolling betas -> result set.

    >>> from quantfit.refresh import RefreshParams, refresh
    >>> outcome = refresh(RefreshParams(store="data/store", out="data/results"))
    >>> outcome.mode, outcome.rows_written, outcome.warnings

One call (1) optionally ingests new prices (``update="yfinance"``), or the embedded sample when
the default store is empty; (2) computes simple daily returns; (3) fits rolling regressions of
every asset of the universe; (4) writes the tidy results as a result set under ``out`` (see
``quantfit.results_store`` for the layout); (5) writes the HTML report to ``out/report``.

Regressions (all in daily decimal returns):

* default: ``y`` = asset returns, ``x`` = the benchmark's returns (one factor, named by its
  ticker), on the dates where any of them has a price;
* ``factors=FILE`` (a Ken French daily factors file): ``y`` = asset returns minus ``RF``,
  ``x`` = every factor column except ``RF``, on the asset return dates that the file covers
  (inner join); the benchmark is not used then.

Incremental and idempotent: the result set remembers the last date it covers and a fingerprint
of the returns (y and x) up to that date. When the store has gained dates, only the windows
ending on the new dates are fitted, from the last ``window`` rows before them, and appended;
this equals a full recompute (to rounding: the engine's window sums start from the slice).
A full recompute (same result set) happens when there is no result yet, the universe changed,
the returns up to the covered date changed (revised history), or windows are expanding.
Nothing new: nothing is written. A different parameter set gets its own result set.

The library (``fit_rolling``, ``RollingFit``, ``report``) never imports this package.

Submodules, one concept each:

* ``params``: ``RefreshParams``, its defaults and validation, the result set's key;
* ``inputs``: the price store (sample bootstrap, ``--update yfinance``), the regression inputs
  and their fingerprint;
* ``job``: ``refresh()`` itself: plan, fit, write and commit the result set, warnings, report;
* ``config``: the TOML config file, the command-line flags and ``run_cli``.
"""

from quantfit.refresh.config import (CONFIG_KEYS, add_arguments, load_config, params_from,
                                     run_cli)
from quantfit.refresh.inputs import fingerprint, load_inputs, update_yfinance
from quantfit.refresh.job import (ASSET_CHUNK, REPORT_YEARS, Progress, RefreshOutcome,
                                  fit_chunks, outcome_dict, plan, refresh)
from quantfit.refresh.params import (DEFAULT_OUT, DEFAULT_STORE, RefreshParams, canonical_params,
                                     check_params, params_key, parse_universe, parse_window)

__all__ = [
    "ASSET_CHUNK", "CONFIG_KEYS", "DEFAULT_OUT", "DEFAULT_STORE", "REPORT_YEARS", "Progress",
    "RefreshOutcome", "RefreshParams", "add_arguments", "canonical_params", "check_params",
    "fingerprint", "fit_chunks", "load_config", "load_inputs", "outcome_dict", "params_from",
    "params_key", "parse_universe", "parse_window", "plan", "refresh", "run_cli",
    "update_yfinance",
]
