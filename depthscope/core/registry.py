"""Analysis cards by name: the one registry, the table every layer may consult about an analysis.

A card (:class:`depthscope.analyses.base.Card`) registers itself here when its module is imported.
The built-in cards and those of other packages are found the same way, through the
``depthscope.analyses`` entry point (``pyproject.toml`` declares the built-in one), so a module
below the analyses, such as the :class:`~depthscope.core.result.Result` document, can find a
result's card by its name without importing any analysis.

:func:`describe` reads what the command line says about a card (its settings and their help,
presets, profiles) from the class alone, as plain data.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import sys

ENTRY_POINT_GROUP = "depthscope.analyses"
BUILTIN_CARDS = "depthscope.analyses"  # the target of the package's own entry point

CARDS: dict[str, type] = {}
_loaded = False
_tried: dict[tuple[str, str], bool] = {}  # (entry name, target) -> imported; each is tried once


def register(cls: type) -> type:
    """Class decorator: make a card (or analysis) known to the runner, report, verdict and CLI."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} needs a name to be registered")
    CARDS[cls.name] = cls
    return cls


def load_cards(*, builtin: bool = True) -> list[str]:
    """Import every module declared under the entry point; returns the names loaded.

    ``builtin=False`` imports only other packages' plugins (the command line's help describes the
    built-in cards without importing them). A plugin that fails to import is reported on one line
    and skipped, once per process; the other cards work.
    """
    global _loaded
    _loaded = _loaded or builtin
    loaded = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if not builtin and entry.value == BUILTIN_CARDS:
            continue
        key = (entry.name, entry.value)
        if key not in _tried:
            try:
                entry.load()
                _tried[key] = True
            except Exception as exc:  # a broken plugin must not break depthscope
                _tried[key] = False
                print(
                    f"depthscope: warning: analysis plugin {entry.name!r} ({entry.value}) could "
                    f"not be loaded: {type(exc).__name__}: {exc}",
                    file=sys.stderr,
                )
        if _tried[key]:
            loaded.append(entry.name)
    return loaded


def card(name: str) -> type | None:
    """The card registered as ``name`` (the built-in cards and plugins are loaded on first use)."""
    if not _loaded:
        load_cards()
    return CARDS.get(name)


def paper_rank(card: type) -> int:
    """``card``'s place in the paper's order (its experiment's number); cards without a paper
    reference rank last."""
    paper = getattr(card, "paper", None)
    return paper.number if paper else 1000


def setting_help(cls: type) -> list[tuple[str, object, str]]:
    """(key, default, help) for every setting of the analysis ``cls``, for --help and the docs."""
    defaults = cls.Settings()
    return [
        (f.name, getattr(defaults, f.name), f.metadata.get("help", ""))
        for f in dataclasses.fields(cls.Settings)
    ]


def describe(card: type) -> dict:
    """What the command line says about ``card``, as plain data read from the class alone.

    ``runnable``: an analysis (it has settings and an ``update``), which `depthscope analyze` runs;
    ``order``: its place in the paper's order (cards without a paper reference last);
    ``settings``: ``[key, default as --set takes it, help]``; ``quantities``: the names of the
    profiles it offers to `depthscope compare`.
    """
    settings, update = getattr(card, "Settings", None), getattr(card, "update", None)
    runnable = settings is not None and callable(update)
    return {
        "name": card.name,
        "order": paper_rank(card),
        "runnable": runnable,
        "default_run": runnable and bool(getattr(card, "in_default_run", False)),
        "description": card.description,
        "default_data": getattr(card, "default_data", None) if runnable else None,
        "settings": [
            [key, ",".join(default) if isinstance(default, tuple) else f"{default}", text]
            for key, default, text in (setting_help(card) if runnable else [])
        ],
        "presets": sorted(getattr(card, "presets", {})),
        "quantities": [profile.name for profile in getattr(card, "profiles", ())],
    }
