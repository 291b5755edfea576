"""Planning a refresh: what to fit, for which assets, from which date, into which groups.

The nightly job never hashes the universe's history. It compares what the result set's
manifest recorded at its last run with what the inputs say now:

* the **regressors** (the benchmark's returns, or a factor file): one hash per month of rows
  (dates and values; a few kilobytes to read), so a revised month recomputes every asset from
  that month on;
* the **price store**: its identity and generation; ``store.changes_since(generation)`` names
  every ticker whose prices changed since, with the earliest date changed, so only those are
  recomputed, from that date on;
* the **universe**: an added asset is fitted alone, into a new group; a removed one simply gets
  no new rows (its past rows stay readable by name);
* the **calendar**: rows after the last date covered are new, for every asset.

A window is (re)computed when any of its rows changed: an asset's windows are refitted from
the first changed row ``fit_from`` on, reading only the ``window`` rows before it. Expanding
windows, a different store, a calendar that no longer holds the last covered date, or a store
that no longer remembers the result set's generation, mean a full recompute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

#: Assets per group (the unit of work: read, fit and write together; one file per month).
GROUP_SIZE = 1000


@dataclass(frozen=True)
class GroupWork:
    """The work on one asset group: refit each asset of ``fit_from`` from that row on.

    ``group`` indexes the manifest's group table; ``assets`` is the group's full asset list
    (its files' dictionary, in order); ``fit_from`` maps the assets to refit to the first row
    of ``rows`` (the return dates) whose window is recomputed; ``fresh``: the group has no
    files yet (or they are all rewritten), so nothing old is merged.
    """

    group: int
    assets: tuple[str, ...]
    fit_from: dict[str, int]
    fresh: bool

    @property
    def first_row(self) -> int:
        return min(self.fit_from.values())


@dataclass
class Plan:
    """What one refresh does: ``mode`` "full", "incremental" or "up to date", why, the group
    table after the run and the work per group."""

    mode: str
    reason: str
    groups: list[list[str]]
    work: list[GroupWork] = field(default_factory=list)

    @property
    def n_assets(self) -> int:
        return sum(len(w.fit_from) for w in self.work)


def chunk(assets: list[str], size: int = GROUP_SIZE) -> list[list[str]]:
    """``assets`` cut into consecutive groups of at most ``size`` (sizes balanced)."""
    if not assets:
        return []
    n = -(-len(assets) // size)
    bounds = np.linspace(0, len(assets), n + 1).round().astype(int)
    return [assets[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def full_plan(universe_groups: list[list[str]], reason: str) -> Plan:
    work = [GroupWork(g, tuple(a), {t: 0 for t in a}, True) for g, a in enumerate(universe_groups)]
    return Plan("full", reason, [list(a) for a in universe_groups], work)


def first_row_on_or_after(rows: pd.DatetimeIndex, day) -> int:
    return int(rows.searchsorted(pd.Timestamp(day), side="left"))


def make_plan(manifest: dict | None, rows: pd.DatetimeIndex, x_months: Callable[[str], dict[str, str]],
              universe: list[str], store_id: str, changes: dict[str, pd.Timestamp] | None,
              expanding: bool, new_groups, small_group: int = GROUP_SIZE // 10) -> Plan:
    """Decide the work (see the module docstring).

    rows : the return dates of the regressors (the calendar the fit runs on).
    x_months : ``x_months(last)`` is this run's hash per month of the regressors' rows up to
        the date ``last`` (what the manifest recorded at the last run, for that run's ``last``).
    changes : ``store.changes_since(manifest's store generation)``, or None when the store
        cannot tell (then everything is recomputed).
    new_groups : ``callable(assets) -> list[list[str]]`` grouping assets for new groups.
    small_group : added assets join the last group while it has fewer assets than this.
    """
    if manifest is None:
        return full_plan(new_groups(universe), "new result set")
    inputs, data = manifest["inputs"], manifest["data"]
    if inputs.get("store_id") != store_id:
        return full_plan(new_groups(universe), "a different price store than the last run")
    last = data.get("last")
    if last is None or pd.Timestamp(last) not in rows:
        return full_plan(new_groups(universe), f"the calendar no longer holds {last}")
    if changes is None:
        return full_plan(new_groups(universe), "the store no longer records the changes since "
                                               "the last run")
    n_rows = len(rows)
    n_new = n_rows - (int(rows.get_loc(pd.Timestamp(last))) + 1)
    reasons = []
    x_from = n_rows
    old_months, now = data.get("x_months", {}), x_months(last)
    diff = sorted(m for m in set(old_months) | set(now) if old_months.get(m) != now.get(m))
    if diff:
        x_from = first_row_on_or_after(rows, f"{diff[0]}-01")
        reasons.append(f"regressors revised from {diff[0]}")
    if expanding and (diff or changes or n_new or set(universe) - set(manifest["universe"])):
        return full_plan(new_groups(universe), "expanding windows are recomputed in full")
    where = {a: g for g, grp in enumerate(manifest["groups"]) for a in grp["assets"]}
    added = [a for a in universe if a not in where]
    n_added = len(added)
    removed = sorted(set(manifest["universe"]) - set(universe))
    revised = {a: first_row_on_or_after(rows, d) for a, d in changes.items()
               if a in where and a in set(universe) and pd.Timestamp(d) <= pd.Timestamp(last)}
    if revised:
        reasons.append(f"{len(revised)} asset(s) with revised prices")
    new_row = n_rows - n_new
    per_group: dict[int, dict[str, int]] = {}
    for a in universe:
        if a in where:
            start = min(new_row, x_from, revised.get(a, n_rows))
            if start < n_rows:
                per_group.setdefault(where[a], {})[a] = start
    groups = [list(g["assets"]) for g in manifest["groups"]]
    if added:
        # Assets added one night at a time join the last group while it is small (a group made
        # of earlier additions): its files are merged, and the number of groups, so the files
        # a date's read opens, does not grow with every addition.
        last_g = len(groups) - 1
        room = small_group - len(groups[last_g]) if groups else 0
        if room > 0:
            join, added = added[:room], added[room:]
            groups[last_g] = groups[last_g] + join
            per_group.setdefault(last_g, {}).update({a: 0 for a in join})
    work = [GroupWork(g, tuple(groups[g]), fit_from, False) for g, fit_from in sorted(per_group.items())]
    for grp in new_groups(added) if added else []:
        work.append(GroupWork(len(groups), tuple(grp), {a: 0 for a in grp}, True))
        groups.append(list(grp))
    if n_added:
        reasons.append(f"{n_added} asset(s) added")
    if removed:
        reasons.append(f"{len(removed)} asset(s) no longer in the universe (their rows stay)")
    if n_new:
        reasons.insert(0, f"{n_new} new date(s) after {last}")
    if not work:
        return Plan("up to date", f"results already cover {last}"
                    + (f"; {'; '.join(reasons)}" if reasons else ""), groups, [])
    return Plan("incremental", "; ".join(reasons), groups, work)
