"""Command-line options shared by ``depthscope scratch`` and ``depthscope finetune`` (light: no torch)."""

from __future__ import annotations

import argparse
from pathlib import Path

from depthscope.core.errors import DepthscopeError
from depthscope.experiments.training.recipes import LOSS_MODES, TrainSettings


def add_training_options(parser: argparse.ArgumentParser, defaults: TrainSettings) -> None:
    """``--steps``, ``--loss``, ``--batch-size``, ... with this command's defaults."""
    d = defaults
    parser.add_argument("--out", type=Path, required=True, help="folder for the trained model")
    parser.add_argument(
        "--steps", type=int, default=d.steps, help=f"optimizer steps (default: {d.steps})"
    )
    parser.add_argument(
        "--loss",
        choices=LOSS_MODES,
        default=d.loss,
        help="all: next-token loss on every token (the question is modelled too); answer: only "
        f"on answer tokens (default: {d.loss})",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=d.batch_size,
        help=f"windows per step (default: {d.batch_size})",
    )
    parser.add_argument(
        "--seq-len",
        type=int,
        default=d.seq_len,
        help=f"tokens per packed window (default: {d.seq_len})",
    )
    parser.add_argument(
        "--lr", type=float, default=d.lr, help=f"peak learning rate (default: {d.lr})"
    )
    parser.add_argument(
        "--warmup", type=int, default=d.warmup, help=f"linear warmup steps (default: {d.warmup})"
    )
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=d.weight_decay,
        help=f"AdamW weight decay (default: {d.weight_decay})",
    )
    parser.add_argument(
        "--grad-clip",
        type=float,
        default=d.grad_clip,
        help=f"gradient norm clip, 0 = none (default: {d.grad_clip})",
    )
    parser.add_argument("--seed", type=int, default=d.seed, help=f"seed (default: {d.seed})")
    parser.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help="evaluate every N steps (default: 4 times per run, and always at the end)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        help=f"write a resumable checkpoint every N steps (default: {d.checkpoint_every})",
    )
    parser.add_argument(
        "--log-every",
        type=int,
        default=d.log_every,
        help=f"print the loss every N steps (default: {d.log_every})",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="discard a previous run of depthscope in --out instead of resuming it",
    )


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for torch (default: torch's choice). On a machine other jobs keep busy, "
        "--threads 1 avoids the slowdown of threads waiting for each other",
    )


def check_threads(args: argparse.Namespace) -> None:
    """Refuse a negative ``--threads`` (the handler applies it: :func:`~depthscope.cli.handlers.common.apply_threads`)."""
    if args.threads < 0:
        raise DepthscopeError("--threads must be at least 1 (or 0 for torch's default)")


def settings_from_args(args: argparse.Namespace, defaults: TrainSettings) -> TrainSettings:
    """The run's settings: the command's fixed choices plus what the user passed."""
    eval_every = args.eval_every if args.eval_every is not None else max(1, args.steps // 4)
    return TrainSettings(
        steps=args.steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        lr=args.lr,
        schedule=defaults.schedule,
        warmup=args.warmup,
        min_lr_ratio=defaults.min_lr_ratio,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        loss=args.loss,
        seed=args.seed,
        eval_every=eval_every,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
    )


def summary_lines(record: dict, out: Path) -> list[str]:
    """Final accuracies per evaluation set, the time, and where the trained model is, for the
    terminal (``scratch`` and ``finetune`` end the same way)."""
    lines = []
    final = record.get("final_accuracy") or {}
    for name, value in (final.get("accuracy") or {}).items():
        lines.append(f"  {name:<38} {100 * value:6.1f} %")
    for name, value in (final.get("mean_accuracy") or {}).items():
        lines.append(f"  {name + ' (mean)':<38} {100 * value:6.1f} %")
    curve = record.get("loss_curve") or []
    if curve:
        tail = curve[-min(len(curve), 20) :]
        lines.append(f"  final loss (mean of last {len(tail)} steps) {sum(tail) / len(tail):.4f}")
    lines.append(f"  training time {record.get('seconds', 0):.0f} s")
    lines.append(f"model in {out}/; analyse it with: depthscope analyze {out}")
    return lines
