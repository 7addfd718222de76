"""``depthscope export RUN_DIR``: every saved result as a tidy table (CSV or Parquet)."""

from __future__ import annotations

import argparse
from pathlib import Path

from depthscope.cli.lazy import Handler
from depthscope.core.result import TIDY_COLUMNS
from depthscope.results.export import FORMATS


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="write every saved result of a run as a tidy table (CSV or Parquet)",
        description="Write RUN_DIR/results/*.json as tidy tables, one row per number "
        f"({', '.join(TIDY_COLUMNS)}), to OUT/<analysis>.csv or .parquet.",
        epilog="examples:\n  depthscope export runs/smollm2-135m\n"
        "  depthscope export runs/smollm2-135m --format parquet --out tables/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", type=Path, help="a run directory written by depthscope")
    parser.add_argument("--format", choices=FORMATS, default="csv", help="default: csv")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: RUN_DIR/export)"
    )
    parser.set_defaults(handler=Handler("depthscope.cli.handlers.export:run_export"))
    return parser
