"""``depthscope scratch``: train a small model from scratch on DM-style arithmetic (E11)."""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace

from depthscope.cli.handlers.common import apply_threads
from depthscope.cli.scratch import size_from_args
from depthscope.cli.training import settings_from_args, summary_lines
from depthscope.core.progress import make_progress
from depthscope.data import dm_arith as arith
from depthscope.experiments.training.e11 import TOKENIZER_ID, eval_sets, training_draw
from depthscope.experiments.training.loop import TrainJob, claim_out, train
from depthscope.experiments.training.models import build_model, count_parameters
from depthscope.experiments.training.recipes import E11_DEFAULTS
from depthscope.experiments.training.tokenizer import char_tokenizer


def run_scratch(args: argparse.Namespace) -> int:
    """The ``scratch`` command; returns the exit status (errors are raised as DepthscopeError)."""

    settings = settings_from_args(args, E11_DEFAULTS)  # checked by cli.scratch.check
    apply_threads(args)
    size = size_from_args(args, settings)
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
    print("\n".join(summary_lines(record, args.out)))
    return 0
