"""``depthscope fetch NAME``: download and convert a built-in model (done on first use anyway)."""

from __future__ import annotations

import argparse

from depthscope.cli.lazy import Handler


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "fetch", help="download and convert a built-in model (done automatically on first use)"
    )
    parser.add_argument("name", help="built-in model name (see `depthscope models`)")
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if a valid cached copy exists"
    )
    parser.set_defaults(handler=Handler("depthscope.cli.handlers.fetch:run_fetch"))
    return parser
