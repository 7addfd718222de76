"""``depthscope compare RUN RUN ...``: overlay runs of different models by relative depth."""

from __future__ import annotations

import argparse
from pathlib import Path

from depthscope.cli.catalogue import quantity_names
from depthscope.cli.lazy import Handler

EXAMPLES = """\
examples:
  depthscope compare runs/smollm2-135m runs/gemma3-270m --out runs/compare
  depthscope compare runs/a runs/b runs/c --quantities future-effect,lens-overlap
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``compare`` on the ``depthscope`` command's subparsers."""
    parser = subparsers.add_parser(
        "compare",
        help="overlay runs of different models by relative depth, with their verdicts",
        description="Overlay the profiles of two or more run directories by relative depth l/L "
        "(relative contribution, cosine, future effect, future/current output change, logit-lens "
        "KL and overlap), put their verdicts side by side and test their effective depths and "
        "change points against each other (paired bootstrap draws, Holm, equivalence within "
        "±0.05 relative depth; docs/compare.md). Writes DIR/compare.json, "
        "DIR/compare.html and DIR/figures/compare_*.png/pdf.",
        epilog=EXAMPLES + "\nquantities: " + ", ".join(quantity_names()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs") / "compare",
        help="output directory (default: runs/compare)",
    )
    parser.add_argument(
        "--quantities",
        default=None,
        help="comma-separated quantities (default: every one that all runs have)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")
    parser.set_defaults(handler=Handler("depthscope.cli.handlers.compare:run_compare"))
    return parser
