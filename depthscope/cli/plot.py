"""``depthscope plot DIR``: redraw a run directory's figures and report from its saved results."""

from __future__ import annotations

import argparse
from pathlib import Path

from depthscope.cli.lazy import Handler


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "plot",
        help="redraw figures and the report of a run directory from its saved results",
        description="Redraw DIR/figures/ (PNG and PDF) and DIR/report.html from the saved "
        "results/*.json alone (no model is loaded), e.g. after upgrading depthscope or copying a "
        "run directory from a cluster.",
    )
    parser.add_argument("run_dir", type=Path, help="a run directory written by depthscope analyze")
    parser.set_defaults(handler=Handler("depthscope.cli.handlers.plot:run_plot"))
    return parser
