"""``depthscope map SOURCE TARGET``: its options and their checks (the fit: :mod:`depthscope.cli.handlers.maps`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from depthscope.cli.lazy import Handler
from depthscope.cli.options import add_model_options, model_stem
from depthscope.core.errors import DepthscopeError

DEFAULT_DATA = "builtin:text"
# builtin:text gives ~39k aligned tokens for gemma3-270m -> smollm2-135m; 30k + 6k fit with room,
# 30k >> d_source + 1 (641); the whole run takes 5.5 minutes on 2 CPU cores (measured).
DEFAULT_TOKENS = 30_000
DEFAULT_VAL_TOKENS = 6_000
DEFAULT_RIDGE = 1e-4  # the lowest held-out error of the sweep in docs/linear-maps.md

EXAMPLES = """\
examples:
  depthscope map gemma3-270m smollm2-135m             18 -> 30 layers, different tokenizers
  depthscope map ./small-model ./large-model --data file:corpus.txt --tokens 100000
  depthscope map gemma3-270m smollm2-135m --null random-init   also fit from an untrained source
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``map`` on the ``depthscope`` command's subparsers."""
    parser = subparsers.add_parser(
        "map",
        help="fit linear maps from every layer of a shallow model to every layer of a deeper one",
        description="Run SOURCE and TARGET on the same text, fit an affine ridge map from every "
        "residual boundary of SOURCE to every boundary of TARGET (exact least squares from "
        "streamed float64 statistics), and score each on held-out text by the paper's relative "
        "error. Writes DIR/results/linear-map.json, DIR/run.json and DIR/figures/.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source", help="the shallower model: built-in name, hub id, folder or .gguf"
    )
    parser.add_argument("target", help="the deeper model")
    parser.add_argument(
        "--data", default=DEFAULT_DATA, help=f"text source (default: {DEFAULT_DATA}, English prose)"
    )
    parser.add_argument(
        "--tokens",
        type=int,
        default=DEFAULT_TOKENS,
        help=f"aligned training tokens (default: {DEFAULT_TOKENS})",
    )
    parser.add_argument(
        "--val-tokens",
        type=int,
        default=DEFAULT_VAL_TOKENS,
        help=f"aligned held-out tokens, from texts not used for training (default: {DEFAULT_VAL_TOKENS})",
    )
    parser.add_argument(
        "--ridge",
        type=float,
        default=DEFAULT_RIDGE,
        help="ridge strength as a fraction of the source's mean per-dimension variance "
        f"(default: {DEFAULT_RIDGE}; 0 = ordinary least squares)",
    )
    parser.add_argument(
        "--ridge-sweep",
        type=_ridges,
        default=(),
        metavar="R,R,...",
        help="further ridge strengths to solve from the same statistics and score on the same "
        "held-out tokens (one pass over the data; the saved maps stay those of --ridge), e.g. "
        "0,1e-5,1e-3,1e-2,1e-1; each holds one float32 copy of the maps while scoring",
    )
    parser.add_argument(
        "--null",
        type=_null,
        default=None,
        metavar="random-init[:SEED]",
        help="also fit the same maps from SOURCE's architecture and tokenizer with freshly "
        "initialised weights (seed 0, or SEED), scored on the same held-out texts, and test per "
        "source layer whether the trained source's best map beats the null's (paired bootstrap, "
        "Holm); repeats every pass, about doubling the run time",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="run directory (default: runs/map-SOURCE-TARGET)"
    )
    add_model_options(parser)
    parser.add_argument("--seed", type=int, default=0, help="order of the texts (default: 0)")
    parser.add_argument(
        "--batch-size", type=int, default=8, help="texts per forward pass (default: 8)"
    )
    parser.add_argument(
        "--memory-gb",
        type=float,
        default=6.0,
        help="budget for the statistics; above it target layers are fitted in several passes "
        "(default: 6)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")
    parser.set_defaults(handler=Handler("depthscope.cli.handlers.maps:run_map", check=check))
    return parser


def _ridges(text: str) -> tuple[float, ...]:
    """``0,1e-5,1e-3`` -> floats, with the option named in the error."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--ridge-sweep takes comma-separated numbers, e.g. 0,1e-5,1e-3 (got {text!r})"
        ) from None


NULL_KINDS = ("random-init",)


def _null(text: str) -> str:
    """``random-init`` or ``random-init:SEED`` -> ``random-init:SEED``, with the option named in
    the error."""
    kind, sep, seed = text.strip().partition(":")
    if kind in NULL_KINDS and (not sep or seed.isdigit()):
        return f"{kind}:{int(seed) if sep else 0}"
    raise argparse.ArgumentTypeError(
        f"--null takes random-init or random-init:SEED (fresh weights of SOURCE's architecture, "
        f"SEED a non-negative integer), got {text!r}"
    )


def check(args: argparse.Namespace) -> None:
    """The option values ``map`` refuses, before anything heavy is imported."""
    if args.tokens < 1 or args.val_tokens < 1:
        raise DepthscopeError("--tokens and --val-tokens must be at least 1")
    if args.ridge < 0 or any(r < 0 for r in args.ridge_sweep):
        raise DepthscopeError(
            f"--ridge and --ridge-sweep must be >= 0 (got {args.ridge}, {list(args.ridge_sweep)})"
        )
    if args.batch_size < 1:
        raise DepthscopeError("--batch-size must be at least 1")
    if args.memory_gb <= 0:
        raise DepthscopeError("--memory-gb must be positive")


def default_out(source: str, target: str) -> Path:
    """``runs/map-SOURCE-TARGET``: where a map goes without ``--out``."""
    return Path("runs") / f"map-{model_stem(source)}-{model_stem(target)}"
