"""User-facing errors.

Every problem caused by input (a missing file, an unsupported model, an empty prompt set, ...)
is raised as a :class:`DepthscopeError` whose message is one line naming the problem and the fix.
The CLI prints that line and exits non-zero, without a traceback.
"""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 160, fallback: str | None = None) -> str:
    """The first line of an exception's message, cut at ``limit`` characters: the gist of a
    library's error inside one of ours, which must stay one line. An empty message gives
    ``fallback`` (the exception's type name when None)."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__ if fallback is None else fallback
    return lines[0][:limit]


class DepthscopeError(Exception):
    """A problem the user can fix; ``str(error)`` is a single actionable line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
