"""An analysis: a card (:mod:`depthscope.analyses.card`) that can also compute its result.

An :class:`Analysis` adds to its card the settings, default data, an optional ``prepare`` step,
and the protocol ``new_state -> update(batch)* -> finish``. The runner, the report and the CLI
only iterate over the registered cards (:mod:`depthscope.analyses.catalog`), so adding an analysis
is one new module that defines a registered class (``docs/extending.md``).

An analysis never touches hooks or modules: it receives a clean :class:`Trace` of a batch of
prompts and asks the engine for replays. Its state is a registered dataclass of mergeable
statistics (:mod:`depthscope.engine.state`), which the runner checkpoints as data and merges
across processes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch

from depthscope.analyses.card import Card
from depthscope.core.errors import DepthscopeError
from depthscope.core.progress import Progress
from depthscope.data.prompts import AnswerSplits, PromptSet, paper_answers
from depthscope.data.sources import DEFAULT_DATA
from depthscope.engine.adaptive_batch import AdaptiveBatch
from depthscope.engine.state import state_type
from depthscope.engine.trace import Trace
from depthscope.models.loading.loader import LoadedModel

# ---------------------------------------------------------------- computation


@dataclass
class SharedWork:
    """Work that one analysis can do for another fed the same traced batch.

    ``pending`` names, per analysis, the analysis and the prompt ids it has still to fold in from
    this batch; an analysis that can compute a partner's result on the way (current and future
    effects share one replay per prompt and part, :func:`depthscope.engine.sweep.run_joint_sweep`)
    leaves it under a key, and the partner takes it instead of computing it again. Lives for one
    traced batch: nothing is kept across batches or checkpoints, so a resumed run recomputes.
    """

    pending: dict[str, tuple[Analysis, set[int]]] = field(default_factory=dict)
    results: dict = field(default_factory=dict)

    def partners(self, prompt_id: int, besides: Analysis) -> list[Analysis]:
        """The other analyses that will still fold in ``prompt_id`` from this batch."""
        return [
            analysis
            for analysis, todo in self.pending.values()
            if analysis is not besides and prompt_id in todo
        ]

    def done(self, analysis: Analysis, prompt_ids: list[int]) -> None:
        entry = self.pending.get(analysis.name)
        if entry is not None:
            entry[1].difference_update(prompt_ids)

    def put(self, key: tuple, value: object) -> None:
        self.results[key] = value

    def take(self, key: tuple) -> object | None:
        return self.results.pop(key, None)


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
    shared: SharedWork | None = None  # what analyses fed the same trace may do for each other

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


@dataclass(frozen=True)
class PromptView:
    """One prompt of a batch, as an analysis sees it."""

    row: int  # row in the trace
    prompt_id: int  # number of the prompt in the run
    length: int  # valid tokens
    answer_length: int | None  # answer tokens at the end (None: no usable answer)
    split: str | None = None  # with the paper's split: "as-given", "shifted" or "not-tail"


@state_type
@dataclass
class Tally:
    """How many prompts and tokens went into a result, and which prompts were skipped and why."""

    n_prompts: int = 0
    n_tokens: int = 0
    skipped: dict = field(default_factory=dict)  # prompt id -> reason

    def count(self, length: int) -> None:
        self.n_prompts += 1
        self.n_tokens += length

    def skip(self, prompt_id: int, reason: str) -> None:
        self.skipped[prompt_id] = reason

    @property
    def skipped_ids(self) -> list[int]:
        return sorted(self.skipped)

    def skip_summary(self) -> str:
        """ "3 prompts skipped: 2 × no usable answer, 1 × too short" ("" when none)."""
        if not self.skipped:
            return ""
        reasons: dict[str, int] = {}
        for reason in self.skipped.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        parts = ", ".join(f"{count} × {reason}" for reason, count in sorted(reasons.items()))
        n = len(self.skipped)
        return f"{n} prompt{'s' if n != 1 else ''} skipped: {parts}"


@dataclass
class RunOptions:
    """Options every analysis receives: the run's seed and the replay batch size (rows)."""

    seed: int = 0
    batch_size: int = 64
    progress: Progress = field(default_factory=Progress)
    _batches: AdaptiveBatch | None = field(default=None, init=False, repr=False)

    @property
    def batches(self) -> AdaptiveBatch:
        """The replay batch shared by every analysis of the run: it halves on out-of-memory
        (with a notice) and stays halved, so the size found once serves every later prompt."""
        if self._batches is None:
            self._batches = AdaptiveBatch(self.batch_size, self.progress)
        return self._batches


