"""``depthscope models``: the built-in models and whether they are cached."""

from __future__ import annotations

import argparse

from depthscope.cli.lazy import Handler


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models", help="list the built-in models and whether they are cached"
    )
    parser.set_defaults(handler=Handler("depthscope.cli.handlers.models:run_models"))
    return parser
