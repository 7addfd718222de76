"""The command line's snapshot of the built-in cards (depthscope/cli/builtin_cards.py) is what the
cards declare, so `depthscope analyze --help` lists them correctly without importing them.

Rewrite the snapshot after changing a card: ``python tests/cli/test_catalogue.py``.
"""

from __future__ import annotations

import pprint
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "depthscope" / "cli" / "builtin_cards.py"

HEADER = '''"""The built-in cards as the command line describes them: written by
``python tests/cli/test_catalogue.py`` from the cards (:func:`depthscope.core.registry.describe`);
that test fails when this differs from them. Data only: reading it imports nothing.
"""

'''


def builtin_descriptions() -> list[dict]:
    from depthscope.analyses import cards
    from depthscope.core.registry import describe

    return [describe(c) for c in cards() if c.__module__.startswith("depthscope.analyses.")]


def test_the_snapshot_is_what_the_cards_declare():
    from depthscope.cli.builtin_cards import BUILTIN

    assert builtin_descriptions() == BUILTIN, (
        "the built-in cards changed; rewrite the snapshot: python tests/cli/test_catalogue.py"
    )


def test_the_snapshot_says_what_the_catalog_says():
    """describe() reads runnable, default run and order from the class alone; the catalog agrees."""
    from depthscope.analyses import default_run, paper_order, runnable
    from depthscope.cli.builtin_cards import BUILTIN

    names = [entry["name"] for entry in BUILTIN]
    assert [n for n in paper_order() if n in names] == names
    assert [e["name"] for e in BUILTIN if e["runnable"]] == [n for n in runnable() if n in names]
    assert [e["name"] for e in BUILTIN if e["default_run"]] == [
        n for n in default_run() if n in names
    ]


def test_help_lists_what_the_registry_holds():
    from depthscope.cli import catalogue
    from depthscope.results.compare import quantities
    from depthscope.run.presets import preset_names

    assert catalogue.preset_names() == preset_names()
    assert catalogue.quantity_names() == list(quantities())
    text = catalogue.analysis_help()
    assert "--set future-effects.front=" in text and "* contributions" not in text


def write_snapshot() -> None:
    SNAPSHOT.write_text(
        HEADER + "BUILTIN: list[dict] = " + pprint.pformat(builtin_descriptions(), sort_dicts=False)
    )
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", str(SNAPSHOT)], check=False)


if __name__ == "__main__":
    write_snapshot()
    print(f"wrote {SNAPSHOT.relative_to(ROOT)}")
