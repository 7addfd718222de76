"""One analysis state per contiguous run of prompts, folded in prompt order when merged.

A process's share of the prompts may be several runs (:func:`~depthscope.run.sharding.
balanced_shares`). Folding one state over all of them would append, say, prompt 6 before prompt
2 of another process; keeping a state per run and folding every run of every process in prompt
order gives the single-process result: lists in prompt order, maxima and counts exact, float64
sums added in another grouping only (:mod:`depthscope.engine.state`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from depthscope.engine.state import merge, state_type


@state_type
@dataclass
class Segments:
    """States keyed by the first prompt id of their run; runs of different processes are disjoint,
    so merging two ``Segments`` is the union of their runs."""

    states: dict = field(default_factory=dict)  # first prompt id of the run -> analysis state

    def state_for(self, start: int, new_state: Callable[[], Any]) -> Any:
        """The state of the run starting at prompt ``start`` (a new one for a new run)."""
        if start not in self.states:
            self.states[start] = new_state()
        return self.states[start]

    def folded(self) -> Any:
        """The states of every run merged in prompt order: what one process would hold."""
        if not self.states:
            raise ValueError("no prompt run was processed")
        result = None
        for start in sorted(self.states):
            result = merge(result, self.states[start])
        return result


def unwrap(state: Any) -> Any:
    """``state`` as one analysis state (folding :class:`Segments`)."""
    return state.folded() if isinstance(state, Segments) else state
