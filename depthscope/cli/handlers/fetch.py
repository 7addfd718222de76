"""``depthscope fetch NAME``: download and convert a built-in model into the cache."""

from __future__ import annotations

import argparse

from depthscope.models.loading.zoo import fetch_builtin, is_cached


def run_fetch(args: argparse.Namespace) -> int:
    if is_cached(args.name) and not args.force:
        print(f"{args.name}: already cached in {fetch_builtin(args.name, progress=False)}")
        return 0
    fetch_builtin(args.name, progress=True, force=args.force)  # reports its own stages and timing
    return 0
