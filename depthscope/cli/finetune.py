"""``depthscope finetune MODEL``: E12 at laptop scale — fully fine-tune a causal LM on arithmetic.

Fine-tunes any model depthscope loads (built-in ``smollm2-135m`` included) with the paper's recipe
scaled down (:mod:`depthscope.experiments.training.e12`, docs/training.md) and writes a model
folder that ``depthscope analyze`` loads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from depthscope.cli.lazy import Handler
from depthscope.cli.options import add_model_options
from depthscope.cli.training import (
    add_threads_option,
    add_training_options,
    check_threads,
    settings_from_args,
)
from depthscope.core.errors import DepthscopeError
from depthscope.data.sources import DM_ARITH
from depthscope.experiments.training.recipes import (
    E12_DATA,
    E12_DEFAULTS,
    E12_EVAL_EXAMPLES,
    E12_POOL,
)

EXAMPLES = """\
examples:
  depthscope finetune smollm2-135m --out runs/e12/smollm2-dm-arith
  depthscope finetune smollm2-135m --data builtin:arith-chain --loss answer --out runs/e12/chain
  depthscope finetune ./my-model --data file:train.jsonl --steps 1000 --device cuda --out tuned
  depthscope analyze runs/e12/smollm2-dm-arith --analyses future-effects,erasure
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``finetune`` on the ``depthscope`` command's subparsers."""
    parser = subparsers.add_parser(
        "finetune",
        help="fully fine-tune a causal LM on arithmetic, then analyse it like any model (E12)",
        description="Full fine-tune (AdamW, every parameter) of MODEL on packed examples, with the "
        "loss on all tokens or on answers only, then write a model folder (config, weights, "
        "tokenizer, training.json) that `depthscope analyze` loads. Rerunning the same command "
        "resumes from the last checkpoint.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="built-in name, Hugging Face id, local folder or .gguf file")
    parser.add_argument(
        "--data",
        default=E12_DATA,
        help=f"training data: {DM_ARITH}[:dm|small] (DeepMind-style arithmetic, the paper's, "
        "at scale dm unless :small is named; default), any "
        "--data source of `depthscope analyze` with answers for --loss answer, e.g. "
        "builtin:arith-chain or file:PATH.jsonl",
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=E12_POOL,
        help=f"examples drawn from a generated source (per level for levelled ones; "
        f"default: {E12_POOL}); files are used whole",
    )
    parser.add_argument(
        "--eval-examples",
        type=int,
        default=E12_EVAL_EXAMPLES,
        help=f"held-out examples per module or level (default: {E12_EVAL_EXAMPLES})",
    )
    add_model_options(parser)
    add_threads_option(parser)
    add_training_options(parser, E12_DEFAULTS)
    parser.set_defaults(
        handler=Handler("depthscope.cli.handlers.finetune:run_finetune", check=check)
    )
    return parser


def check(args: argparse.Namespace) -> None:
    """Every option value ``finetune`` refuses, before anything heavy is imported (in this order);
    the data are read when the run starts."""
    settings_from_args(args, E12_DEFAULTS).check()
    check_threads(args)
    if Path(args.model).expanduser().resolve() == args.out.expanduser().resolve():
        raise DepthscopeError("--out must be another folder than the model being fine-tuned")
    if args.pool < 1 or args.eval_examples < 1:
        raise DepthscopeError("--pool and --eval-examples must be at least 1")
