"""Live progress display for long runs (rich), behind the analyses' :class:`Progress` interface."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from depthscope.analyses.base import Progress as ProgressSink


class RichProgress(ProgressSink):
    """One bar per unit of work (a prompt's interventions, a batch), with elapsed and remaining time."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.bars = Progress(
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
