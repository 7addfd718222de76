"""Progress reporting: the :class:`Progress` interface long computations report to, and its displays.

Analyses report units of work (``start``/``advance``: one prompt's interventions), the runner
reports where the run stands (``stage``: "future-effects 3/10 prompts"), and anyone may ``note`` a
line for the user. :func:`make_progress` picks the display: live bars on a terminal
(:class:`RichProgress`), plain timestamped lines at a steady interval when output goes to a file or
a batch job's log (:class:`LineProgress`).
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichBars

from depthscope.core.interrupts import check  # each update raises a Ctrl-C a finaliser swallowed


class Progress:
    """Where work is reported; the silent default does nothing (tests, library use)."""

    def start(self, label: str, total: int) -> None:
        """A unit of work (e.g. one prompt's interventions) of ``total`` steps begins."""

    def advance(self, steps: int = 1) -> None:
        """``steps`` more steps of the current unit are done."""

    def stage(self, text: str) -> None:
        """Where the run as a whole stands, e.g. "future-effects 3/10 prompts"."""

    def note(self, text: str) -> None:
        """A one-line message for the user (e.g. a skipped example)."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class LineProgress(Progress):
    """Plain progress lines for logs: at most one every ``interval`` seconds, with done/total and ETA.

    Every line stands alone (no carriage returns), so ``depthscope analyze > log`` and batch-job
    logs show steady progress during each analysis.
    """

    def __init__(self, stream: TextIO | None = None, interval: float | None = None) -> None:
        self.stream = stream or sys.stderr
        env = os.environ.get("DEPTHSCOPE_PROGRESS_SECONDS")
        self.interval = interval if interval is not None else float(env) if env else 10.0
        self.label, self.total, self.done = "", 0, 0
        self.unit_started = time.monotonic()
        self.last_line = float("-inf")
        self.where = ""

    def _line(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=self.stream, flush=True)

    def start(self, label: str, total: int) -> None:
        check()
        self.label, self.total, self.done = label, max(int(total), 0), 0
        self.unit_started = time.monotonic()
        self._maybe_report()

    def advance(self, steps: int = 1) -> None:
        check()
        self.done += steps
        self._maybe_report(final=self.done >= self.total)

    def stage(self, text: str) -> None:
        check()
        self.where = text

    def note(self, text: str) -> None:
        check()
        self._line(text)

    def _maybe_report(self, final: bool = False) -> None:
        now = time.monotonic()
        if now - self.last_line < self.interval and not (final and self.interval == 0):
            return
        self.last_line = now
        elapsed = now - self.unit_started
        parts = [self.where] if self.where else []
        if self.total:
            percent = 100 * self.done / self.total
            eta = elapsed / self.done * (self.total - self.done) if self.done else None
            shown = f", ETA {_duration(eta)}" if eta is not None else ""
            parts.append(
                f"{self.label}: {self.done}/{self.total} ({percent:.0f}%), "
                f"{_duration(elapsed)} elapsed{shown}"
            )
        if parts:
            self._line(" · ".join(parts))


class RichProgress(Progress):
    """Live bars on a terminal: one per unit of work, advancing within it, with the run's stage."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.bars = RichBars(
            TextColumn("{task.description:<48}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task = None
        self.where = ""

    def __enter__(self) -> RichProgress:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()
        self.bars.__exit__(*exc)

    def note(self, text: str) -> None:
        check()
        self.bars.console.print(text, markup=False, highlight=False)

    def stage(self, text: str) -> None:
        check()
        self.where = text

    def _close(self) -> None:
        if self.task is not None:
            self.bars.remove_task(self.task)
            self.task = None

    def start(self, label: str, total: int) -> None:
        check()
        self._close()
        description = f"{self.where} · {label}" if self.where else label
        self.task = self.bars.add_task(description, total=total)

    def advance(self, steps: int = 1) -> None:
        check()
        if self.task is not None:
            self.bars.advance(self.task, steps)


def make_progress(stream: TextIO | None = None) -> Progress:
    """Bars when ``stream`` (default stderr) is a terminal, plain lines otherwise."""
    stream = stream or sys.stderr
    if stream.isatty() and os.environ.get("TERM") != "dumb":
        return RichProgress()
    return LineProgress(stream)
