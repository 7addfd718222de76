"""`depthscope analyze`: plan, load, run analyses with checkpoints, save results.

A run directory holds ``run.json`` (what ran, on what, how long — for every analysis the directory
holds), ``results/<analysis>.json`` and ``figures/``. The run is planned before the model loads:
analyses, settings, prompts and each result's fingerprint (model identity, prompts, seed,
settings). Analyses whose saved result has the current fingerprint are up to date; when all are,
the model is never loaded. The others run from their last checkpoint: after every prompt each
analysis's state is kept as data (:mod:`depthscope.engine.state`), written to ``state/`` as a
checkpoint (:mod:`depthscope.run.checkpoints`) at most every
:data:`~depthscope.run.checkpoints.CHECKPOINT_SECONDS` and always when the run stops (Ctrl-C,
SIGTERM), so an interrupted run loses at most the prompt in progress.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import matplotlib
import numpy
import torch
import transformers

from depthscope import __version__
from depthscope.analyses import Analysis, RunOptions
from depthscope.analyses.base import RunContext
from depthscope.analyses.catalog import analysis_class, default_run, runnable
from depthscope.analyses.user_settings import build_settings, settings_dict, split_overrides
from depthscope.core.errors import DepthscopeError
from depthscope.core.interrupts import RunInterrupted, sigterm_as_interrupt
from depthscope.core.progress import Progress
from depthscope.core.result import Result
from depthscope.core.run_folder import RunFolder, RunRecord
from depthscope.data.example import Example
from depthscope.data.prompts import PromptSet
from depthscope.data.sources import load_examples, mixture_parts
from depthscope.engine.adaptive_batch import is_out_of_memory
from depthscope.models.loading.identity import model_fingerprint
from depthscope.models.loading.loader import LoadedModel, inspect_model
from depthscope.models.loading.quantize import check_quantize
from depthscope.run.checkpoints import StateCheckpoints
from depthscope.run.distributed import SingleProcess
from depthscope.run.feed import Job, feed, result_of, work_estimates
from depthscope.run.sharding import contiguous_runs

HISTORY = 20  # commands remembered in run.json


@dataclass
class RunRequest:
    """Everything `depthscope analyze` was asked to do."""

    analyses: list[str]
    data: str | None  # None: each analysis's own default data
    n: int | None
    out: Path
    seed: int = 0
    batch_size: int = 64
    prompt_batch: int = 4
    overrides: dict[str, str] = field(default_factory=dict)
    fresh: bool = False
    # per analysis (data, n) chosen by a preset; --data/-n are already folded in
    per_analysis: dict[str, tuple[str, int | None]] = field(default_factory=dict)


def resolve_analyses(names: Sequence[str]) -> list[str]:
    """Expand ``all`` and check names, keeping the paper's order."""
    order = runnable()
    wanted = set()
    for name in names:
        if name == "all":
            wanted.update(default_run())
        elif name in order:
            wanted.add(name)
        else:
            raise DepthscopeError(
                f"unknown analysis {name!r}; choose from {', '.join(order)} or all"
            )
    if not wanted:
        raise DepthscopeError(f"no analysis requested; choose from {', '.join(order)} or all")
    return [name for name in order if name in wanted]


def data_for(name: str, request: RunRequest) -> tuple[str, int | None]:
    """The data and prompt count an analysis runs on: a preset's choice, else ``--data`` if given,
    else the analysis's own default data; ``-n`` prompts."""
    if name in request.per_analysis:
        return request.per_analysis[name]
    return request.data or analysis_class(name).default_data, request.n


