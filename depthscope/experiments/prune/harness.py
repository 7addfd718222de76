"""Pruned (and healed) models judged by lm-evaluation-harness, the metrics the pruning papers use.

``depthscope prune --eval lm-eval:boolq,arc_easy`` runs the harness (``lm_eval``, the optional
extra ``depthscope[eval]``) through its Python API on each candidate, in memory: the unpruned
model and, per criterion, the model without its ``k = K`` layers (healed too with ``--heal``).
Tasks are the harness's own names, whose data the harness downloads, or tasks given as local
files in the harness's format (``--eval-include DIR`` of task YAMLs, with ``dataset_path: json``
and local ``data_files``), which need no network. A named task whose data cannot be reached is
refused in one line that says how to give it as local files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from depthscope.core.errors import DepthscopeError
from depthscope.models.loading.loader import LoadedModel

PREFIX = "lm-eval:"


def parse_eval(spec: str | None) -> list[str]:
    """``lm-eval:a,b`` -> ``["a", "b"]``; None/"" -> []."""
    if not spec:
        return []
    if not spec.startswith(PREFIX):
        raise DepthscopeError(f"--eval {spec!r}: write lm-eval:TASK[,TASK], e.g. lm-eval:boolq")
    tasks = [t.strip() for t in spec[len(PREFIX) :].split(",") if t.strip()]
    if not tasks:
        raise DepthscopeError("--eval lm-eval: names no task; e.g. lm-eval:boolq,arc_easy")
    return tasks


def require_harness():
    """lm_eval, or one clear line saying how to get it."""
    try:
        import lm_eval  # optional: only --eval needs it (and it is heavy)
    except ImportError:
        raise DepthscopeError(
            'lm-evaluation-harness tasks need lm_eval; install it with `pip install "depthscope[eval]"`'
        ) from None
    return lm_eval


def run_tasks(
    lm: LoadedModel,
    model: torch.nn.Module,
    tasks: Sequence[str],
    *,
    include: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 4,
) -> dict:
    """``{task: {metric: value}}`` of the harness on ``model`` (with ``lm``'s tokenizer)."""
    lm_eval = require_harness()
    from lm_eval.models.huggingface import HFLM  # the harness's submodules: optional as above
    from lm_eval.tasks import TaskManager  # (same)

    manager = TaskManager(include_path=str(include) if include else None)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise DepthscopeError(
            f"lm-eval knows no task {', '.join(unknown)}; give a harness task name or a local "
            f"task YAML with --eval-include DIR"
        )
    wrapped = HFLM(
        pretrained=model, tokenizer=lm.tokenizer, device=str(lm.device), batch_size=batch_size
    )
    try:
        results = lm_eval.simple_evaluate(
            model=wrapped,
            tasks=list(tasks),
            task_manager=manager,
            limit=limit,
            log_samples=False,
            bootstrap_iters=1000,
            verbosity="ERROR",
        )
    except (ConnectionError, OSError, FileNotFoundError) as exc:
        raise DepthscopeError(
            f"lm-eval task {', '.join(tasks)}: its data cannot be reached ({type(exc).__name__}); "
            f"give the task as local files in the harness's format with --eval-include DIR"
        ) from None
    except Exception as exc:  # datasets raises its own error types when the hub is unreachable
        if "connect" in str(exc).lower() or "offline" in str(exc).lower():
            raise DepthscopeError(
                f"lm-eval task {', '.join(tasks)}: its data cannot be reached ({exc}); give the "
                f"task as local files in the harness's format with --eval-include DIR"
            ) from None
        raise
    return {
        task: {
            key: float(value)
            for key, value in metrics.items()
            if isinstance(value, int | float) and key != "alias"
        }
        for task, metrics in results["results"].items()
    }
