"""``depthscope scratch``: E11 at laptop scale — train a small model from scratch on DM-style arithmetic.

The experiment's data is :mod:`depthscope.experiments.training.e11`, its defaults
:mod:`depthscope.experiments.training.recipes`; this module is the command's options, and
:mod:`depthscope.cli.handlers.scratch` the run from them.
"""

from __future__ import annotations

import argparse

from depthscope.cli.lazy import Handler
from depthscope.cli.training import (
    add_threads_option,
    add_training_options,
    check_threads,
    settings_from_args,
)
from depthscope.core.errors import DepthscopeError
from depthscope.data import dm_arith as arith
from depthscope.experiments.training.recipes import (
    ARCHS,
    E11_DEFAULTS,
    E11_EVAL_EXAMPLES,
    E11_SCALE,
    E11_SIZE,
    ModelSize,
    TrainSettings,
)

EXAMPLES = """\
examples:
  depthscope scratch --arch transformer --loss all --out runs/e11/transformer-all
  depthscope scratch --arch shared --loss answer --out runs/e11/shared-answer
  depthscope scratch --arch transformer --layers 12 --d-model 256 --steps 20000 --device cuda \\
      --out runs/e11/transformer-big
  depthscope analyze runs/e11/transformer-all --analyses erasure,future-effects
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``scratch`` on the ``depthscope`` command's subparsers."""
    parser = subparsers.add_parser(
        "scratch",
        help="train a small Transformer or shared σ-MoE Transformer from scratch on arithmetic (E11)",
        description="Train a model from scratch on generated DeepMind-style arithmetic with a "
        "character-level tokenizer, the loss on all tokens or on answers only, and write a model "
        "folder (config, weights, tokenizer, training.json) that `depthscope analyze` loads. "
        "transformer: a pre-LN GPT-NeoX with RoPE and ReLU; shared: a weight-shared Transformer "
        "with a σ-MoE feed-forward, an analogue of the paper's MoEUT. Rerunning the same command "
        "resumes from the last checkpoint.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--arch", choices=ARCHS, default="transformer", help="(default: transformer)"
    )
    s = E11_SIZE
    parser.add_argument("--layers", type=int, default=s.layers, help=f"depth (default: {s.layers})")
    parser.add_argument(
        "--d-model", type=int, default=s.d_model, help=f"width (default: {s.d_model})"
    )
    parser.add_argument(
        "--heads", type=int, default=s.heads, help=f"attention heads (default: {s.heads})"
    )
    parser.add_argument(
        "--group-size",
        type=int,
        default=s.group_size,
        help=f"shared: distinct layers repeated to --layers (default: {s.group_size}, as MoEUT)",
    )
    parser.add_argument(
        "--experts",
        type=int,
        default=0,
        help="shared: σ-MoE experts per block (default: as many parameters as the transformer)",
    )
    parser.add_argument(
        "--expert-size",
        type=int,
        default=s.expert_size,
        help=f"shared: units per expert (default: {s.expert_size})",
    )
    parser.add_argument(
        "--experts-per-token",
        type=int,
        default=0,
        help="shared: active experts per token (default: 2·d-model / expert-size)",
    )
    parser.add_argument(
        "--scale",
        choices=tuple(arith.SCALES),
        default=E11_SCALE,
        help="size of the generated problems: small (one-digit operands, what a CPU-sized model "
        f"learns in minutes) or dm (about DM math's; for GPU runs) (default: {E11_SCALE})",
    )
    parser.add_argument(
        "--eval-examples",
        type=int,
        default=E11_EVAL_EXAMPLES,
        help=f"evaluation problems per module (default: {E11_EVAL_EXAMPLES})",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_threads_option(parser)
    add_training_options(parser, E11_DEFAULTS)
    parser.set_defaults(handler=Handler("depthscope.cli.handlers.scratch:run_scratch", check=check))
    return parser


def size_from_args(args: argparse.Namespace, settings: TrainSettings) -> ModelSize:
    """The model's size from the options (the σ-MoE sizes still 0 = derived)."""
    return ModelSize(
        layers=args.layers,
        d_model=args.d_model,
        heads=args.heads,
        group_size=args.group_size,
        n_experts=args.experts,
        expert_size=args.expert_size,
        experts_per_token=args.experts_per_token,
        max_len=max(2048, settings.seq_len),
    )


def check(args: argparse.Namespace) -> None:
    """Every option value ``scratch`` refuses, before anything heavy is imported (in this order)."""
    settings = settings_from_args(args, E11_DEFAULTS)
    settings.check()
    check_threads(args)
    if args.eval_examples < 1:
        raise DepthscopeError("--eval-examples must be at least 1")
    size_from_args(args, settings).check(args.arch)
