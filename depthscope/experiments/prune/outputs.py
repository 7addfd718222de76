"""What ``depthscope prune`` writes into its ``--out``: the figures, then ``prune.json``.

The folder is a run folder (:mod:`depthscope.core.run_folder`) claimed for the pruned model:
``prune.json`` (everything measured, with the table printed), ``heal.json`` (the healed
candidates, kept while ``--heal`` runs, :mod:`depthscope.experiments.prune.heal`) and
``figures/prune_*``.
"""

from __future__ import annotations

from pathlib import Path

from depthscope.core.atomic_files import atomic_write_json
from depthscope.core.run_folder import RunFolder
from depthscope.experiments.prune.figures import draw_prune
from depthscope.experiments.prune.pipeline import table_lines


def write_prune(doc: dict, out: Path, *, plots: bool) -> list[Path]:
    """Draw the figures (with ``plots``), add the table to ``doc`` and write ``prune.json``;
    returns the figure files."""
    folder = RunFolder(out)
    figures = draw_prune(doc, folder.figures) if plots else []
    doc["table"] = table_lines(doc)
    atomic_write_json(folder.prune, doc)
    return figures
