"""The one training loop behind ``depthscope scratch`` (E11) and ``depthscope finetune`` (E12).

AdamW with linear warmup and then cosine decay to ``min_lr_ratio · lr`` (E11) or a constant rate
(E12), gradient clipping, packed windows (:mod:`depthscope.experiments.training.packed_windows`), loss on all tokens or
on answer tokens only, periodic teacher-forced accuracy on named evaluation sets, checkpoints every
N steps and exact resume. A run is deterministic for its seed: weights are initialised by the
caller after ``torch.manual_seed(seed)``, every window is a function of (seed, step, row), and the
checkpoint carries the optimizer and RNG state, so an interrupted and resumed run ends with the
same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from depthscope.core.errors import DepthscopeError
from depthscope.core.folders import OutputFolder
from depthscope.core.progress import Progress
from depthscope.experiments.training import run_dir
from depthscope.experiments.training.evaluation import accuracy
from depthscope.experiments.training.packed_windows import (
    Draw,
    PackedBatch,
    TokenizedExample,
    pack_batch,
    token_loss,
)
from depthscope.experiments.training.recipes import TrainSettings


def full_identity(identity: dict, settings: TrainSettings) -> dict:
    """What a rerun must match to resume: the caller's facts plus the settings (as JSON)."""
    return json.loads(json.dumps({**identity, "settings": asdict(settings)}))


def claim_out(out: Path, identity: dict, settings: TrainSettings, fresh: bool) -> str:
    """Check ``out`` before any expensive work (see :func:`run_dir.claim`)."""
    return run_dir.claim(out, full_identity(identity, settings), fresh)


def learning_rate(settings: TrainSettings, step: int) -> float:
    """Rate for 0-based ``step``: linear warmup, then cosine to ``min_lr_ratio·lr`` or constant."""
    if step < settings.warmup:
        return settings.lr * (step + 1) / settings.warmup
    if settings.schedule == "constant":
        return settings.lr
    span = max(1, settings.steps - settings.warmup)
    progress = min(1.0, (step - settings.warmup) / span)
    floor = settings.min_lr_ratio
    return settings.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class TrainJob:
    """Everything a run needs besides its settings."""

    model: torch.nn.Module
    tokenizer: object
    draw: Draw
    eval_sets: dict[str, list[TokenizedExample]]
    pad_id: int
    out: Path
    identity: dict  # besides the settings, what must match for a rerun to resume (model, data, ...)
    separator: tuple[int, ...] = ()
    describe: dict = field(default_factory=dict)  # extra facts for training.json (sizes, ...)
    eval_batch_size: int = 32


