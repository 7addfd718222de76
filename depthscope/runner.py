"""`depthscope analyze`: load, tokenise, run analyses with checkpoints, save results and figures.

A run directory holds ``run.json`` (what ran, on what, how long), ``results/<analysis>.json`` and
``figures/``. After every prompt batch each analysis's statistics are checkpointed atomically to
``state/<analysis>.pt``; rerunning the same command skips finished analyses and resumes unfinished
ones from their last checkpoint. A checkpoint or result only counts when its fingerprint (model,
prompts, seed, settings) matches the current command, so changed inputs are never mixed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from depthscope.analyses import PAPER_ORDER, REGISTRY, Analysis, RunOptions
from depthscope.analyses.base import make_settings, settings_dict
from depthscope.analyses.prompts import PromptSet
from depthscope.analyses.run import feed
from depthscope.data.example import Example
from depthscope.engine.batch import tokenize
from depthscope.errors import DepthscopeError
from depthscope.models.loading import LoadedModel
from depthscope.progress import Progress
from depthscope.results import Result, atomic_write_bytes, atomic_write_json

ANALYSIS_ORDER = PAPER_ORDER[:5]  # what `--analyses all` runs


@dataclass
class RunRequest:
    """Everything `depthscope analyze` was asked to do."""

    analyses: list[str]
    data: str
    n: int | None
    out: Path
    seed: int = 0
    batch_size: int = 64
    prompt_batch: int = 4
    overrides: dict[str, str] = field(default_factory=dict)
    fresh: bool = False


def default_data(names: Sequence[str]) -> str:
    """The data a run uses when none is given: what suits the requested analyses."""
    from depthscope.data.sources import DEFAULT_SOURCE

    if set(names) <= {"igrad", "erasure"}:
        return "builtin:paper"  # the paper's two hand-written prompts; IG is costly per prompt
    if set(names) == {"depth-score"}:
        return "builtin:hops"
    return DEFAULT_SOURCE


def resolve_analyses(names: Sequence[str]) -> list[str]:
    """Expand ``all`` and check names, keeping the paper's order."""
    wanted = []
    for name in names:
        if name == "all":
            wanted.extend(n for n in ANALYSIS_ORDER if n in REGISTRY)
        elif name in REGISTRY:
            wanted.append(name)
        else:
            raise DepthscopeError(
                f"unknown analysis {name!r}; choose from {', '.join(REGISTRY)} or all"
            )
    return list(dict.fromkeys(wanted))


