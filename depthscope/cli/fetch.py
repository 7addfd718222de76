"""``depthscope fetch NAME``: download and convert a built-in model (done on first use anyway)."""

from __future__ import annotations

import argparse

from depthscope.models.loading.zoo import fetch_builtin, is_cached


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "fetch", help="download and convert a built-in model (done automatically on first use)"
    )
    parser.add_argument("name", help="built-in model name (see `depthscope models`)")
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if a valid cached copy exists"
    )
    parser.set_defaults(handler=run_fetch)
    return parser


def run_fetch(args: argparse.Namespace) -> int:
    if is_cached(args.name) and not args.force:
        print(f"{args.name}: already cached in {fetch_builtin(args.name, progress=False)}")
        return 0
    fetch_builtin(args.name, progress=True, force=args.force)  # reports its own stages and timing
    return 0
