"""The registered cards, queried: in the paper's order, the runnable ones, the default run.

Cards register in :data:`depthscope.core.registry.CARDS` (the ``@register`` decorator); importing
:mod:`depthscope.analyses` registers the built-in ones and loads plugins.
"""

from __future__ import annotations

from depthscope.analyses.base import Analysis
from depthscope.analyses.card import Card
from depthscope.core.errors import DepthscopeError
from depthscope.core.registry import CARDS
from depthscope.core.registry import register as _register

REGISTRY = CARDS  # name -> card class


def register(cls: type[Card]) -> type[Card]:
    """Class decorator: make a card (or analysis) known to the runner, report, verdict and CLI."""
    return _register(cls)


def cards() -> list[type[Card]]:
    """Every registered card in the paper's order (E2..E12), cards without a reference last."""
    return [REGISTRY[name] for name in paper_order()]


def paper_order() -> list[str]:
    """Registered names in the paper's order (E2..E10), cards without a paper reference last."""
    return sorted(
        REGISTRY, key=lambda n: (REGISTRY[n].paper.number if REGISTRY[n].paper else 1000, n)
    )


def runnable() -> list[str]:
    """Analyses `depthscope analyze` can run, in the paper's order."""
    return [n for n in paper_order() if issubclass(REGISTRY[n], Analysis)]


def default_run() -> list[str]:
    """What `--analyses all` runs."""
    return [n for n in runnable() if REGISTRY[n].in_default_run]


def card(name: str) -> type[Card] | None:
    return REGISTRY.get(name)


def analysis_class(name: str) -> type[Analysis]:
    cls = REGISTRY.get(name)
    if cls is None or not issubclass(cls, Analysis):
        raise DepthscopeError(f"unknown analysis {name!r}; choose from {', '.join(runnable())}")
    return cls