def check_overrides(names: Sequence[str], overrides: dict[str, str]) -> None:
    """Every ``--set key=value`` must be a setting of at least one requested analysis."""
    import dataclasses

    known = {f.name for n in names for f in dataclasses.fields(REGISTRY[n].Settings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise DepthscopeError(
            f"unknown setting(s) {', '.join(unknown)} for {', '.join(names)}; "
            f"valid: {', '.join(sorted(known))}"
        )


def fingerprint(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def package_versions() -> dict:
    import matplotlib
    import numpy
    import transformers

    from depthscope import __version__

    return {
        "depthscope": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "matplotlib": matplotlib.__version__,
    }


def _save_state(path: Path, payload: dict) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _load_state(path: Path, key: str) -> dict | None:
    if not path.exists():
        return None
    try:
        payload = torch.load(path, weights_only=False, map_location="cpu")
    except Exception:  # a damaged checkpoint only costs the work since it was written
        return None
    return payload if payload.get("fingerprint") == key else None


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class Run:
    """One `analyze` invocation over a run directory."""

    def __init__(
        self, lm: LoadedModel, examples: list[Example], request: RunRequest, progress: Progress
    ):
        self.lm = lm
        self.examples = examples
        self.request = request
        self.progress = progress
        self.out = Path(request.out)
        self.prompts = PromptSet.from_examples(lm.tokenizer, examples)
        self.sequences = self.prompts.sequences
        self.n_tokens = self.prompts.n_tokens
        self.timings: dict[str, float] = {}
        self.status: dict[str, str] = {}
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def key(self, name: str, settings: object) -> str:
        ident = self.lm.identity
        return fingerprint(
            {
                "analysis": name,
                "model": [
                    ident.get("name"),
                    ident.get("source"),
                    ident.get("file_sha256"),
                    ident.get("dtype"),
                ],
                "tokens": hashlib.sha256(json.dumps(self.sequences).encode()).hexdigest(),
                "seed": self.request.seed,
                "settings": settings_dict(settings),
            }
        )

    def result_path(self, name: str) -> Path:
        return self.out / "results" / f"{name}.json"

    def state_path(self, name: str) -> Path:
        return self.out / "state" / f"{name}.pt"

    def _up_to_date(self, name: str, key: str) -> bool:
        path = self.result_path(name)
        if self.request.fresh or not path.exists():
            return False
        try:
            return Result.load(path).extra.get("fingerprint") == key
        except DepthscopeError:
            return False

    def _options_for(self, name: str, settings: object, options: RunOptions) -> RunOptions:
        """Erasure's baseline prompts: ``baseline_n`` from its source (the run's own by default)."""
        if name != "erasure":
            return options
        from depthscope.data.sources import DEFAULT_SOURCE, load_examples

        source = settings.baseline_data or self.request.data
        examples = load_examples(source, settings.baseline_n, seed=self.request.seed)
        if len(examples) < settings.baseline_n:
            self.progress.note(
                f"erasure: {source} has only {len(examples)} prompts; baseline from {DEFAULT_SOURCE} instead"
            )
            source = DEFAULT_SOURCE
            examples = load_examples(source, settings.baseline_n, seed=self.request.seed)
        sequences = [tokenize(self.lm.tokenizer, ex.text) for ex in examples]
        return dataclasses.replace(options, baseline_sequences=sequences, baseline_source=source)

    def execute(self) -> dict:
        """Run every requested analysis (resuming where possible) and write all outputs."""
        options = RunOptions(
            seed=self.request.seed, batch_size=self.request.batch_size, progress=self.progress
        )
        jobs: list[tuple[Analysis, dict, set[int]]] = []
        meta: dict[str, dict] = {}
        for name in self.request.analyses:
            cls = REGISTRY[name]
            settings = make_settings(cls, self.request.overrides)
            key = self.key(name, settings)
            if self._up_to_date(name, key):
                self.status[name] = "up to date"
                self.timings[name] = Result.load(self.result_path(name)).extra.get("seconds", 0.0)
                continue
            analysis = cls(self.lm, settings, self._options_for(name, settings, options))
            saved = None if self.request.fresh else _load_state(self.state_path(name), key)
            state = saved["state"] if saved else analysis.new_state()
            done = set(saved["done"]) if saved else set()
            self.timings[name] = saved["seconds"] if saved else 0.0
            self.status[name] = f"resumed after {len(done)} prompts" if saved else "computed"
            meta[name] = {"key": key, "done": done, "settings": settings}
            jobs.append((analysis, state, done))
        self.write_run_json(finished=False)
        if jobs:
            self._feed(jobs, meta)
        for analysis, state, _ in jobs:
            self._finish(analysis, state, meta[analysis.name])
        self.write_run_json(finished=True)
        return self.status

    def _feed(self, jobs: list, meta: dict) -> None:
        def checkpoint(analysis: Analysis, state: dict, ids: list[int], seconds: float) -> None:
            info = meta[analysis.name]
            info["done"].update(ids)
            self.timings[analysis.name] += seconds
            _save_state(
                self.state_path(analysis.name),
                {
                    "fingerprint": info["key"],
                    "state": state,
                    "done": sorted(info["done"]),
                    "seconds": self.timings[analysis.name],
                },
            )

        try:
            feed(
                self.lm,
                jobs,
                self.prompts,
                prompt_batch=self.request.prompt_batch,
                after_batch=checkpoint,
            )
        except (RuntimeError, torch.OutOfMemoryError) as exc:
            if not _is_oom(exc):
                raise
            size = self.request.batch_size
            raise DepthscopeError(
                f"out of memory with --batch-size {size}; finished work is saved, retry with a "
                f"smaller batch, e.g. --batch-size {max(1, size // 2)}"
            ) from None

    def _finish(self, analysis: Analysis, state: dict, info: dict) -> None:
        data = analysis.finish(state)
        result = Result(
            analysis=analysis.name,
            model=self.lm.identity,
            settings={**settings_dict(info["settings"]), "seed": self.request.seed},
            n_prompts=int(state.get("n_prompts", len(self.examples))),
            n_tokens=int(state.get("n_tokens", self.n_tokens)),
            data=data,
            extra={
                "fingerprint": info["key"],
                "seconds": round(self.timings[analysis.name], 3),
                "data_source": self.request.data,
            },
        )
        result.save(self.result_path(analysis.name))
        self.state_path(analysis.name).unlink(missing_ok=True)

    def write_run_json(self, finished: bool) -> None:
        doc = {
            "depthscope_run": 1,
            "status": "finished" if finished else "running",
            "started": self.started,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")
            if finished
            else None,
            "command": " ".join(sys.argv),
            "model": self.lm.identity,
            "data": {"source": self.request.data, "n_requested": self.request.n},
            "n_prompts": len(self.examples),
            "n_tokens": self.n_tokens,
            "seed": self.request.seed,
            "batch_size": self.request.batch_size,
            "analyses": self.request.analyses,
            "settings": {
                name: settings_dict(make_settings(REGISTRY[name], self.request.overrides))
                for name in self.request.analyses
            },
            "status_by_analysis": self.status,
            "timings": {name: round(t, 3) for name, t in self.timings.items()},
            "versions": package_versions(),
            "device": str(self.lm.device),
            "threads": torch.get_num_threads(),
        }
        atomic_write_json(self.out / "run.json", doc)


def run_analyses(
    lm: LoadedModel, examples: list[Example], request: RunRequest, progress: Progress
) -> Run:
    """Run and save; returns the :class:`Run` (status and timings per analysis)."""
    if not examples:
        raise DepthscopeError(
            "the prompt set is empty; pass a data source with prompts (e.g. -n 10)"
        )
    run = Run(lm, examples, request, progress)
    started = time.perf_counter()
    run.execute()
    run.total_seconds = time.perf_counter() - started
    return run
