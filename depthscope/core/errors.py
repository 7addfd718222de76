"""User-facing errors.

Every problem caused by input (a missing file, an unsupported model, an empty prompt set, ...)
is raised as a :class:`DepthscopeError` whose message is one line naming the problem and the fix.
The CLI prints that line and exits non-zero, without a traceback.
"""

from __future__ import annotations


class DepthscopeError(Exception):
    """A problem the user can fix; ``str(error)`` is a single actionable line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
