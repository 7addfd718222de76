"""A Ctrl-C that lands inside a finaliser is not lost: Python swallows it there ("Exception
ignored in ..."), the CLI records it and the next progress update raises it again."""

from __future__ import annotations

import io
import sys

import pytest

from depthscope.core.interrupts import interrupts_not_lost, pending
from depthscope.core.progress import LineProgress


class InterruptedFinaliser:
    def __del__(self) -> None:
        raise KeyboardInterrupt


class FailingFinaliser:
    def __del__(self) -> None:
        raise ValueError("not an interrupt")


def test_a_swallowed_interrupt_surfaces_at_the_next_progress_update():
    progress = LineProgress(stream=io.StringIO(), interval=0)
    with interrupts_not_lost():
        InterruptedFinaliser()  # collected at once: its KeyboardInterrupt is swallowed
        assert pending()
        with pytest.raises(KeyboardInterrupt):
            progress.note("next update")
        assert not pending()
        progress.note("raised once only")
    assert "raised once only" in progress.stream.getvalue()


def test_other_finaliser_errors_still_reach_the_previous_hook(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: seen.append(info.exc_type))
    with interrupts_not_lost():
        FailingFinaliser()
        InterruptedFinaliser()
    assert seen == [ValueError]  # the interrupt was recorded, not printed
    assert not pending()  # and forgotten when the command ends


def test_the_cli_exits_130_when_the_interrupt_came_after_the_last_update(main_with_handler, capsys):
    def work(args) -> int:
        InterruptedFinaliser()
        return 0

    assert main_with_handler(work, ["models"]) == 130
    assert "interrupted after the work finished" in capsys.readouterr().err
