"""What the command line says about the analyses, read without importing them.

The built-in cards import torch (each analysis's computation sits beside its declaration), so
``depthscope analyze --help`` and ``compare --help`` read :data:`~depthscope.cli.builtin_cards.BUILTIN`,
a snapshot of what the built-in cards declare (:func:`depthscope.core.registry.describe`: name,
place in the paper's order, description, default data, settings with their defaults and help,
presets, profiles). ``python tests/cli/test_catalogue.py`` rewrites the snapshot from the cards,
and that test fails whenever the two differ. Cards registered in this process, and plugins
declared under the ``depthscope.analyses`` entry point (imported here to be described; with none
installed nothing heavy is imported), are described from their classes and take precedence.
"""

from __future__ import annotations

import functools

from depthscope.cli.builtin_cards import BUILTIN
from depthscope.core.registry import CARDS, describe, load_cards


@functools.cache
def _load_plugins() -> None:
    """Other packages' plugins register their cards: once a process (scanning the installed
    packages' entry points takes ~10 ms, and building the parser asks three times)."""
    load_cards(builtin=False)


def described() -> list[dict]:
    """Every card the command line knows, described, in the paper's order."""
    entries = {entry["name"]: entry for entry in BUILTIN}
    _load_plugins()
    entries.update({name: describe(card) for name, card in list(CARDS.items())})
    return sorted(entries.values(), key=lambda entry: (entry["order"], entry["name"]))


def analysis_help() -> str:
    """Every analysis with its description, default data and settings (key, default, meaning)."""
    lines = ["analyses (in the paper's order; * = run by --analyses all):"]
    for entry in described():
        if not entry["runnable"]:
            continue
        name = entry["name"]
        star = "*" if entry["default_run"] else " "
        lines.append(f" {star}{name:<16} {entry['description']}")
        lines.append(f"  {'':<16} default data: {entry['default_data']}")
        for key, shown, text in entry["settings"]:
            lines.append(f"  {'':<18}--set {name}.{key}={shown}  {text}".rstrip())
    return "\n".join(lines)


def preset_names() -> list[str]:
    """Every preset some card declares choices for (``--preset``)."""
    return sorted({name for entry in described() for name in entry["presets"]})


def quantity_names() -> list[str]:
    """The profiles the cards offer to ``depthscope compare``, in the paper's order."""
    return list(dict.fromkeys(q for entry in described() for q in entry["quantities"]))
