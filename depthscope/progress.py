"""Progress reporting: the :class:`Progress` interface every long computation reports to, and its displays."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichBars


class Progress:
    """Where analyses report work done; the CLI supplies a live display, tests the silent default."""

    def start(self, label: str, total: int) -> None:
        """A unit of work (e.g. one prompt's interventions) of ``total`` steps begins."""

    def advance(self, steps: int = 1) -> None:
        """``steps`` more steps are done."""

    def note(self, text: str) -> None:
        """A one-line message for the user (e.g. a skipped example)."""


class RichProgress(Progress):
    """One bar per unit of work (a prompt's interventions, a batch), with elapsed and remaining time."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.bars = RichBars(
            TextColumn("{task.description:<40}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task = None

    def __enter__(self) -> RichProgress:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()
        self.bars.__exit__(*exc)

    def note(self, text: str) -> None:
        self.bars.console.print(text)

    def _close(self) -> None:
        if self.task is not None:
            self.bars.remove_task(self.task)
            self.task = None

    def start(self, label: str, total: int) -> None:
        self._close()
        self.task = self.bars.add_task(label, total=total)

    def advance(self, steps: int = 1) -> None:
        if self.task is not None:
            self.bars.advance(self.task, steps)
