"""``depthscope plot DIR``: the run directory's figures and report redrawn from its saved results."""

from __future__ import annotations

import argparse
from pathlib import Path

from depthscope.core.folders import OutputFolder
from depthscope.core.run_folder import RunFolder
from depthscope.figures.report import plot_run, write_report


def plot_and_report(run_dir: Path) -> None:
    """Every figure of the run directory, then its report; says where they are."""
    files = plot_run(run_dir)
    report = write_report(run_dir)
    print(f"{len(files)} figure files in {RunFolder(run_dir).figures}; report: {report}")


def run_plot(args: argparse.Namespace) -> int:
    """Redraw a run folder, holding its lock: never while another command writes it."""
    folder = OutputFolder(args.run_dir)
    folder.require_run()
    with folder.lock():
        plot_and_report(args.run_dir)
    return 0
