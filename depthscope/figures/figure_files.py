"""A result's figure files: every figure its card draws, saved as PNG and PDF.

:func:`plot_result` saves each figure as ``<analysis>_<what>.png`` (150 dpi) and ``.pdf``,
atomically, removes that analysis's figures from an earlier drawing that no longer exist, and
records the drawing order in ``figures/index.json`` for the HTML report.
"""

from __future__ import annotations

from pathlib import Path

from depthscope.core.atomic_files import atomic_write_json, read_json_object
from depthscope.core.result import Result
from depthscope.core.run_folder import FIGURE_INDEX
from depthscope.figures.common import Figures, save_figure


def draw(result: Result) -> Figures:
    """All figures of one result, in display order; a malformed document is a one-line error."""
    return result.plot()


def read_index(out_dir: Path) -> dict[str, list[str]]:
    """``{analysis: [figure stems in drawing order]}`` from the last drawings ({} if none)."""
    return read_json_object(Path(out_dir) / FIGURE_INDEX) or {}


def _record(out_dir: Path, analysis: str, stems: list[str]) -> None:
    index = read_index(out_dir)
    index[analysis] = stems
    atomic_write_json(Path(out_dir) / FIGURE_INDEX, index)


def _remove_stale(out_dir: Path, analysis: str, keep: set[Path]) -> None:
    """Delete this analysis's figures that the new drawing did not produce (e.g. fewer prompts)."""
    for suffix in ("png", "pdf"):
        for path in Path(out_dir).glob(f"{analysis}_*.{suffix}"):
            if path not in keep:
                path.unlink(missing_ok=True)


def plot_result(result: Result, out_dir: Path) -> list[Path]:
    """Draw every figure of ``result`` into ``out_dir``; returns the PNG and PDF files written."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    stems: list[str] = []
    for what, fig in draw(result).items():
        stem = f"{result.analysis}_{what}"
        written += save_figure(fig, out_dir / stem)
        stems.append(stem)
    _remove_stale(out_dir, result.analysis, set(written))
    _record(out_dir, result.analysis, stems)
    return written
