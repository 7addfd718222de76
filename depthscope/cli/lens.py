"""``depthscope lens train MODEL --out DIR``: train a tuned lens to read beside the logit lens."""

from __future__ import annotations

import argparse
from pathlib import Path

from depthscope.cli.lazy import Handler
from depthscope.cli.options import add_model_options
from depthscope.cli.training import add_threads_option, check_threads
from depthscope.experiments.lens_settings import LensSettings
from depthscope.models.loading.zoo import DEFAULT_MODEL

DEFAULTS = LensSettings()
EXAMPLES = """\
examples:
  depthscope lens train --out runs/lens/smollm2-135m
  depthscope lens train gemma3-270m --tokens 32768 --out runs/lens/gemma3-270m
  depthscope analyze --analyses logit-lens --set logit-lens.lens=tuned:runs/lens/smollm2-135m
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "lens",
        help="train a tuned lens (one affine translator per layer) for a model",
        description="Tuned lenses (Belrose et al. 2023). `lens train` fits one affine "
        "translator per residual boundary so that each boundary's readout matches the model's "
        "final distribution, and writes DIR/lens.safetensors and DIR/lens.json (with the "
        "held-out KL per boundary of the logit and the tuned lens). Read it with "
        "`depthscope analyze --set logit-lens.lens=tuned:DIR`.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="lens_command", metavar="ACTION", required=True)
    train = actions.add_parser(
        "train",
        help="train a tuned lens",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "model",
        nargs="?",
        default=DEFAULT_MODEL,
        help=f"built-in name, Hugging Face id, folder or .gguf (default: {DEFAULT_MODEL})",
    )
    train.add_argument("--out", type=Path, required=True, help="folder for the lens")
    train.add_argument(
        "--data", default=DEFAULTS.data, help=f"text to train on (default: {DEFAULTS.data})"
    )
    train.add_argument(
        "--tokens",
        type=int,
        default=DEFAULTS.tokens,
        help=f"training tokens (default: {DEFAULTS.tokens})",
    )
    train.add_argument(
        "--heldout-tokens",
        type=int,
        default=DEFAULTS.heldout_tokens,
        help=f"held-out tokens scored at the end (default: {DEFAULTS.heldout_tokens})",
    )
    train.add_argument(
        "--seq-len",
        type=int,
        default=DEFAULTS.seq_len,
        help=f"tokens per window (default: {DEFAULTS.seq_len})",
    )
    train.add_argument(
        "--batch",
        type=int,
        default=DEFAULTS.batch,
        help=f"windows per step (default: {DEFAULTS.batch})",
    )
    train.add_argument(
        "--lr", type=float, default=DEFAULTS.lr, help=f"Adam (default: {DEFAULTS.lr})"
    )
    train.add_argument("--seed", type=int, default=0, help="order of the texts (default: 0)")
    train.add_argument(
        "--checkpoint-every",
        type=int,
        default=DEFAULTS.checkpoint_every,
        help=f"steps between checkpoints (default: {DEFAULTS.checkpoint_every})",
    )
    train.add_argument("--fresh", action="store_true", help="ignore a checkpoint in --out")
    add_model_options(train)
    add_threads_option(train)
    train.set_defaults(handler=Handler("depthscope.cli.handlers.lens:run_lens_train", check=check))
    return parser


def settings_from_args(args: argparse.Namespace) -> LensSettings:
    """The lens's training settings from the options."""
    return LensSettings(
        data=args.data,
        tokens=args.tokens,
        heldout_tokens=args.heldout_tokens,
        seq_len=args.seq_len,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )


def check(args: argparse.Namespace) -> None:
    """The options ``lens train`` refuses, before anything heavy is imported (in its order)."""
    check_threads(args)
    settings_from_args(args).check()
