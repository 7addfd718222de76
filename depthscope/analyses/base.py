"""One card per analysis: everything the rest of depthscope knows about an analysis, in one class.

A :class:`Card` says what a kind of result is called, where it sits in the paper, how it is drawn
and which few numbers summarise it. An :class:`Analysis` is a card that can also compute its
result: settings, default data, an optional ``prepare`` step, and the protocol
``new_state -> update(batch)* -> finish``. The runner, the report and the CLI only iterate over
:data:`REGISTRY`, so adding an analysis is one new module that defines a registered class
(``docs/extending.md``).

An analysis never touches hooks or modules: it receives a clean :class:`Trace` of a batch of
prompts and asks the engine for replays. Its state is a registered dataclass of mergeable
statistics (:mod:`depthscope.engine.state`), which the runner checkpoints as data and merges
across processes.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, ClassVar

import torch

from depthscope.analyses.prompts import AnswerSplits, PromptSet, paper_answers
from depthscope.data.sources import DEFAULT_SOURCE
from depthscope.engine.memory import AdaptiveBatch
from depthscope.engine.state import state_type
from depthscope.engine.trace import Trace
from depthscope.errors import DepthscopeError
from depthscope.models.loading import LoadedModel
from depthscope.progress import Progress

if TYPE_CHECKING:
    from depthscope.figures.common import Figures
    from depthscope.results import Result


# ---------------------------------------------------------------- the card


@dataclass(frozen=True)
class PaperRef:
    """Where an analysis comes from in the paper (Csordás, Manning & Potts 2025)."""

    experiment: str  # "E4": the experiment's number in the paper's order (E1..E12)
    section: str  # "§3.2"
    figures: str  # "Fig. 3b, 17b"

    def __str__(self) -> str:
        return ", ".join(part for part in (self.experiment, self.section, self.figures) if part)

    @property
    def number(self) -> int:
        digits = "".join(ch for ch in self.experiment if ch.isdigit())
        return int(digits) if digits else 1000


class Card:
    """Presentation of one kind of result: name, paper reference, figures, key numbers, captions."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]  # one line for --help
    paper: ClassVar[PaperRef | None] = None
    # How to read each figure, by figure key (the part of the file name after "<analysis>_"); the
    # longest key that prefixes a figure's key wins, "" is the fallback.
    captions: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def draw(cls, result: Result) -> Figures:
        """Every figure of a saved result, ``{key: Figure}`` in display order."""
        return {}

    @classmethod
    def numbers(cls, result: Result) -> list[str]:
        """A few sentences with the numbers that summarise a saved result."""
        return []

    @classmethod
    def caption(cls, figure_key: str) -> str:
        matches = [key for key in cls.captions if figure_key.startswith(key)]
        return cls.captions[max(matches, key=len)] if matches else ""

    @classmethod
    def heading(cls) -> str:
        return f"{cls.title} ({cls.paper.experiment})" if cls.paper else cls.title


# ---------------------------------------------------------------- computation


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
    default_data: ClassVar[str] = DEFAULT_SOURCE
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


# ---------------------------------------------------------------- registry


REGISTRY: dict[str, type[Card]] = {}


def register(cls: type[Card]) -> type[Card]:
    """Class decorator: make a card (or analysis) known to the runner, report and CLI."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} needs a name to be registered")
    REGISTRY[cls.name] = cls
    return cls


def paper_order() -> list[str]:
    """Registered names in the paper's order (E2..E10), cards without a paper reference last."""
    return sorted(
        REGISTRY, key=lambda n: (REGISTRY[n].paper.number if REGISTRY[n].paper else 1000, n)
    )


def runnable() -> list[str]:
    """Analyses `depthscope analyze` can run, in the paper's order."""
    return [n for n in paper_order() if issubclass(REGISTRY[n], Analysis)]


def default_run() -> list[str]:
    """What `--analyses all` runs."""
    return [n for n in runnable() if REGISTRY[n].in_default_run]


def card(name: str) -> type[Card] | None:
    return REGISTRY.get(name)


def analysis_class(name: str) -> type[Analysis]:
    cls = REGISTRY.get(name)
    if cls is None or not issubclass(cls, Analysis):
        raise DepthscopeError(f"unknown analysis {name!r}; choose from {', '.join(runnable())}")
    return cls


# ---------------------------------------------------------------- settings


def settings_dict(settings: object) -> dict:
    return dataclasses.asdict(settings)


def setting_help(cls: type[Analysis]) -> list[tuple[str, object, str]]:
    """(key, default, help) for every setting of ``cls``, for --help and the docs."""
    defaults = cls.Settings()
    return [
        (f.name, getattr(defaults, f.name), f.metadata.get("help", ""))
        for f in dataclasses.fields(cls.Settings)
    ]


def split_overrides(names: list[str], overrides: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``--set`` items per analysis: ``analysis.key=value`` for one, ``key=value`` for the one that has it.

    An unqualified key that several requested analyses share is refused (naming them), so a setting
    never changes more than the user meant; an unknown key or analysis is refused too.
    """
    per: dict[str, dict[str, str]] = {name: {} for name in names}
    fields = {n: {f.name for f in dataclasses.fields(analysis_class(n).Settings)} for n in names}
    for raw_key, value in overrides.items():
        prefix, dot, key = raw_key.rpartition(".")
        if dot:
            if prefix not in per:
                raise DepthscopeError(
                    f"--set {raw_key}: {prefix!r} is not among the analyses of this run "
                    f"({', '.join(names)})"
                )
            if key not in fields[prefix]:
                valid = ", ".join(sorted(fields[prefix])) or "none"
                raise DepthscopeError(f"{prefix} has no setting {key!r}; valid: {valid}")
            per[prefix][key] = value
            continue
        owners = [n for n in names if key in fields[n]]
        if not owners:
            valid = sorted({f"{n}.{k}" for n in names for k in fields[n]})
            raise DepthscopeError(
                f"unknown setting {key!r} for {', '.join(names)}; valid: {', '.join(valid)}"
            )
        if len(owners) > 1:
            raise DepthscopeError(
                f"--set {key}={value} is ambiguous: {' and '.join(owners)} both have {key!r}; "
                f"write --set {owners[0]}.{key}={value} (one analysis at a time)"
            )
        per[owners[0]][key] = value
    return per


def make_settings(cls: type[Analysis], overrides: Mapping[str, str]) -> object:
    """Build ``cls.Settings`` from ``key=value`` strings, converting to each field's type.

    Keys the settings do not have are ignored (use :func:`split_overrides` to check them first).
    """
    fields = {f.name for f in dataclasses.fields(cls.Settings)}
    defaults = cls.Settings()
    values = {
        key: _convert(raw, type(getattr(defaults, key)), f"{cls.name}.{key}")
        for key, raw in overrides.items()
        if key in fields
    }
    try:
        return cls.Settings(**values)
    except ValueError as exc:
        raise DepthscopeError(f"bad setting for {cls.name}: {exc}") from None


def _convert(raw: str, kind: type, key: str) -> object:
    converters: dict[type, Callable[[str], object]] = {
        bool: _boolean,
        int: int,
        float: float,
        str: str,
        tuple: comma_list,
    }
    try:
        value = converters.get(kind, str)(raw)
    except ValueError:
        raise DepthscopeError(f"setting {key}={raw!r} is not a valid {kind.__name__}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise DepthscopeError(f"setting {key}={raw!r} must be a finite number")
    return value


def comma_list(text: str) -> tuple[str, ...]:
    """A tuple setting written as text: ``"layer,mlp"`` → ``("layer", "mlp")``."""
    return tuple(item for item in text.split(",") if item)


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(text)
