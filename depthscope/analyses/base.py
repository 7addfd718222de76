"""What every analysis shares: settings, the per-batch update protocol and the registry.

An analysis never touches hooks or modules: it receives a clean :class:`Trace` of a batch of
prompts and asks the engine for replays. Its state is a dict of mergeable statistics that the
runner checkpoints after every batch, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from depthscope.analyses.prompts import PromptSet
from depthscope.engine.trace import Trace
from depthscope.errors import DepthscopeError
from depthscope.models.loading import LoadedModel
from depthscope.progress import Progress


@dataclass
class PromptBatch:
    """The prompts to process: trace row ``rows[i]`` is prompt number ``prompt_ids[i]`` of the run.

    The trace may hold more rows than the analysis must process (on resume, another analysis may
    still need them); only ``rows`` count.
    """

    trace: Trace
    rows: list[int]
    prompt_ids: list[int]
    prompts: PromptSet

    def __iter__(self):
        return iter(zip(self.rows, self.prompt_ids, strict=True))

    def length(self, row: int) -> int:
        return int(self.trace.valid[row].sum())

    def answer_length(self, prompt_id: int) -> int | None:
        return self.prompts.answer_lengths[prompt_id]

    def valid(self) -> torch.Tensor:
        """``[B, T]`` mask of the valid tokens of the rows to process."""
        mask = torch.zeros_like(self.trace.valid)
        mask[self.rows] = self.trace.valid[self.rows]
        return mask


@dataclass
class RunOptions:
    """Options every analysis receives: the run's seed and the replay batch size (rows)."""

    seed: int = 0
    batch_size: int = 64
    progress: Progress = field(default_factory=Progress)
    # erasure: prompts whose mean residual stands for "no information", and where they came from
    baseline_sequences: list[list[int]] | None = None
    baseline_source: str = ""


class Analysis(ABC):
    """One experiment of the paper, as ``new_state -> update(batch)* -> finish``."""

    name: ClassVar[str]
    Settings: ClassVar[type]
    description: ClassVar[str]
    needs_answers: ClassVar[bool] = False

    def __init__(self, lm: LoadedModel, settings: object, options: RunOptions) -> None:
        self.lm = lm
        self.settings = settings
        self.options = options

    @abstractmethod
    def new_state(self) -> dict:
        """Empty statistics."""

    @abstractmethod
    def update(self, state: dict, batch: PromptBatch) -> None:
        """Fold the prompts of ``batch`` into ``state``."""

    @abstractmethod
    def finish(self, state: dict) -> dict:
        """The ``data`` section of the result."""


REGISTRY: dict[str, type[Analysis]] = {}


def register(cls: type[Analysis]) -> type[Analysis]:
    REGISTRY[cls.name] = cls
    return cls


def settings_dict(settings: object) -> dict:
    return dataclasses.asdict(settings)


def make_settings(cls: type[Analysis], overrides: dict[str, str]) -> object:
    """Build ``cls.Settings`` from ``key=value`` strings, converting to each field's type."""
    fields = {f.name: f for f in dataclasses.fields(cls.Settings)}
    values = {}
    for key, raw in overrides.items():
        if key not in fields:
            continue
        values[key] = _convert(raw, type(getattr(cls.Settings(), key)), key)
    try:
        return cls.Settings(**values)
    except ValueError as exc:
        raise DepthscopeError(f"bad setting for {cls.name}: {exc}") from None


def _convert(raw: str, kind: type, key: str) -> object:
    converters: dict[type, Callable[[str], object]] = {
        bool: lambda s: s.lower() in {"1", "true", "yes", "on"},
        int: int,
        float: float,
        str: str,
        tuple: lambda s: tuple(x for x in s.split(",") if x),
    }
    try:
        return converters.get(kind, str)(raw)
    except ValueError:
        raise DepthscopeError(f"setting {key}={raw!r} is not a valid {kind.__name__}") from None
