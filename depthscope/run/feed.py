"""Feed traced prompt batches to analyses: one clean trace per batch, shared by every analysis."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from depthscope.analyses.base import Analysis, PromptBatch, SharedWork
from depthscope.analyses.user_settings import settings_dict
from depthscope.core.errors import DepthscopeError
from depthscope.core.result import Result
from depthscope.data.prompts import PromptSet
from depthscope.engine.batch import pad_batch, pad_id
from depthscope.engine.trace import Trace, trace
from depthscope.models.loading.loader import LoadedModel
from depthscope.run.segments import Segments
from depthscope.run.sharding import batches_for, contiguous_runs


@dataclass
class Job:
    """One analysis being fed: its state and the prompts it has already folded in.

    ``state`` is the analysis's state, or :class:`~depthscope.run.segments.Segments` (one state
    per contiguous run of the prompts fed) where a process's share is several runs.
    """

    analysis: Analysis
    state: object
    done: set[int] = field(default_factory=set)

    @classmethod
    def fresh(cls, analysis: Analysis, per_run: bool = False) -> Job:
        """A job with nothing folded in; ``per_run`` for a process of a distributed run, whose
        states rank 0 must fold in prompt order whatever share each process holds."""
        return cls(analysis, Segments() if per_run else analysis.new_state())


# after_prompts(job, prompt ids just folded in, seconds spent): where the runner checkpoints
AfterPrompts = Callable[[Job, list[int], float], None]
# before_prompts(job, prompt ids about to be folded in): where the runner reports its stage
BeforePrompts = Callable[[Job, list[int]], None]


def check_finite(traced: Trace, prompt_ids: Sequence[int]) -> None:
    """Stop at NaN/inf activations, naming where they first appear (never save NaN-born results)."""
    valid = traced.valid.to(traced.resid.device)
    for boundary in range(traced.resid.shape[0]):
        bad = ~torch.isfinite(traced.resid[boundary]).all(dim=-1) & valid
        if bool(bad.any()):
            row = int(bad.any(dim=1).nonzero()[0])
            where = "the embedding" if boundary == 0 else f"the output of layer {boundary - 1}"
            raise DepthscopeError(
                f"non-finite activations (NaN or inf) first appear at {where} for prompt "
                f"{prompt_ids[row]}; the model's weights or dtype produce them (try --dtype float32, "
                f"or check the weights)"
            )


def feed(
    lm: LoadedModel,
    jobs: Sequence[Job],
    prompts: PromptSet,
    *,
    prompt_batch: int = 4,
    order: Sequence[int] | None = None,
    after_prompts: AfterPrompts | None = None,
    before_prompts: BeforePrompts | None = None,
) -> None:
    """Trace prompts in batches and let each analysis fold in the prompts it has not done yet.

    ``order`` lists the prompt ids this process handles (default: all). Prompts are traced in
    whole batches of ``prompt_batch`` consecutive prompts, so a prompt is always traced in the same
    batch however the work is split or resumed; only ``order``'s prompts are processed. Analyses
    that allow it get one prompt at a time, so a checkpoint after each loses at most one prompt.
    A job whose state is :class:`Segments` folds each contiguous run of ``order`` into its own state.
    """
    order = sorted(range(len(prompts)) if order is None else order)
    run_start = {i: start for start, stop in contiguous_runs(order) for i in range(start, stop)}
    for whole, ids in batches_for(order, len(prompts), prompt_batch):
        pending = [(job, [i for i in ids if i not in job.done]) for job in jobs]
        pending = [(job, todo) for job, todo in pending if todo]
        if not pending:
            continue
        # the whole batch, as one process cuts it: a prompt gets the same numbers however the
        # prompts are split among processes or resumed
        batch = pad_batch([prompts.sequences[i] for i in whole], pad_id(lm.tokenizer))
        with torch.no_grad():
            traced = trace(lm.adapter, batch)
        check_finite(traced, whole)
        shared = SharedWork({job.analysis.name: (job.analysis, set(todo)) for job, todo in pending})
        for job, todo in pending:
            segmented = isinstance(job.state, Segments)
            if job.analysis.per_prompt:
                groups = [[i] for i in todo]
            else:
                groups = _by_run(todo, run_start) if segmented else [todo]
            for group in groups:
                if before_prompts is not None:
                    before_prompts(job, group)
                began = time.perf_counter()
                rows = [whole.index(i) for i in group]
                state = (
                    job.state.state_for(run_start[group[0]], job.analysis.new_state)
                    if segmented
                    else job.state
                )
                job.analysis.update(state, PromptBatch(traced, rows, group, prompts, shared))
                shared.done(job.analysis, group)
                job.done.update(group)
                if after_prompts is not None:
                    after_prompts(job, group, time.perf_counter() - began)


def work_estimates(analyses: Sequence[Analysis], prompts: PromptSet) -> list[float]:
    """Each prompt's estimated work for ``analyses`` together (their ``prompt_cost``; its tokens
    when there are none), to give processes shares of equal work."""
    lengths = [len(s) for s in prompts.sequences]
    return [
        sum(a.prompt_cost(length, i) for a in analyses) or float(length)
        for i, length in enumerate(lengths)
    ]


def _by_run(ids: list[int], run_start: dict[int, int]) -> list[list[int]]:
    """``ids`` cut where they pass from one contiguous run of the process's share to another."""
    groups: list[list[int]] = []
    for i in ids:
        if groups and run_start[groups[-1][0]] == run_start[i]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def result_of(analysis: Analysis, state, *, identity: dict, seed: int, extra: dict) -> Result:
    """The saved document of an analysis whose prompts are all folded into ``state``.

    ``extra`` holds what the caller records beside the numbers (data source, fingerprint, time);
    the reasons prompts were skipped are added when there are any.
    """
    data = analysis.finish(state)
    tally = state.tally
    skipped = {"skipped": dict(sorted(tally.skipped.items()))} if tally.skipped else {}
    return Result(
        analysis=analysis.name,
        model=identity,
        settings={**settings_dict(analysis.settings), "seed": seed},
        n_prompts=int(tally.n_prompts),
        n_tokens=int(tally.n_tokens),
        data=data,
        extra={**extra, **skipped},
    )
