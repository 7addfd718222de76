"""``depthscope finetune MODEL``: E12 at laptop scale — fully fine-tune a causal LM on arithmetic.

Fine-tunes any model depthscope loads (built-in ``smollm2-135m`` included) with the paper's recipe
scaled down (:mod:`depthscope.experiments.training.e12`, docs/training.md) and writes a model
folder that ``depthscope analyze`` loads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from depthscope.cli.options import add_model_options, load_from_options
from depthscope.cli.training import (
    add_threads_option,
    add_training_options,
    apply_threads,
    settings_from_args,
    summary_lines,
)
from depthscope.core.errors import DepthscopeError
from depthscope.core.progress import make_progress
from depthscope.data.prompts import tokenize
from depthscope.data.sources import DM_ARITH
from depthscope.engine.batch import pad_id as tokenizer_pad_id
from depthscope.experiments.training.e11 import eval_sets as dm_eval_sets
from depthscope.experiments.training.e11 import training_draw
from depthscope.experiments.training.e12 import (
    DEFAULT_DATA,
    DEFAULT_EVAL_EXAMPLES,
    DEFAULT_POOL,
    DEFAULTS,
    check_answers,
    dm_arith_scale,
    load_data,
    pool_draw,
)
from depthscope.experiments.training.loop import TrainJob, claim_out, train
from depthscope.experiments.training.models import count_parameters
from depthscope.experiments.training.packing import tokenize_example

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
        default=DEFAULT_DATA,
        help=f"training data: {DM_ARITH}[:dm|small] (DeepMind-style arithmetic, the paper's, "
        "at scale dm unless :small is named; default), any "
        "--data source of `depthscope analyze` with answers for --loss answer, e.g. "
        "builtin:arith-chain or file:PATH.jsonl",
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=DEFAULT_POOL,
        help=f"examples drawn from a generated source (per level for levelled ones; "
        f"default: {DEFAULT_POOL}); files are used whole",
    )
    parser.add_argument(
        "--eval-examples",
        type=int,
        default=DEFAULT_EVAL_EXAMPLES,
        help=f"held-out examples per module or level (default: {DEFAULT_EVAL_EXAMPLES})",
    )
    add_model_options(parser)
    add_threads_option(parser)
    add_training_options(parser, DEFAULTS)
    parser.set_defaults(handler=run_finetune)
    return parser


def run_finetune(args: argparse.Namespace) -> int:
    """The ``finetune`` command; returns the exit status (errors are raised as DepthscopeError)."""

    settings = settings_from_args(args, DEFAULTS)
    settings.check()
    apply_threads(args)
    if Path(args.model).expanduser().resolve() == args.out.expanduser().resolve():
        raise DepthscopeError("--out must be another folder than the model being fine-tuned")
    if args.pool < 1 or args.eval_examples < 1:
        raise DepthscopeError("--pool and --eval-examples must be at least 1")
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
    print("\n".join(summary_lines(record)))
    print(f"model in {args.out}/; analyse it with: depthscope analyze {args.out}")
    return 0
