"""``depthscope compare RUN RUN ...``: the runs overlaid, their verdicts side by side and tested."""

from __future__ import annotations

import argparse

from depthscope.results.compare import compare_runs
from depthscope.verdict.comparison import row_line
from depthscope.verdict.summary import Summary


def run_compare(args: argparse.Namespace) -> int:
    wanted = (
        [q.strip() for q in args.quantities.split(",") if q.strip()] if args.quantities else None
    )
    doc = compare_runs(args.runs, args.out, wanted, plots=not args.no_plots)
    for run in doc["runs"]:
        print(f"{run['label']} ({run['n_layers']} layers, {run['run_dir']}):")
        summary = Summary.from_json(run["verdict"])
        for finding in summary.findings:
            print(f"  {finding.title:<30} {finding.headline}")
    print(
        "effective depths and change points (relative depth, 90 % intervals; Holm-corrected; "
        "'the same' only within ±0.05):"
    )
    for row in doc["differences"]:
        print(f"  {row_line(row)}")
    print(
        f"{len(doc['quantities'])} quantities compared; results in {args.out}/ "
        "(compare.json, compare.html, figures/)"
    )
    return 0
