"""``depthscope finetune MODEL``: fully fine-tune a causal LM on arithmetic (E12)."""

from __future__ import annotations

import argparse

from depthscope.cli.handlers.common import apply_threads, load_from_options
from depthscope.cli.training import settings_from_args, summary_lines
from depthscope.core.progress import make_progress
from depthscope.data.prompts import tokenize
from depthscope.engine.batch import pad_id as tokenizer_pad_id
from depthscope.experiments.training.e11 import eval_sets as dm_eval_sets
from depthscope.experiments.training.e11 import training_draw
from depthscope.experiments.training.e12 import (
    check_answers,
    dm_arith_scale,
    load_data,
    pool_draw,
)
from depthscope.experiments.training.loop import TrainJob, claim_out, train
from depthscope.experiments.training.models import count_parameters
from depthscope.experiments.training.packed_windows import tokenize_example
from depthscope.experiments.training.recipes import E12_DEFAULTS


def run_finetune(args: argparse.Namespace) -> int:
    """The ``finetune`` command; returns the exit status (errors are raised as DepthscopeError)."""

    settings = settings_from_args(args, E12_DEFAULTS)  # checked by cli.finetune.check
    apply_threads(args)
    examples, eval_examples, note = load_data(
        args.data, args.pool, args.eval_examples, settings.seed
    )
    check_answers(args.data, examples, settings.loss)
    identity = {
        "command": "finetune",
        "model": args.model,
        "data": args.data,
        "pool": args.pool,
        "eval_examples": args.eval_examples,
    }
    if claim_out(args.out, identity, settings, args.fresh) == "done":  # checked before loading
        print(f"{args.out} already holds this finished run; nothing to do (--fresh retrains)")
        return 0
    with make_progress() as progress:
        if note:
            progress.note(note)
        progress.note(f"loading {args.model}")
        lm = load_from_options(args, args.model, out=args.out, progress=False)
        tokenizer = lm.tokenizer
        if examples is None:
            scale = dm_arith_scale(args.data)
            draw = training_draw(tokenizer, scale)
            sets = dm_eval_sets(tokenizer, args.eval_examples, settings.seed, scale)
        else:
            pool = [tokenize_example(tokenizer, e) for e in examples]
            draw = pool_draw(pool)
            sets = {
                name: [tokenize_example(tokenizer, e) for e in group]
                for name, group in eval_examples.items()
            }
        adds_bos = tokenizer.bos_token_id is not None and tokenize(tokenizer, "1")[:1] == [
            tokenizer.bos_token_id
        ]
        # The paper puts a BOS before every packed question; without one, a newline separates them.
        separator = (
            () if adds_bos else tuple(tokenizer("\n", add_special_tokens=False)["input_ids"])
        )
        job = TrainJob(
            model=lm.model,
            tokenizer=tokenizer,
            draw=draw,
            eval_sets=sets,
            pad_id=tokenizer_pad_id(tokenizer),
            out=args.out,
            identity=identity,
            separator=separator,
            describe={
                "command": "finetune",
                "base_model": lm.identity,
                "parameters": count_parameters(lm.model),
                "data": args.data,
                "device": args.device,
            },
            eval_batch_size=8,
        )
        progress.note(
            f"{lm.name}: {lm.n_layers} layers, {count_parameters(lm.model) / 1e6:.0f}M parameters; "
            f"{settings.steps} steps of {settings.batch_size}×{settings.seq_len} tokens from "
            f"{args.data}, loss on {settings.loss} tokens"
        )
        record = train(job, settings, progress, fresh=args.fresh)
    print("\n".join(summary_lines(record, args.out)))
    return 0
