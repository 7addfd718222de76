"""``depthscope plot DIR``: redraw a run directory's figures and report from its saved results."""

from __future__ import annotations

import argparse
from pathlib import Path

from depthscope.core.folders import OutputFolder
from depthscope.figures.report import plot_run, write_report


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "plot",
        help="redraw figures and the report of a run directory from its saved results",
        description="Redraw DIR/figures/ (PNG and PDF) and DIR/report.html from the saved "
        "results/*.json alone (no model is loaded), e.g. after upgrading depthscope or copying a "
        "run directory from a cluster.",
    )
    parser.add_argument("run_dir", type=Path, help="a run directory written by depthscope analyze")
    parser.set_defaults(handler=run_plot)
    return parser


def plot_and_report(run_dir: Path) -> None:
    """Every figure of the run directory, then its report; says where they are."""
    files = plot_run(run_dir)
    report = write_report(run_dir)
    print(f"{len(files)} figure files in {run_dir / 'figures'}; report: {report}")


def run_plot(args: argparse.Namespace) -> int:
    OutputFolder(args.run_dir).require_run()
    plot_and_report(args.run_dir)
    return 0
