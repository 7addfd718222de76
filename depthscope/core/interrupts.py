"""A Ctrl-C that is never lost.

Python cannot raise out of a finaliser: a ``KeyboardInterrupt`` that lands while some library's
``__del__`` runs is printed as "Exception ignored in ..." with a traceback, and the program goes
on as if the key had not been pressed. While the CLI runs, such a swallowed interrupt is recorded
silently instead, and the next progress update raises it again, where the run's own handling
(save finished work, say what a rerun resumes) takes over.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

_pending = False


def _hook(previous):
    def unraisable(info) -> None:
        global _pending
        if isinstance(info.exc_value, KeyboardInterrupt):
            _pending = True
            return
        previous(info)

    return unraisable


@contextmanager
def interrupts_not_lost() -> Iterator[None]:
    """Record interrupts swallowed by finalisers for the duration (the CLI's commands)."""
    global _pending
    previous = sys.unraisablehook
    sys.unraisablehook = _hook(previous)
    try:
        yield
    finally:
        sys.unraisablehook = previous
        _pending = False


def pending() -> bool:
    """Whether an interrupt was swallowed and not raised again yet."""
    return _pending


def check() -> None:
    """Raise a swallowed interrupt again (called at progress updates: frequent, safe points)."""
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt
