"""``depthscope analyze MODEL``: its options and their first checks (the run: :mod:`depthscope.cli.handlers.analyze`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from depthscope.cli.catalogue import analysis_help, preset_names
from depthscope.cli.lazy import Handler
from depthscope.cli.options import add_model_options, batch_size, model_stem
from depthscope.core.errors import DepthscopeError
from depthscope.data.sources import DEFAULT_DATA, check_spec, describe_sources
from depthscope.models.loading.zoo import DEFAULT_MODEL


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    sources = "\n".join(f"  {form:<24} {text}" for form, text in describe_sources())
    analyze = subparsers.add_parser(
        "analyze",
        help="run analyses on a model and save results, figures and a report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the paper's analyses on MODEL and write DIR/run.json, DIR/results/*.json, "
        "DIR/figures/ and DIR/report.html. Rerunning the same command resumes an interrupted run "
        "and skips analyses whose results are up to date (without loading the model if all are). "
        "Each analysis runs on its own default data unless --data is given.",
        epilog=analysis_help() + "\n\ndata sources:\n" + sources,
    )
    analyze.add_argument(
        "model",
        nargs="?",
        default=DEFAULT_MODEL,
        help=f"built-in name, Hugging Face id, local folder or .gguf file (default: {DEFAULT_MODEL})",
    )
    analyze.add_argument(
        "--analyses",
        default="all",
        help="comma-separated analyses; all = the five residual-stream analyses (E2-E6, the default); "
        "igrad, erasure and depth-score run when named",
    )
    analyze.add_argument(
        "--data",
        default=None,
        help=f"prompt source for every analysis (default: each analysis's own, {DEFAULT_DATA} "
        "for E2-E6 (5 prompts of each), builtin:paper for igrad/erasure, builtin:hops for "
        "depth-score)",
    )
    analyze.add_argument(
        "-n",
        type=int,
        default=None,
        help="number of prompts; per level for levelled sources, per source for a mixture A+B "
        "(default: 10, 5 of each source of the default mixture, a fixed set such as "
        "builtin:e12 whole, or the preset's)",
    )
    analyze.add_argument(
        "--preset",
        default=None,
        choices=preset_names(),
        help="paper: the paper's data (hf: when the hub is reachable, else the closest built-in "
        "source), prompt counts and settings per analysis; explicit --data/-n/--set still win "
        "(docs/paper-fidelity.md)",
    )
    analyze.add_argument(
        "--out", type=Path, default=None, help="run directory (default: runs/<model name>)"
    )
    analyze.add_argument(
        "--seed", type=int, default=0, help="seed for generated data and split points (default: 0)"
    )
    analyze.add_argument(
        "--batch-size",
        type=batch_size,
        default="auto",
        help="intervention rows replayed together, or auto: what fits the free memory of a GPU, "
        "64 on CPU (default: auto); it halves by itself on out-of-memory",
    )
    analyze.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a setting of one analysis, e.g. --set future-effects.front=0 --set k=10 "
        "(repeatable; a key several analyses share needs the analysis prefix; keys listed below)",
    )
    analyze.add_argument(
        "--fresh", action="store_true", help="ignore saved results and checkpoints"
    )
    analyze.add_argument("--no-plots", action="store_true", help="skip figures and the HTML report")
    analyze.add_argument(
        "--reference",
        choices=("random-init",),
        default=None,
        help="also run the analyses on the same architecture with freshly initialised weights "
        "(seeded by --seed) into DIR/reference-random-init; the verdict then says what the "
        "trained model shows beyond it (twice the time)",
    )
    add_model_options(analyze)

    analyze.set_defaults(
        handler=Handler("depthscope.cli.handlers.analyze:run_analyze", check=check)
    )
    return analyze


def check(args: argparse.Namespace) -> None:
    """The options checked before anything else (a refusal imports nothing heavy)."""
    if args.n is not None and args.n < 1:
        raise DepthscopeError("-n must be at least 1")
    if args.batch_size != "auto" and args.batch_size < 1:
        raise DepthscopeError("--batch-size must be at least 1 (or auto)")
    if getattr(args, "data", None):
        check_spec(args.data)


def default_out(model: str) -> Path:
    return Path("runs") / model_stem(model)
