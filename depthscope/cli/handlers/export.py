"""``depthscope export RUN_DIR``: every saved result written as a tidy table."""

from __future__ import annotations

import argparse

from depthscope.results.export import export_run


def run_export(args: argparse.Namespace) -> int:
    written = export_run(args.run_dir, args.format, args.out)
    for path in written:
        print(path)
    return 0
