"""Analysis cards by name: the one table every layer may consult about an analysis.

A card (:class:`depthscope.analyses.base.Card`) registers itself here when its module is imported.
The built-in cards and those of other packages are found the same way, through the
``depthscope.analyses`` entry point (``pyproject.toml`` declares the built-in one), so a module
below the analyses, such as the :class:`~depthscope.results.document.Result` document, can find a
result's card by its name without importing any analysis.
"""

from __future__ import annotations

import importlib.metadata
import sys

ENTRY_POINT_GROUP = "depthscope.analyses"

CARDS: dict[str, type] = {}
_loaded = False


def register(cls: type) -> type:
    """Class decorator: make a card (or analysis) known to the runner, report, verdict and CLI."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} needs a name to be registered")
    CARDS[cls.name] = cls
    return cls


def load_cards() -> list[str]:
    """Import every module declared under the entry point; returns the names loaded.

    A plugin that fails to import is reported on one line and skipped; the other cards work.
    """
    global _loaded
    _loaded = True
    loaded = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
            loaded.append(entry.name)
        except Exception as exc:  # a broken plugin must not break depthscope
            print(
                f"depthscope: warning: analysis plugin {entry.name!r} ({entry.value}) could not be "
                f"loaded: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
    return loaded


def card(name: str) -> type | None:
    """The card registered as ``name`` (the built-in cards and plugins are loaded on first use)."""
    if not _loaded:
        load_cards()
    return CARDS.get(name)
