"""A progress sink that keeps the one-line notes an analysis or run tells the user."""

from __future__ import annotations

from depthscope.core.progress import Progress


class RecordingProgress(Progress):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)
