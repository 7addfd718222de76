"""The registered cards, queried: in the paper's order, the runnable ones, the default run.

There is one registry, :mod:`depthscope.core.registry`: cards join its ``CARDS`` table through
its ``@register`` decorator and are looked up by name with its ``card``; importing
:mod:`depthscope.analyses` registers the built-in ones and loads plugins. This module only reads
that table, with what the core cannot know (which cards are an :class:`Analysis`).
"""

from __future__ import annotations

from depthscope.analyses.base import Analysis
from depthscope.analyses.card import Card
from depthscope.core.errors import DepthscopeError
from depthscope.core.registry import CARDS, paper_rank


def cards() -> list[type[Card]]:
    """Every registered card in the paper's order (E2..E12), cards without a reference last."""
    return [CARDS[name] for name in paper_order()]


def paper_order() -> list[str]:
    """Registered names in the paper's order (E2..E10), cards without a paper reference last."""
    return sorted(CARDS, key=lambda n: (paper_rank(CARDS[n]), n))


def runnable() -> list[str]:
    """Analyses `depthscope analyze` can run, in the paper's order."""
    return [n for n in paper_order() if issubclass(CARDS[n], Analysis)]


def default_run() -> list[str]:
    """What `--analyses all` runs."""
    return [n for n in runnable() if CARDS[n].in_default_run]


def analysis_class(name: str) -> type[Analysis]:
    cls = CARDS.get(name)
    if cls is None or not issubclass(cls, Analysis):
        raise DepthscopeError(f"unknown analysis {name!r}; choose from {', '.join(runnable())}")
    return cls
