"""A Ctrl-C that is never lost.

Python cannot raise out of a finaliser: a ``KeyboardInterrupt`` that lands while some library's
``__del__`` runs is printed as "Exception ignored in ..." with a traceback, and the program goes
on as if the key had not been pressed. While the CLI runs, such a swallowed interrupt is recorded
silently instead, and the next progress update raises it again, where the run's own handling
(save finished work, say what a rerun resumes) takes over.

Batch schedulers send SIGTERM before they kill a job; :func:`sigterm_as_interrupt` makes it a
Ctrl-C for the work it wraps, and :class:`RunInterrupted` is the one line a command ends with
when its finished work was saved.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from depthscope.core.errors import DepthscopeError

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


class RunInterrupted(DepthscopeError):
    """Ctrl-C or SIGTERM: finished work is saved; the message says what a rerun will resume."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Batch schedulers send SIGTERM before killing a job: treat it like Ctrl-C, so work is saved."""

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
