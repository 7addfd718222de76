"""``depthscope scratch``: E11 at laptop scale — train a small model from scratch on DM-style arithmetic.

The experiment's data and defaults are :mod:`depthscope.experiments.training.e11`; this module is
the command: its options, and the run from them.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace

from depthscope.cli.training import (
    add_threads_option,
    add_training_options,
    apply_threads,
    settings_from_args,
    summary_lines,
)
from depthscope.core.errors import DepthscopeError
from depthscope.core.progress import make_progress
from depthscope.data import dm_arith as arith
from depthscope.experiments.training.e11 import (
    DEFAULT_EVAL_EXAMPLES,
    DEFAULT_SCALE,
    DEFAULT_SIZE,
    DEFAULTS,
    TOKENIZER_ID,
    eval_sets,
    training_draw,
)
from depthscope.experiments.training.loop import TrainJob, claim_out, train
from depthscope.experiments.training.models import ARCHS, ModelSize, build_model, count_parameters
from depthscope.experiments.training.tokenizer import char_tokenizer

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
    s = DEFAULT_SIZE
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
        default=DEFAULT_SCALE,
        help="size of the generated problems: small (one-digit operands, what a CPU-sized model "
        f"learns in minutes) or dm (about DM math's; for GPU runs) (default: {DEFAULT_SCALE})",
    )
    parser.add_argument(
        "--eval-examples",
        type=int,
        default=DEFAULT_EVAL_EXAMPLES,
        help=f"evaluation problems per module (default: {DEFAULT_EVAL_EXAMPLES})",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_threads_option(parser)
    add_training_options(parser, DEFAULTS)
    parser.set_defaults(handler=run_scratch)
    return parser


def run_scratch(args: argparse.Namespace) -> int:
    """The ``scratch`` command; returns the exit status (errors are raised as DepthscopeError)."""

    settings = settings_from_args(args, DEFAULTS)
    settings.check()
    apply_threads(args)
    if args.eval_examples < 1:
        raise DepthscopeError("--eval-examples must be at least 1")
    size = ModelSize(
        layers=args.layers,
        d_model=args.d_model,
        heads=args.heads,
        group_size=args.group_size,
        n_experts=args.experts,
        expert_size=args.expert_size,
        experts_per_token=args.experts_per_token,
        max_len=max(2048, settings.seq_len),
    )
    size.check(args.arch)
    if args.arch == "shared":
        n_experts, k = size.experts()
        size = replace(size, n_experts=n_experts, experts_per_token=k)
    identity = {
        "command": "scratch",
        "arch": args.arch,
        "size": asdict(size),
        "eval_examples": args.eval_examples,
        "scale": args.scale,
        "tokenizer": TOKENIZER_ID,
    }
    if claim_out(args.out, identity, settings, args.fresh) == "done":
        print(f"{args.out} already holds this finished run; nothing to do (--fresh retrains)")
        return 0
    tokenizer = char_tokenizer()
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    model = build_model(args.arch, size, len(tokenizer), pad, eos, settings.seed).to(args.device)
    job = TrainJob(
        model=model,
        tokenizer=tokenizer,
        draw=training_draw(tokenizer, args.scale),
        eval_sets=eval_sets(tokenizer, args.eval_examples, settings.seed, args.scale),
        pad_id=pad,
        out=args.out,
        identity=identity,
        separator=tuple(tokenizer("\n", add_special_tokens=False)["input_ids"]),
        describe={
            "command": "scratch",
            "arch": args.arch,
            "parameters": count_parameters(model),
            "data": f"generated DM-style arithmetic ({args.scale} scale), modules: "
            + ", ".join(arith.INTERPOLATE),
            "tokenizer": f"{TOKENIZER_ID} (characters; a space joins the next character)",
            "device": args.device,
        },
    )
    with make_progress() as progress:
        progress.note(
            f"{args.arch}: {size.layers} layers, d={size.d_model}, "
            f"{count_parameters(model) / 1e6:.2f}M parameters; {settings.steps} steps of "
            f"{settings.batch_size}×{settings.seq_len} tokens, loss on {settings.loss} tokens"
        )
        record = train(job, settings, progress, fresh=args.fresh)
    print("\n".join(summary_lines(record)))
    print(f"model in {args.out}/; analyse it with: depthscope analyze {args.out}")
    return 0