@dataclass(frozen=True)
class RunContext:
    """What :meth:`Analysis.prepare` may look at: the run's data source, seed and prompts."""

    data: str
    seed: int
    prompts: PromptSet


NO_ANSWER = "no answer at the end of the prompt"
NOT_TAIL = "answer is not the tail of the tokens, however the boundary space is placed"


class Analysis(Card, ABC):
    """One experiment of the paper, as ``prepare -> new_state -> update(batch)* -> finish``."""

    Settings: ClassVar[type]
    State: ClassVar[type]
    default_data: ClassVar[str] = DEFAULT_DATA
    in_default_run: ClassVar[bool] = False  # part of `--analyses all`
    requires_answer: ClassVar[bool] = False  # measures at answer tokens (skips prompts without)
    # Splits prompt and answer as the paper does for this tokenizer (E7/E8, paper §3.5): prepare()
    # finds the answer tokens with :func:`paper_answers` and each prompt records its split.
    uses_paper_split: ClassVar[bool] = False
    answer_splits: AnswerSplits | None = None
    per_prompt: ClassVar[bool] = True  # update() may be called one prompt at a time

    def __init__(self, lm: LoadedModel, settings: object, options: RunOptions) -> None:
        self.lm = lm
        self.settings = settings
        self.options = options

    @classmethod
    def plan_key(cls, settings: object, data: str) -> dict:
        """What decides the result besides the settings, tokens, model and seed (it goes into the
        run's fingerprint, so that a saved result computed otherwise is recomputed)."""
        return {"answer_split": "paper"} if cls.uses_paper_split else {}

    def prepare(self, context: RunContext) -> None:
        """Work that depends on the run but not on a prompt (e.g. erasure's baseline).

        Subclasses that override it call ``super().prepare(context)``.
        """
        if self.uses_paper_split:
            self.answer_splits = paper_answers(self.lm.tokenizer, context.prompts)

    def new_state(self):
        return self.State()

    def prompt_cost(self, length: int, prompt_id: int) -> float:
        """Rough work on one prompt, in token-layer passes (default: one pass over the model).

        Only used to give processes shares of equal work, so it is cheap, needs no trace and may
        be called before :meth:`prepare`; analyses whose work grows otherwise override it.
        """
        return float(length * self.lm.adapter.n_layers)

    @abstractmethod
    def update(self, state, batch: PromptBatch) -> None:
        """Fold the prompts of ``batch`` into ``state``."""

    @abstractmethod
    def finish(self, state) -> dict:
        """The ``data`` section of the result."""

    def unusable(self, prompt: PromptView) -> str | None:
        """Why this analysis cannot use ``prompt`` (recorded as skipped), or None."""
        if self.requires_answer and prompt.answer_length is None:
            return NOT_TAIL if prompt.split == "not-tail" else NO_ANSWER
        return None

    def prompts(self, state, batch: PromptBatch) -> Iterator[PromptView]:
        """The usable prompts of ``batch``; the others are recorded in ``state.tally`` with why.

        A prompt is counted (prompts, tokens) once the caller's work on it finished.
        """
        for row, prompt_id in batch:
            view = PromptView(row, prompt_id, batch.length(row), batch.answer_length(prompt_id))
            if self.answer_splits is not None:
                answers = self.answer_splits
                view = replace(
                    view,
                    answer_length=answers.lengths[prompt_id],
                    split=answers.splits[prompt_id],
                )
            reason = self.unusable(view)
            if reason:
                state.tally.skip(prompt_id, reason)
                continue
            yield view
            state.tally.count(view.length)

    def require_some(self, state, fix: str) -> None:
        """An analysis that used no prompt measured nothing: say why instead of saving zeros."""
        if state.tally.n_prompts:
            return
        why = state.tally.skip_summary() or "no prompts"
        raise DepthscopeError(f"{self.name}: every prompt was skipped ({why}); {fix}")
