"""``depthscope prune MODEL``: its options and their checks (the run: :mod:`depthscope.cli.handlers.prune`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from depthscope.cli.lazy import Handler
from depthscope.cli.options import add_model_options
from depthscope.experiments.prune.settings import CRITERIA, DEFAULT_CRITERIA, PruneSettings
from depthscope.models.loading.zoo import DEFAULT_MODEL

DEFAULTS = PruneSettings(max_drop=4)

EXAMPLES = """\
examples:
  depthscope prune smollm2-135m --max-drop 8
  depthscope prune smollm2-135m --run runs/smollm2-135m --max-drop 4 --save pruned/smollm2-26l
  depthscope prune ./my-model --criteria block-influence,angular --text file:held_out.txt
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``prune`` on the ``depthscope`` command's subparsers."""

    parser = subparsers.add_parser(
        "prune",
        help="rank layers for removal by several criteria and validate each by measurement",
        description="Rank MODEL's layers by each criterion (the paper's future effect, ShortGPT's "
        "Block Influence, Gromov et al.'s angular distance), remove 1..K layers without "
        "retraining and measure perplexity on held-out text and teacher-forced answer accuracy "
        "on tasks, against a random-removal baseline. Writes DIR/prune.json and "
        "DIR/figures/prune_metrics.png/pdf; --save writes the best K-layer-smaller model.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        nargs="?",
        default=DEFAULT_MODEL,
        help="built-in name, Hugging Face id, local folder or .gguf file "
        f"(default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--criteria",
        default=",".join(DEFAULT_CRITERIA),
        help=f"comma-separated, from {', '.join(CRITERIA)} (default: {','.join(DEFAULT_CRITERIA)})",
    )
    parser.add_argument(
        "--max-drop", type=int, default=4, metavar="K", help="remove 1..K layers (default: 4)"
    )
    parser.add_argument(
        "--run",
        type=Path,
        default=None,
        help="run directory whose future-effects (current-effects) result supplies the effect "
        "criteria (default: computed here on the calibration prompts)",
    )
    parser.add_argument(
        "--text",
        default=DEFAULTS.text,
        help="held-out text for perplexity, e.g. file:PATH (comma-separated for several); "
        f"'none' to skip (default: {DEFAULTS.text})",
    )
    parser.add_argument(
        "--text-n", type=int, default=DEFAULTS.text_n, help=f"texts (default: {DEFAULTS.text_n})"
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=DEFAULTS.max_tokens,
        help=f"tokens kept per text (default: {DEFAULTS.max_tokens})",
    )
    parser.add_argument(
        "--task",
        default=DEFAULTS.task,
        help="tasks with answers for teacher-forced accuracy, e.g. "
        f"builtin:arith-fewshot:2,builtin:nested:1; 'none' to skip (default: {DEFAULTS.task})",
    )
    parser.add_argument(
        "--task-n",
        type=int,
        default=DEFAULTS.task_n,
        help=f"examples (per level for levelled tasks; default: {DEFAULTS.task_n})",
    )
    parser.add_argument(
        "--calib",
        default=DEFAULTS.calib,
        help=f"prompts the criteria are computed on (default: {DEFAULTS.calib})",
    )
    parser.add_argument(
        "--calib-n",
        type=int,
        default=DEFAULTS.calib_n,
        help=f"calibration prompts (default: {DEFAULTS.calib_n})",
    )
    parser.add_argument(
        "--random-seeds",
        type=int,
        default=DEFAULTS.random_seeds,
        help=f"random-removal baselines (default: {DEFAULTS.random_seeds})",
    )
    parser.add_argument("--seed", type=int, default=0, help="data and random seed (default: 0)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULTS.batch_size,
        help=f"layer sets replayed together (default: {DEFAULTS.batch_size})",
    )
    parser.add_argument("--out", type=Path, default=None, help="default: runs/prune-<model>")
    parser.add_argument(
        "--save",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the model with K layers removed by the best-validated criterion",
    )
    parser.add_argument(
        "--heal",
        choices=["lora"],
        default=None,
        help="fine-tune every pruned candidate briefly with LoRA on the layers next to its cut "
        'and measure it again (needs peft: pip install "depthscope[eval]")',
    )
    parser.add_argument(
        "--heal-steps", type=int, default=50, help="LoRA steps per candidate (default: 50)"
    )
    parser.add_argument(
        "--heal-data",
        default="builtin:text",
        help="text the healing trains on (default: builtin:text, drawn with the heal seed)",
    )
    parser.add_argument(
        "--eval",
        default=None,
        metavar="lm-eval:TASKS",
        help="lm-evaluation-harness tasks at k = K, e.g. lm-eval:boolq,arc_easy (needs lm_eval; "
        "the harness downloads their data, or give local task YAMLs with --eval-include)",
    )
    parser.add_argument(
        "--eval-include", default=None, metavar="DIR", help="folder of local harness task YAMLs"
    )
    parser.add_argument(
        "--eval-limit", type=int, default=None, help="examples per harness task (default: all)"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the figure")
    add_model_options(parser)
    parser.set_defaults(
        handler=Handler("depthscope.cli.handlers.prune:run_prune_command", check=check)
    )
    return parser


def _none(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() in ("", "none") else value.strip()


def settings_from_args(args: argparse.Namespace):
    criteria = tuple(c.strip() for c in args.criteria.split(",") if c.strip())
    return PruneSettings(
        max_drop=args.max_drop,
        criteria=criteria,
        text=_none(args.text),
        text_n=args.text_n,
        max_tokens=args.max_tokens,
        task=_none(args.task),
        task_n=args.task_n,
        calib=args.calib,
        calib_n=args.calib_n,
        random_seeds=args.random_seeds,
        seed=args.seed,
        batch_size=args.batch_size,
        run_dir=str(args.run) if args.run else None,
        heal=args.heal,
        heal_steps=args.heal_steps,
        heal_data=args.heal_data,
        eval=args.eval,
        eval_include=args.eval_include,
        eval_limit=args.eval_limit,
    )


def check(args: argparse.Namespace) -> None:
    """The settings ``prune`` refuses, before anything heavy is imported."""
    settings_from_args(args).check()