def fingerprint(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_key(identity: dict) -> str:
    """The parts of a model's identity that decide whether saved results belong to it."""

    return identity.get("fingerprint") or model_fingerprint(identity)


def package_versions() -> dict:

    return {
        "depthscope": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "matplotlib": matplotlib.__version__,
    }


def now() -> str:
    """The time a run starts or ends, as ``run.json`` records it (UTC, to the second)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- the run


@dataclass
class Group:
    """Analyses that run on the same prompts (traced once for all of them)."""

    data: str
    examples: list[Example]
    names: list[str]
    prompts: PromptSet | None = None


@dataclass
class Planned:
    """One analysis of the run: its settings, fingerprint and what is to be done."""

    name: str
    group: Group
    settings: object
    key: str
    status: str = "pending"


class Run:
    """One `analyze` invocation over a run directory."""

    def __init__(
        self,
        request: RunRequest,
        groups: list[Group],
        identity: dict,
        tokenizer,
        progress: Progress,
        *,
        dist=None,
    ) -> None:
        self.request = request
        self.groups = groups
        self.identity = identity
        self.tokenizer = tokenizer
        self.progress = progress
        self.dist = dist or SingleProcess()
        self.folder = RunFolder(request.out)
        self.timings: dict[str, float] = {}
        self.status: dict[str, str] = {}
        self.skips: dict[str, str] = {}
        self.started = now()
        self.planned: dict[str, Planned] = {}
        suffix = f".rank{self.dist.rank}" if self.dist.world_size > 1 else ""
        self.checkpoints = StateCheckpoints(self.folder.state, suffix, progress)
        self.total_seconds = 0.0

    # ------------------------------------------------------------ planning

    def plan(self, vocab_size: int | None = None) -> None:
        """Tokenise, build settings and fingerprints, and mark up-to-date analyses (no model)."""
        per_analysis = split_overrides(self.request.analyses, self.request.overrides)
        for group in self.groups:
            group.prompts = PromptSet.from_examples(self.tokenizer, group.examples)
            tokens = hashlib.sha256(json.dumps(group.prompts.sequences).encode()).hexdigest()
            for name in group.names:
                cls = analysis_class(name)
                settings = build_settings(cls, per_analysis[name], vocab_size=vocab_size)
                key = fingerprint(
                    {
                        "analysis": name,
                        "model": model_key(self.identity),
                        "tokens": tokens,
                        "seed": self.request.seed,
                        "settings": settings_dict(settings),
                        **cls.plan_key(settings, group.data),
                    }
                )
                planned = Planned(name, group, settings, key)
                saved = self._saved_if_current(name, key)
                if saved is not None:
                    planned.status = "up to date"
                    self.status[name] = "up to date"
                    self.timings[name] = saved.extra.get("seconds", 0.0)
                self.planned[name] = planned

    @property
    def all_up_to_date(self) -> bool:
        return all(p.status == "up to date" for p in self.planned.values())

    def _saved_if_current(self, name: str, key: str) -> Result | None:
        """The saved result of ``name`` if it was computed with ``key`` (read once); else None."""
        path = self.folder.result(name)
        if self.request.fresh or not path.exists():
            return None
        try:
            saved = Result.load(path)
        except DepthscopeError:
            return None
        return saved if saved.extra.get("fingerprint") == key else None

    # ------------------------------------------------------------ execution

    def execute(self, lm: LoadedModel) -> dict:
        """Run every analysis that is not up to date (resuming where possible) and save results."""
        if self.all_up_to_date:
            return self.status
        self.identity = lm.identity
        options = RunOptions(
            seed=self.request.seed, batch_size=self.request.batch_size, progress=self.progress
        )
        analyses = {
            name: analysis_class(name)(lm, planned.settings, options)
            for name, planned in self.planned.items()
            if planned.status != "up to date"
        }
        shares = {
            id(group): self._share(group, [analyses[n] for n in group.names if n in analyses])
            for group in self.groups
        }
        jobs: dict[str, Job] = {}
        for name, analysis in analyses.items():
            planned = self.planned[name]
            jobs[name] = self._job(analysis, planned, shares[id(planned.group)])
        if self.dist.is_main:
            self.write_run_json("running")
        try:
            with sigterm_as_interrupt():
                for group in self.groups:
                    group_jobs = [jobs[n] for n in group.names if n in jobs]
                    if group_jobs:
                        self._feed(lm, group, group_jobs, shares[id(group)])
                for name, job in jobs.items():
                    self._finish(job, self.planned[name])
        except KeyboardInterrupt:
            self._interrupted(jobs)
        if self.dist.is_main:
            self.write_run_json("finished")
        return self.status

    def _job(self, analysis: Analysis, planned: Planned, share: list[int]) -> Job:
        analysis.prepare(
            RunContext(
                data=planned.group.data, seed=self.request.seed, prompts=planned.group.prompts
            )
        )
        saved = None if self.request.fresh else self.checkpoints.load(planned.name, planned.key)
        if saved is not None and not self._same_share(planned.name, saved[1], share):
            saved = None
        if saved is not None:
            state, meta = saved
            done = set(meta.get("done", []))
            self.timings[planned.name] = float(meta.get("seconds", 0.0))
            self.status[planned.name] = f"resumed after {len(done)} prompts"
            return Job(analysis, state, done)
        self.timings[planned.name] = 0.0
        self.status[planned.name] = "computed"
        return Job.fresh(analysis, per_run=self.dist.is_distributed)

    def _same_share(self, name: str, meta: dict, share: list[int]) -> bool:
        """Whether a checkpoint was made for this process's share of the prompts (another number
        of processes, or other analyses to balance, cut the prompts otherwise)."""
        saved = meta.get("share")
        if saved == _share_runs(share) or (saved is None and not self.dist.is_distributed):
            return True
        self.progress.note(
            f"{name}: the checkpoint holds another share of the prompts (made with another "
            f"number of processes or analyses); recomputing"
        )
        return False

    def _feed(self, lm: LoadedModel, group: Group, jobs: list[Job], share: list[int]) -> None:
        runs = _share_runs(share)

        def checkpoint(job: Job, ids: list[int], seconds: float) -> None:
            name = job.analysis.name
            self.timings[name] += seconds
            meta = {
                "fingerprint": self.planned[name].key,
                "done": sorted(job.done),
                "seconds": self.timings[name],
                "share": runs,
            }
            self.checkpoints.update(name, job.state, meta)

        def stage(job: Job, ids: list[int]) -> None:
            total = len(group.prompts)
            self.progress.stage(f"{job.analysis.name} {len(job.done) + 1}/{total}")

        try:
            feed(
                lm,
                jobs,
                group.prompts,
                prompt_batch=self.request.prompt_batch,
                order=share,
                after_prompts=checkpoint,
                before_prompts=stage,
            )
        except BaseException as exc:
            # whatever stops the feed (Ctrl-C, out of memory even at batch size 1, any error), the
            # prompts finished before it are saved, so a rerun resumes there
            self.checkpoints.flush({j.analysis.name: len(j.done) for j in jobs})
            if is_out_of_memory(exc):
                # replays halve their batch by themselves; what is left is the clean pass itself
                raise DepthscopeError(
                    f"out of memory while tracing {self.request.prompt_batch} prompts at once; "
                    f"finished work is saved: use shorter prompts, --dtype bfloat16 or "
                    f"--device-map to spread the model, then rerun to resume"
                ) from None
            raise

    def _share(self, group: Group, analyses: list[Analysis]) -> list[int]:
        """This process's prompt ids: about 1/N of the work the group's analyses estimate (feed
        traces whole batches, so each prompt is traced in exactly the batch of a single process)."""
        if not self.dist.is_distributed:
            return list(range(len(group.prompts)))
        return self.dist.shard_prompts(work_estimates(analyses, group.prompts))

    def _finish(self, job: Job, planned: Planned) -> None:
        name = job.analysis.name
        state = self.dist.merge_on_main(job.state)
        if not self.dist.is_main:
            self.checkpoints.remove(name)
            return
        if state.tally.skipped:
            self.skips[name] = state.tally.skip_summary()
        extra = {
            "fingerprint": planned.key,
            "seconds": round(self.timings[name], 3),
            "data_source": planned.group.data,
        }
        if mixture_parts(planned.group.data):  # which source each prompt came from
            extra["prompt_sources"] = [ex.meta.get("data_source") for ex in planned.group.examples]
        result = result_of(
            job.analysis, state, identity=self.identity, seed=self.request.seed, extra=extra
        )
        result.save(self.folder.result(name))
        self.checkpoints.remove(name)

    def _interrupted(self, jobs: dict[str, Job]) -> None:
        done = {name: len(job.done) for name, job in jobs.items()}
        self.checkpoints.flush(done)
        saved = {n: k for n, k in self.checkpoints.saved_prompts.items() if k and n in jobs}
        finished = [n for n in jobs if self.folder.result(n).exists() and n not in saved]
        if self.dist.is_main:
            self.write_run_json("interrupted")
        if saved or finished:
            parts = [f"{name}: {k} prompts" for name, k in saved.items()]
            parts += [f"{name}: finished" for name in finished]
            message = f"interrupted; saved {'; '.join(parts)} — rerun the same command to resume"
        else:
            message = "interrupted before the first prompt finished; nothing was saved to resume"
        raise RunInterrupted(message)

    # ------------------------------------------------------------ run.json

    def write_run_json(self, status: str) -> None:
        """``run.json``: this command's facts, merged with what earlier runs recorded for the other
        analyses this directory holds (their settings, status and timings are kept)."""
        old = self.folder.read_record() or RunRecord.blank()
        analyses = [n for n in runnable() if n in set(old.analyses or []) | set(self.planned)]
        main = self.groups[0] if self.groups else None
        record = RunRecord(
            status=status,
            started=self.started,
            finished=now() if status != "running" else None,
            command=" ".join(sys.argv),
            model=self.identity,
            data={
                "source": main.data if main else None,
                "n_requested": self.request.n,
            },
            n_prompts=len(main.prompts) if main and main.prompts is not None else 0,
            n_tokens=main.prompts.n_tokens if main and main.prompts is not None else 0,
            seed=self.request.seed,
            batch_size=self.request.batch_size,
            analyses=analyses,
            settings={
                **(old.settings or {}),
                **{n: settings_dict(p.settings) for n, p in self.planned.items()},
            },
            data_by_analysis={
                **(old.data_by_analysis or {}),
                **{
                    n: {
                        "source": p.group.data,
                        "n_prompts": len(p.group.prompts),
                        "n_tokens": p.group.prompts.n_tokens,
                    }
                    for n, p in self.planned.items()
                },
            },
            status_by_analysis={**(old.status_by_analysis or {}), **self.status},
            timings={
                **(old.timings or {}),
                **{name: round(t, 3) for name, t in self.timings.items()},
            },
            skipped={**(old.skipped or {}), **self.skips},
            versions=package_versions(),
            device=str(self.identity.get("device", "")),
            threads=torch.get_num_threads(),
            world_size=self.dist.world_size,
            history=(
                (old.history or [])
                + [{"command": " ".join(sys.argv), "started": self.started, "status": status}]
            )[-HISTORY:]
            if status != "running"
            else (old.history or [])[-HISTORY:],
        )
        self.folder.write_record(record)


def _share_runs(share: list[int]) -> list[list[int]]:
    """A share as its checkpoints record it: ``[start, stop]`` of each run of prompts (JSON)."""
    return [list(run) for run in contiguous_runs(share)]


def describe_model(spec: str, dtype: str | None, device: str = "cpu", quantize: str | None = None):
    """Resolve and check a model, load its tokenizer and config and fingerprint it: no weights."""

    check_quantize(quantize, spec)
    return inspect_model(spec, dtype=dtype, device=device, quantize=quantize)


def check_context(groups: list[Group], limit: int | None, model: str) -> None:
    """Refuse prompts longer than the positions the model was trained for (one line, which ones)."""
    if not limit:
        return
    for group in groups:
        too_long = [i for i, s in enumerate(group.prompts.sequences) if len(s) > limit]
        if too_long:
            longest = max(len(group.prompts.sequences[i]) for i in too_long)
            raise DepthscopeError(
                f"{len(too_long)} prompt(s) of {group.data} (e.g. prompt {too_long[0]}, "
                f"{longest} tokens) exceed {model}'s context window of {limit} positions; "
                f"shorten them or use fewer, shorter prompts"
            )


def plan_groups(request: RunRequest) -> list[Group]:
    """Load each analysis's prompts (one group per data source), before any model loads.

    Analyses that measure at the answer need prompts with answers: a source without any is
    refused here, with the fix.
    """

    by_source: dict[tuple[str, int | None], list[str]] = {}
    for name in request.analyses:
        by_source.setdefault(data_for(name, request), []).append(name)
    groups = []
    for (source, n), names in by_source.items():
        examples = load_examples(source, n, seed=request.seed)
        for name in names:
            if analysis_class(name).requires_answer and not any(ex.answer for ex in examples):
                raise DepthscopeError(
                    f"{name} measures at the answer, but {source} has no prompts with answers; "
                    f"use --data builtin:paper, a levelled source like builtin:hops, or a .jsonl "
                    f'file with "prompt" and "answer"'
                )
        groups.append(Group(source, examples, names))
    return groups


def run_analyses(
    lm: LoadedModel, examples: list[Example], request: RunRequest, progress: Progress
) -> Run:
    """Run and save with a model already loaded; every analysis uses ``examples``."""
    if not examples:
        raise DepthscopeError(
            "the prompt set is empty; pass a data source with prompts (e.g. -n 10)"
        )
    data = request.data or "(given examples)"
    run = Run(
        request,
        [Group(data, examples, list(request.analyses))],
        lm.identity,
        lm.tokenizer,
        progress,
    )
    started = time.perf_counter()
    run.plan(vocab_size=lm.vocab_size)
    run.execute(lm)
    run.total_seconds = time.perf_counter() - started
    return run
