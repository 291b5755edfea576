"""The nightly job behind ``quantfit refresh``: store -> returns -> rolling betas -> result set.

    >>> from quantfit.refresh import RefreshParams, refresh
    >>> outcome = refresh(RefreshParams(store="data/store", out="data/results"))
    >>> outcome.mode, outcome.rows_written, outcome.warnings

One call (1) optionally ingests new prices (``update="yfinance"``), or the embedded sample when
the default store is empty; (2) resolves the universe and the regressors, whose dates are the
calendar (see ``regressors``); (3) plans the work against what the result set recorded at its
last run (``plan``): nothing, the new dates, the assets whose prices were revised, the added
assets, or everything; (4) runs one task per asset group (``task``): read that group's prices,
compute returns, fit, write its part files, free it; (5) commits the result set once,
atomically (see ``quantfit.results_store``); (6) writes the HTML report to ``out/report``.

Memory is bounded by the group (``plan.GROUP_SIZE`` assets), never by the universe or the
history. Killed at any moment, the previous results stay intact and readable.

Incremental and idempotent: a night with one new date reads only the last ``window`` rows of
each asset (plus the new ones) and rewrites only the current month's files; revised prices are
found through the store's change generations (``PriceStore.changes_since``), never by hashing
the history. Nothing new: nothing is written. A different parameter set gets its own result set.

The library (``fit_rolling``, ``RollingFit``, ``report``) never imports this package.

Submodules, one concept each:

* ``params``: ``RefreshParams``, its defaults and validation, the result set's key;
* ``inputs``: the price store (sample bootstrap, ``--update yfinance``);
* ``regressors``: the benchmark or factor returns and the calendar they define;
* ``plan``: what to recompute, for which assets, from which row, into which groups;
* ``task``: the unit of work (one asset group), the same in-process or on a Dask worker;
* ``job``: ``refresh()`` itself: plan, run the tasks, commit, warnings, report;
* ``config``: the TOML config file, the command-line flags and ``run_cli``.
"""

from quantfit.refresh.config import (CONFIG_KEYS, add_arguments, load_config, params_from,
                                     run_cli)
from quantfit.refresh.inputs import update_yfinance
from quantfit.refresh.job import REPORT_YEARS, RefreshOutcome, outcome_dict, refresh
from quantfit.refresh.params import (DEFAULT_OUT, DEFAULT_STORE, RefreshParams, canonical_params,
                                     check_params, params_key, parse_universe, parse_window)
from quantfit.refresh.plan import GROUP_SIZE, GroupWork, Plan, make_plan
from quantfit.refresh.task import GroupResult, JobContext, run_group

__all__ = [
    "CONFIG_KEYS", "DEFAULT_OUT", "DEFAULT_STORE", "GROUP_SIZE", "GroupResult", "GroupWork",
    "JobContext", "Plan", "REPORT_YEARS", "RefreshOutcome", "RefreshParams",
    "add_arguments", "canonical_params", "check_params", "load_config", "make_plan",
    "outcome_dict", "params_from", "params_key", "parse_universe", "parse_window", "refresh",
    "run_cli", "run_group", "update_yfinance",
]
