"""``depthscope lens train MODEL --out DIR``: train a tuned lens to read beside the logit lens."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from depthscope.cli.options import add_model_options, load_from_options
from depthscope.cli.training import add_threads_option, apply_threads
from depthscope.core.progress import make_progress
from depthscope.experiments.lens import LensSettings, train_lens
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
    train.set_defaults(handler=run_lens_train)
    return parser


def run_lens_train(args: argparse.Namespace) -> int:
    apply_threads(args)
    settings = LensSettings(
        data=args.data,
        tokens=args.tokens,
        heldout_tokens=args.heldout_tokens,
        seq_len=args.seq_len,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    settings.check()
    with make_progress() as progress:
        progress.note(f"loading {args.model}")
        lm = load_from_options(args, args.model, out=args.out)
        progress.note(
            f"{lm.name}: {lm.n_layers} layers, d={lm.d_model}; {settings.steps} steps of "
            f"{settings.batch}×{settings.seq_len} tokens from {settings.data}"
        )
        record = train_lens(lm, settings, args.out, progress, fresh=args.fresh)
    held = record["heldout"]["kl_lens_final"]
    logit, tuned = np.asarray(held["logit"]), np.asarray(held["tuned"])
    below = int((tuned < logit).sum())
    print(
        f"held-out KL(lens ‖ final) over {record['heldout']['tokens']} tokens: tuned below logit "
        f"at {below} of {logit.size} boundaries; mean {logit.mean():.3f} (logit) vs "
        f"{tuned.mean():.3f} (tuned); {record['tokens']} tokens in {record['seconds']:.0f} s"
    )
    print(
        f"lens in {args.out}/; read it with: depthscope analyze {args.model} --analyses "
        f"logit-lens --set logit-lens.lens=tuned:{args.out}"
    )
    return 0