@dataclass
class TrainState:
    """What a checkpoint carries besides tensors."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def evaluate(job: TrainJob, step: int) -> dict:
    """Accuracy per evaluation set, plus the mean per group (``interpolate/…`` -> ``interpolate``)."""
    model = job.model
    was_training = model.training
    model.eval()
    scores = {
        name: accuracy(model, examples, job.pad_id, job.eval_batch_size)
        for name, examples in job.eval_sets.items()
    }
    model.train(was_training)
    groups: dict[str, list[float]] = {}
    for name, value in scores.items():
        if "/" in name:
            groups.setdefault(name.split("/")[0], []).append(value)
    means = {group: sum(v) / len(v) for group, v in groups.items()}
    return {"step": step, "accuracy": scores, "mean_accuracy": means}


def _describe_evaluation(result: dict) -> str:
    parts = result["mean_accuracy"] or result["accuracy"]
    text = ", ".join(f"{name} {100 * value:.1f} %" for name, value in parts.items())
    return f"step {result['step']}: teacher-forced answer accuracy: {text or 'no evaluation sets'}"


def _forward_loss(model: torch.nn.Module, batch: PackedBatch, loss_on: str) -> torch.Tensor:
    output = model(input_ids=batch.input_ids)
    loss = token_loss(output.logits, batch, loss_on)
    aux = getattr(output, "aux_loss", None)  # the σ-MoE selection regulariser
    return loss if aux is None else loss + aux


def _record(job: TrainJob, settings: TrainSettings, state: TrainState, status: str) -> dict:
    return {
        "status": status,
        "identity": job.identity,
        "settings": asdict(settings),
        **job.describe,
        "steps_done": state.step,
        "loss_curve": state.losses,
        "evaluations": state.evaluations,
        "final_accuracy": state.evaluations[-1] if state.evaluations else None,
        "seconds": round(state.seconds, 3),
    }


def train(
    job: TrainJob,
    settings: TrainSettings,
    progress: Progress,
    *,
    fresh: bool = False,
    save_model: Callable[[Path], None] | None = None,
) -> dict:
    """Train ``job.model`` for ``settings.steps`` steps (resuming when possible); return the record.

    ``save_model(out)`` writes the finished model folder (default: ``save_pretrained`` of model
    and tokenizer). The folder is checked, then locked against a second run while this one works.
    """
    settings.check()
    folder = OutputFolder(job.out, outputs=None)
    folder.check()
    with folder.lock(progress):
        return _train(job, settings, progress, fresh=fresh, save_model=save_model)


def _train(
    job: TrainJob,
    settings: TrainSettings,
    progress: Progress,
    *,
    fresh: bool,
    save_model: Callable[[Path], None] | None,
) -> dict:
    job.identity = full_identity(job.identity, settings)
    out = job.out
    mode = run_dir.claim(out, job.identity, fresh)
    if mode == "done":
        progress.note(f"{out} already holds this finished run; nothing to do (--fresh retrains)")
        return run_dir.read_record(out) or {}
    model = job.model
    device = next(model.parameters()).device
    model.train()
    model.requires_grad_(True)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, foreach=False
    )
    state = TrainState()
    if mode == "resume":
        meta = run_dir.load_checkpoint(out, model, optimizer)
        if meta is not None:
            state = TrainState(**meta["train_state"])
            progress.note(f"resuming from the checkpoint at step {state.step}")
    out.mkdir(parents=True, exist_ok=True)
    run_dir.write_record(out, _record(job, settings, state, "running"))

    if state.step == 0 and job.eval_sets:  # the starting point (for E12: the base model)
        state.evaluations.append(evaluate(job, 0))
        progress.note(_describe_evaluation(state.evaluations[-1]))
    progress.start(f"training ({settings.loss} loss)", settings.steps)
    progress.advance(state.step)
    window: list[float] = []
    began = time.perf_counter()
    base_seconds = state.seconds
    while state.step < settings.steps:
        step = state.step
        batch = pack_batch(
            job.draw,
            seed=settings.seed,
            step=step,
            rows=settings.batch_size,
            seq_len=settings.seq_len,
            pad_id=job.pad_id,
            separator=job.separator,
        )
        batch = PackedBatch(*(t.to(device) for t in (batch.input_ids, batch.valid, batch.answer)))
        lr = learning_rate(settings, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss = _forward_loss(model, batch, settings.loss)
        if not torch.isfinite(loss):
            raise DepthscopeError(
                f"the loss became {loss.item()} at step {step}; lower --lr or --grad-clip"
            )
        loss.backward()
        if settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        state.step = step + 1
        value = loss.item()
        state.losses.append(round(value, 5))
        window.append(value)
        state.seconds = base_seconds + time.perf_counter() - began
        if state.step % settings.log_every == 0 or state.step == settings.steps:
            progress.note(
                f"step {state.step}/{settings.steps}  loss {sum(window) / len(window):.4f}  "
                f"lr {lr:.2e}"
            )
            window.clear()
        if settings.eval_every and state.step % settings.eval_every == 0 and job.eval_sets:
            state.evaluations.append(evaluate(job, state.step))
            progress.note(_describe_evaluation(state.evaluations[-1]))
        if state.step % settings.checkpoint_every == 0 and state.step < settings.steps:
            meta = {"train_state": asdict(state)}
            run_dir.save_checkpoint(out, model, optimizer, meta)
            run_dir.write_record(out, _record(job, settings, state, "running"))
        progress.advance(1)

    if job.eval_sets and (not state.evaluations or state.evaluations[-1]["step"] != state.step):
        state.evaluations.append(evaluate(job, state.step))
        progress.note(_describe_evaluation(state.evaluations[-1]))
    model.eval()
    model.requires_grad_(False)
    if save_model is None:
        model.save_pretrained(out)
        job.tokenizer.save_pretrained(out)
    else:
        save_model(out)
    run_dir.share_files(out)
    record = _record(job, settings, state, "complete")
    run_dir.write_record(out, record)
    run_dir.drop_checkpoint(out)
    return {"format": run_dir.FORMAT, **record}
