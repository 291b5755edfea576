"""What the store's operations return: small frozen records that print as one readable line."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

#: Renames named in a summary line (the rest are counted).
_RENAMES_SHOWN = 20


def renames_text(renamed: tuple[tuple[str, str], ...], what: str = "ticker") -> str:
    """``renamed 2 tickers: aapl -> AAPL, msft -> MSFT`` (the first ``_RENAMES_SHOWN``)."""
    n = len(renamed)
    shown = ", ".join(f"{old} -> {new}" for old, new in renamed[:_RENAMES_SHOWN])
    more = f", ... ({n - _RENAMES_SHOWN:,} more)" if n > _RENAMES_SHOWN else ""
    return f"renamed {n:,} {what}{'s' if n != 1 else ''}: {shown}{more}"


@dataclass(frozen=True)
class IngestSummary:
    """What one ``PriceStore.ingest`` call did.

    ``rows_added`` keys that were new, ``rows_replaced`` keys whose value changed,
    ``rows_unchanged`` keys already stored with the same value; ``tickers`` all tickers in the
    input (sorted), ``new_tickers`` those the store did not have; ``start``/``end`` the input's
    date range; ``files_written`` data files written (0 when nothing changed);
    ``generation`` the store's generation after the ingest (unchanged when nothing changed);
    ``rows_rewritten`` stored rows written again by automatic compaction; ``renamed``
    (old, new) tickers renamed by the ticker rule when a v1 store was migrated first.
    """

    rows_added: int
    rows_replaced: int
    rows_unchanged: int
    tickers: tuple[str, ...]
    new_tickers: tuple[str, ...]
    start: pd.Timestamp
    end: pd.Timestamp
    files_written: int
    generation: int = 0
    rows_rewritten: int = 0
    renamed: tuple[tuple[str, str], ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.rows_added or self.rows_replaced)

    def __str__(self) -> str:
        names = ", ".join(self.tickers[:5]) + (f", ... ({len(self.tickers) - 5} more)" if len(self.tickers) > 5 else "")
        return (f"{len(self.tickers)} ticker{'s' if len(self.tickers) != 1 else ''} ({names}), "
                f"{self.start.date()} to {self.end.date()}: {self.rows_added:,} rows added, "
                f"{self.rows_replaced:,} replaced, {self.rows_unchanged:,} unchanged"
                + (f"; {len(self.new_tickers)} new ticker{'s' if len(self.new_tickers) != 1 else ''}"
                   if self.new_tickers else "")
                + (f"; store migrated first, {renames_text(self.renamed, 'stored ticker')}"
                   if self.renamed else ""))


@dataclass(frozen=True)
class MaintenanceSummary:
    """What ``compact`` or ``migrate`` did: ``buckets`` rewritten, live data files before and
    after, stored rows rewritten (0 and ``done=False`` when there was nothing to do);
    ``renamed``: (old, new) tickers renamed by the ticker rule, sorted; ``upgraded``: a v1
    store was rewritten in the current format."""

    action: str
    done: bool
    buckets: int = 0
    files_before: int = 0
    files_after: int = 0
    rows_rewritten: int = 0
    renamed: tuple[tuple[str, str], ...] = ()
    upgraded: bool = False

    def __str__(self) -> str:
        if not self.done:
            return {"compact": "nothing to compact (no deltas)",
                    "migrate": "already in the current format, tickers named by the ticker "
                               "rule: nothing to migrate"}[self.action]
        counts = (f"{self.buckets} bucket{'s' if self.buckets != 1 else ''}, "
                  f"{self.rows_rewritten:,} rows rewritten, {self.files_before:,} -> "
                  f"{self.files_after:,} data files")
        if self.action == "migrate" and not self.upgraded:  # a v2 store: renames only
            return f"{renames_text(self.renamed)} ({counts})"
        verb = {"compact": "compacted", "migrate": "migrated to format v2"}[self.action]
        return f"{verb}: {counts}" + (f"; {renames_text(self.renamed)}" if self.renamed else "")


@dataclass(frozen=True)
class VerifyReport:
    """``PriceStore.verify``: ``problems`` (one line each; empty = clean), ``notes``
    (harmless findings, e.g. leftovers of a killed writer), files and bytes checked."""

    files: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = (f"{self.files:,} files checked ({self.bytes / 2**20:,.1f} MiB): "
                + ("no damage found" if self.ok else f"{len(self.problems)} problem"
                   f"{'s' if len(self.problems) != 1 else ''}"))
        return "\n".join([head, *self.problems, *self.notes])


class Reporter:
    """Accumulates progress and forwards ``(done, total)`` to a callback, if any."""

    def __init__(self, callback, total: float):
        self.callback, self.total, self.done_ = callback, max(float(total), 1.0), 0.0

    def advance(self, n: float) -> None:
        self.done_ += n
        if self.callback is not None:
            self.callback(min(self.done_, self.total), self.total)

    def done(self) -> None:
        if self.callback is not None:
            self.callback(self.total, self.total)
