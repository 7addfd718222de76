"""``depthscope finetune MODEL``: E12 at laptop scale — fully fine-tune a causal LM on arithmetic.

The paper (App. D.5) fine-tunes Llama 3.2 3B on DeepMind arithmetic and finds that later layers
only seem to matter more: the depth where operand tokens stop mattering does not move. This command
fine-tunes any model depthscope loads (built-in ``smollm2-135m`` included) with the paper's recipe
scaled down (docs/training.md) and writes a model folder that ``depthscope analyze`` loads.
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from pathlib import Path

from depthscope.core.errors import DepthscopeError
from depthscope.data.example import Example
from depthscope.data.sources import DM_ARITH
from depthscope.experiments.training.loop import TrainJob, TrainSettings, claim_out, train
from depthscope.experiments.training.models import count_parameters
from depthscope.experiments.training.options import (
    add_threads_option,
    add_training_options,
    apply_threads,
    settings_from_args,
    summary_lines,
)
from depthscope.experiments.training.packing import Draw, TokenizedExample, tokenize_example
from depthscope.experiments.training.scratch_command import eval_sets as dm_eval_sets

DEFAULT_DATA = DM_ARITH
DEFAULT_POOL = 2000
DEFAULT_EVAL_EXAMPLES = 16
MIN_FILE_FOR_HELDOUT = 10

# E12's hyper-parameters scaled to a laptop (paper: AdamW lr 2e-5 constant after 100 warmup steps,
# wd 0, grad clip 1, 10k steps, batch 64 × 512 tokens); see docs/training.md.
DEFAULTS = TrainSettings(
    steps=200,
    batch_size=4,
    seq_len=96,
    lr=1e-4,
    schedule="constant",
    warmup=10,
    min_lr_ratio=1.0,
    weight_decay=0.0,
    grad_clip=1.0,
    loss="all",
    checkpoint_every=50,
    log_every=10,
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
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_threads_option(parser)
    add_training_options(parser, DEFAULTS)
    parser.set_defaults(handler=run_finetune)
    return parser


def _by_level(name: str, examples: list[Example]) -> dict[str, list[Example]]:
    groups: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        if example.answer:
            key = name if example.level is None else f"{name}/level-{example.level}"
            groups[key].append(example)
    return dict(groups)


def dm_arith_scale(spec: str) -> str | None:
    """``builtin:dm-arith[:SCALE]`` -> the scale, anything else -> None.

    Fine-tuning a pretrained model follows the paper's E12 and trains on ``dm`` when no scale is
    named (``--data builtin:dm-arith:small`` for small); analyses default to ``small``.
    """
    from depthscope.data.sources import dm_arith_scale as scale_of

    return scale_of(spec, default="dm")


def load_data(
    spec: str, pool: int, n_eval: int, seed: int
) -> tuple[list[Example] | None, dict[str, list[Example]], str]:
    """Training examples (None: drawn live from the DM-arith generator), evaluation sets, a note."""
    from depthscope.data.sources import load_examples

    spec = spec.strip()
    if dm_arith_scale(spec):
        return None, {}, ""
    if spec.startswith("file:"):
        examples = load_examples(spec, None, seed=seed)
        order = list(range(len(examples)))
        random.Random(f"depthscope:finetune-split:{seed}").shuffle(order)
        answered = [i for i in order if examples[i].answer]
        if len(examples) < MIN_FILE_FOR_HELDOUT or not answered:
            return examples, {}, f"{spec}: no held-out evaluation (too few examples with answers)"
        held = set(answered[: min(n_eval, len(examples) // MIN_FILE_FOR_HELDOUT)])
        train_examples = [examples[i] for i in order if i not in held]
        return train_examples, _by_level("heldout", [examples[i] for i in sorted(held)]), ""
    examples = load_examples(spec, pool, seed=seed)
    held = load_examples(spec, n_eval, seed=seed + 1)
    note = f"{spec}: held-out examples come from another seed; small problem spaces may repeat"
    return examples, _by_level("heldout", held), note


def check_answers(spec: str, examples: list[Example] | None, loss: str) -> None:
    """``--loss answer`` needs every training example to have an answer."""
    if loss != "answer" or examples is None:
        return
    missing = sum(1 for example in examples if not example.answer)
    if missing:
        raise DepthscopeError(
            f"--loss answer needs an answer for every example, but {missing} of {len(examples)} "
            f"examples of {spec} have none; use --loss all, or a source with answers "
            f'({DM_ARITH}, builtin:arith-chain, a .jsonl with "prompt" and "answer")'
        )


def _pool_draw(pool: list[TokenizedExample]) -> Draw:
    def draw(rng: random.Random) -> TokenizedExample:
        return pool[rng.randrange(len(pool))]

    return draw


def run_finetune(args: argparse.Namespace) -> int:
    """The ``finetune`` command; returns the exit status (errors are raised as DepthscopeError)."""
    from depthscope.core.progress import make_progress
    from depthscope.data.prompts import tokenize
    from depthscope.engine.batch import pad_id as tokenizer_pad_id
    from depthscope.experiments.training.scratch_command import training_draw
    from depthscope.models.loading.loader import load_model

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
        lm = load_model(args.model, device=args.device, progress=False)
        tokenizer = lm.tokenizer
        if examples is None:
            scale = dm_arith_scale(args.data)
            draw = training_draw(tokenizer, scale)
            sets = dm_eval_sets(tokenizer, args.eval_examples, settings.seed, scale)
        else:
            pool = [tokenize_example(tokenizer, e) for e in examples]
            draw = _pool_draw(pool)
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
