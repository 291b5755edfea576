"""A one-line progress bar with ETA for long commands, silent where nobody watches.

    with Progress("ingest", total=n_rows, unit="rows", quiet=args.quiet) as bar:
        for part in parts:
            ...
            bar.update(len(part))

    store.compact(progress=bar)          # library code takes the callback form: bar(done, total)

The bar draws on ``stream`` (standard error by default) only when that stream is a terminal
and ``quiet`` is false: under cron, in a pipe or in a test it writes nothing at all. It
appears only after ``delay`` seconds (short tasks never flicker a bar), redraws at most every
``min_interval`` seconds, and ends with one summary line (label, total, elapsed time).

Line format: ``ingest  [########--------]  52%  1.2M/2.3M rows  0:14  ETA 0:13``. The ETA
assumes the remaining work goes at the average rate so far. The clock is ``time.monotonic``
(``clock=`` for tests).

Library code never imports this module: it accepts any ``progress(done, total)`` callable,
and the command line (or the nightly job) passes a ``Progress``.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO, TypeVar

__all__ = ["Progress", "ProgressCallback", "format_count", "format_duration"]

_P = TypeVar("_P", bound="Progress")

#: What long-running library functions accept: ``callback(done, total)``, in their own units.
ProgressCallback = Callable[[float, float], None]


def format_count(n: float) -> str:
    """Compact count: 950, 12.3k, 4.56M, 1.2G."""
    n = float(n)
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            value = n / size
            return f"{value:.3g}{suffix}" if value < 100 else f"{value:.0f}{suffix}"
    return f"{n:.0f}"


def format_duration(seconds: float) -> str:
    """h:mm:ss above an hour, m:ss below."""
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A progress bar for one task (see the module doc).

    Parameters
    ----------
    label : what is being done ("ingest", "compact").
    total : the amount of work, in ``unit`` (may be set later with ``set``; None = unknown,
        then the bar shows a count and the elapsed time only).
    unit : shown after the counts ("rows", "files"); "" for none.
    quiet : never draw (``--quiet``).
    stream : where to draw (default ``sys.stderr``); nothing is drawn unless it is a TTY.
    delay : seconds before the first draw; min_interval : seconds between redraws.
    """

    def __init__(self, label: str, total: float | None = None, *, unit: str = "",
                 quiet: bool = False, stream: TextIO | None = None, delay: float = 0.5,
                 min_interval: float = 0.1, clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.unit = label, total, unit
        self.stream = sys.stderr if stream is None else stream
        self.enabled = not quiet and _isatty(self.stream)
        self.delay, self.min_interval, self.clock = delay, min_interval, clock
        self.done = 0.0
        self._t0 = clock()
        self._last_draw: float | None = None
        self._width = 0
        self._closed = False

    # ------------------------------------------------------------------ progress
    def update(self, advance: float = 1) -> None:
        """``advance`` more units are done."""
        self.set(self.done + advance)

    def set(self, done: float, total: float | None = None, label: str | None = None) -> None:
        """Absolute progress (and optionally a new total or label)."""
        self.done = float(done)
        if total is not None:
            self.total = total
        if label is not None:
            self.label = label
        if not self.enabled or self._closed:
            return
        now = self.clock()
        if now - self._t0 < self.delay:
            return
        if self._last_draw is not None and now - self._last_draw < self.min_interval \
                and not (self.total and self.done >= self.total):
            return
        self._draw(self.render(now))
        self._last_draw = now

    def __call__(self, done: float, total: float | None = None) -> None:
        """The callback form library functions take: ``progress(done, total)``."""
        self.set(done, total)

    # ------------------------------------------------------------------ drawing
    def render(self, now: float | None = None) -> str:
        """The current line (without carriage return)."""
        elapsed = (self.clock() if now is None else now) - self._t0
        unit = f" {self.unit}" if self.unit else ""
        if not self.total:
            return f"{self.label}  {format_count(self.done)}{unit}  {format_duration(elapsed)}"
        frac = min(1.0, max(0.0, self.done / self.total))
        eta = elapsed * (1 - frac) / frac if frac > 0 else None
        tail = (f"  {frac:4.0%}  {format_count(self.done)}/{format_count(self.total)}{unit}"
                f"  {format_duration(elapsed)}  ETA {'?' if eta is None else format_duration(eta)}")
        cols = shutil.get_terminal_size((80, 20)).columns
        bar_width = max(10, min(40, cols - len(self.label) - len(tail) - 6))
        filled = round(frac * bar_width)
        return f"{self.label}  [{'#' * filled}{'-' * (bar_width - filled)}]{tail}"

    def _draw(self, line: str) -> None:
        pad = " " * max(0, self._width - len(line))
        self.stream.write(f"\r{line}{pad}")
        self.stream.flush()
        self._width = len(line)

    def close(self) -> None:
        """Finish: if a bar was drawn, replace it by a summary line and end the line."""
        if self._closed:
            return
        self._closed = True
        if self.enabled and self._last_draw is not None:
            elapsed = self.clock() - self._t0
            unit = f" {self.unit}" if self.unit else ""
            self._draw(f"{self.label}  {format_count(self.done)}{unit}  done in {format_duration(elapsed)}")
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self: _P) -> _P:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
