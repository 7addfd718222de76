"""What an analysis written outside the package imports: the declared plugin namespace.

docs/extending.md builds a complete analysis from these names and ``depthscope`` itself (for
``load_model``, ``analyze``, ``replay``, adapters, ...); everything else in the package may change
without notice. ``tests/test_public.py`` checks that the page's code imports nothing else and
that every name here is one the page uses or names.

- the card and its computation: :class:`Analysis`, :func:`register`, :class:`PromptBatch`,
  :class:`Tally`, and what a card offers to run-level products: :class:`Profile` (with
  :func:`data_key`), :class:`VerdictRule` and the :class:`Finding` it returns, :class:`Preset`;
- state as data: :func:`state_type`, :func:`same`, the mergeable :class:`Mean` and :class:`Max`;
- interventions through the engine: :class:`Sweep` and :func:`run_sweep`;
- figures in the paper's style: :data:`BAR_WIDTH`, :func:`new_figure`, :func:`index_ticks`,
  :func:`set_title`, :func:`tidy`.
"""

from __future__ import annotations

from depthscope.analyses import (
    Analysis,
    Finding,
    Preset,
    Profile,
    PromptBatch,
    Tally,
    VerdictRule,
    data_key,
    register,
)
from depthscope.engine.state import same, state_type
from depthscope.engine.stats import Max, Mean
from depthscope.engine.sweep import Sweep, run_sweep
from depthscope.figures.common import BAR_WIDTH, index_ticks, new_figure, set_title, tidy

__all__ = [
    "BAR_WIDTH",
    "Analysis",
    "Finding",
    "Max",
    "Mean",
    "Preset",
    "Profile",
    "PromptBatch",
    "Sweep",
    "Tally",
    "VerdictRule",
    "data_key",
    "index_ticks",
    "new_figure",
    "register",
    "run_sweep",
    "same",
    "set_title",
    "state_type",
    "tidy",
]
