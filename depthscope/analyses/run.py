"""Feed traced prompt batches to analyses: one clean trace per batch, shared by every analysis."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from depthscope.analyses.base import REGISTRY, Analysis, PromptBatch, RunOptions
from depthscope.analyses.prompts import PromptSet
from depthscope.engine.batch import pad_batch, pad_id
from depthscope.engine.trace import trace
from depthscope.models.loading import LoadedModel


def feed(
    lm: LoadedModel,
    jobs: Sequence[tuple[Analysis, dict, set[int]]],
    prompts: PromptSet,
    *,
    prompt_batch: int = 4,
    after_batch: Callable[[Analysis, dict, list[int], float], None] | None = None,
) -> None:
    """Trace prompts in batches and let each analysis fold in the prompts it has not done yet.

    ``jobs`` holds (analysis, state, done prompt ids). ``after_batch(analysis, state, ids,
    seconds)`` is called after each analysis processed a batch (the runner checkpoints there).
    """
    sequences = prompts.sequences
    for start in range(0, len(sequences), prompt_batch):
        ids = list(range(start, min(start + prompt_batch, len(sequences))))
        pending = [(a, s, [i for i in ids if i not in done]) for a, s, done in jobs]
        pending = [(a, s, todo) for a, s, todo in pending if todo]
        if not pending:
            continue
        needed = sorted({i for _, _, todo in pending for i in todo})
        batch = pad_batch([sequences[i] for i in needed], pad_id(lm.tokenizer))
        with torch.no_grad():
            traced = trace(lm.adapter, batch)
        for analysis, state, todo in pending:
            rows = [needed.index(i) for i in todo]
            began = time.perf_counter()
            analysis.update(state, PromptBatch(traced, rows, todo, prompts))
            if after_batch is not None:
                after_batch(analysis, state, todo, time.perf_counter() - began)


def analyze(
    lm: LoadedModel,
    name: str,
    prompts: PromptSet | Sequence[Sequence[int]],
    *,
    settings: object | None = None,
    options: RunOptions | None = None,
    prompt_batch: int = 4,
) -> dict:
    """Run one analysis on prompts (or bare token-id lists) and return its ``data`` (no files)."""
    if not isinstance(prompts, PromptSet):
        prompts = PromptSet([list(s) for s in prompts])
    cls = REGISTRY[name]
    analysis = cls(lm, settings or cls.Settings(), options or RunOptions())
    state = analysis.new_state()
    feed(lm, [(analysis, state, set())], prompts, prompt_batch=prompt_batch)
    return analysis.finish(state)
