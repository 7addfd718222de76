"""The card: everything the rest of depthscope knows about a kind of result, declared in one class.

A :class:`Card` says what a result is called, where it sits in the paper, how it is drawn, which
few numbers summarise it, and what it offers to run-level products: the per-layer
:class:`Profile` s that the verdict reads as transition indicators and ``depthscope compare``
overlays, the :class:`VerdictRule` s that turn it into lines of the verdict, and the settings a
:class:`Preset` chooses. Summary, compare and presets iterate over the registered cards and read
these declarations, so no analysis is named anywhere else (``docs/extending.md``).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from depthscope.core.errors import DepthscopeError
from depthscope.core.result import Result
from depthscope.figures.common import Figures, figure_bytes
from depthscope.figures.figure_files import plot_result
from depthscope.verdict import bootstrap


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


@dataclass(frozen=True)
class Profile:
    """A per-layer (or per-boundary) profile that a card offers to the verdict and to compare.

    ``read`` computes it from a saved result's ``data`` (as the analysis aggregates it, e.g. the
    paper's max over prompts). ``per_prompt`` gives it per prompt with each prompt's weight, so
    the verdict can use the weighted mean over prompts and resample prompts for its intervals. A
    profile with an ``indicator`` name is evidence for the transition (the second regime's
    start): its change point is expected to be a step ``expected`` ("down" or "up"), fitted in log
    scale when ``log`` (positive ratios and norms). ``order`` places it among the indicators.
    ``importance`` says how its threshold-free effective depth weighs each index
    (:mod:`depthscope.verdict.depth`); ``paper`` reads the same profile under the paper's
    aggregation where it differs from the verdict's mean over prompts (the max over prompts of
    the skip experiments), so the verdict can show both.
    """

    name: str  # compare's quantity name, e.g. "future-effect"
    label: str  # what it measures, for axes, e.g. "mean future effect on later layers"
    read: Callable[[dict], np.ndarray]
    indicator: str = ""  # its name in the verdict ("" = not a transition indicator)
    expected: str = "down"
    log: bool = True
    figure: str = ""  # stem of the figure that shows it
    order: int = 100
    axis: str = "layer"  # "layer" (layers 0..L-1) or "boundary" (residual boundaries 0..L)
    per_prompt: Callable[[dict], tuple[np.ndarray, np.ndarray]] | None = None
    requires: str | None = None  # a data key the result holds only sometimes (the tuned lens)
    # a data key whose presence means a better-aggregated profile of the same indicator
    # replaces this one as evidence (compare still offers both)
    replaced_by: str | None = None
    # per prompt, each split point's data [S, ...] (None: the result has none) and how a
    # prompt's profile follows from their elementwise max: the verdict resamples split points
    per_split: Callable[[dict], list[np.ndarray] | None] | None = None
    of_split_max: Callable[[np.ndarray], np.ndarray] | None = None
    importance: str = "value"  # "value", "one-minus" or "dissimilarity" (verdict.depth)
    paper: Callable[[dict], np.ndarray] | None = None
    paper_label: str = ""  # how ``paper`` aggregates, e.g. "max over prompts"

    def offered_by(self, data: dict) -> bool:
        """Whether a saved result of its analysis holds this profile."""
        return self.requires is None or self.requires in data

    def sampled(
        self, data: dict, seed: int = bootstrap.SEED
    ) -> tuple[np.ndarray, np.ndarray | None, int | None]:
        """(the verdict's profile, its bootstrap draws ``[draws, n]``, the prompt count).

        The profile is the weighted mean of the per-prompt profiles; the draws resample prompts,
        and split points too where the result keeps each split point's data. Results saved
        without per-prompt data give the saved aggregate and no draws.
        """
        if self.per_prompt is None or not data.get("per_prompt"):
            return np.asarray(self.read(data), dtype=float), None, None
        values, weights = self.per_prompt(data)
        mean = bootstrap.weighted_mean(values, weights)
        splits = self.per_split(data) if self.per_split is not None else None
        if splits is not None and self.of_split_max is not None:
            samples = bootstrap.split_resampled(splits, weights, self.of_split_max, seed=seed)
        else:
            counts = bootstrap.draws(len(weights), seed=seed)
            samples = bootstrap.resampled(values, weights, counts)
        return mean, samples, len(weights)

    def preferred_in(self, data: dict) -> bool:
        """Whether ``data`` holds this profile and no better-aggregated one replacing it."""
        return self.offered_by(data) and self.replaced_by not in data

    def evidence_in(self, data: dict) -> bool:
        """Whether this profile is the verdict's evidence for its indicator in ``data``."""
        return bool(self.indicator) and self.preferred_in(data)


PerPrompt = Callable[[dict], tuple[np.ndarray, np.ndarray]]


def per_prompt_key(
    key: str, weight: str | None = None, of: Callable[[object], np.ndarray] | None = None
) -> PerPrompt:
    """Per-prompt profiles from ``data["per_prompt"][i][key]`` (through ``of`` if given), each
    prompt weighted by its entry's ``weight`` field (1 without one)."""

    def read(data: dict) -> tuple[np.ndarray, np.ndarray]:
        entries = _at_path(data, key)["per_prompt"]
        leaf = key.rpartition(".")[2]
        values = np.stack(
            [np.asarray(of(e[leaf]) if of else e[leaf], dtype=float) for e in entries]
        )
        weights = np.array([float(e.get(weight, 1)) if weight else 1.0 for e in entries])
        return values, weights

    return read


def per_split_key(key: str) -> Callable[[dict], list[np.ndarray] | None]:
    """Each prompt's per-split data ``data["per_prompt"][i][key]`` (None unless every prompt
    has it: results saved before split points were kept)."""

    def read(data: dict) -> list[np.ndarray] | None:
        entries = data.get("per_prompt") or []
        if not entries or not all(key in e for e in entries):
            return None
        return [np.asarray(e[key], dtype=float) for e in entries]

    return read


def _at_path(data: dict, key: str) -> dict:
    """The dict holding ``key``'s leaf: ``data`` itself, or ``data["tuned"]`` for "tuned.kl"."""
    for part in key.split(".")[:-1]:
        data = data[part]
    return data


def data_key(key: str) -> Callable[[dict], np.ndarray]:
    """A profile read straight from ``data[key]`` (``"tuned.kl"``: ``data["tuned"]["kl"]``)."""
    return lambda data: np.asarray(_at_path(data, key)[key.rpartition(".")[2]], dtype=float)


@dataclass
class Finding:
    """One line of the verdict: a headline layer (absolute and relative), a sentence, evidence."""

    key: str
    title: str
    headline: str  # the numbers in a few words, for the table
    sentence: str
    layer: int | None = None  # the headline layer or boundary
    relative_depth: float | None = None  # layer / L
    details: dict = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)  # figure stems in the run's figures/
    analyses: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VerdictRule:
    """A line of the verdict that a card's saved result fills (rules: docs/summary.md).

    Where several cards fill the same ``key``, the one of lowest ``rank`` present in a run is used;
    when none ran, the verdict suggests running that one, with ``suggest`` added to the command.
    """

    key: str
    title: str
    compute: Callable[[Result, int | None], Finding | None]  # (result, number of layers)
    suggest: str = ""  # options for the suggested command, e.g. "--data builtin:hops"
    rank: int = 0


@dataclass(frozen=True)
class Preset:
    """Data, prompt count and settings of an analysis under a named preset (``--preset``)."""

    data: str
    n: int | None
    settings: dict[str, str] = field(default_factory=dict)
    offline: str | None = None  # the built-in source used when ``data`` needs the hub
    why: str = ""  # where the values come from


class Card:
    """Presentation of one kind of result: name, paper reference, figures, key numbers, captions,
    and the declarations run-level products read."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]  # one line for --help
    paper: ClassVar[PaperRef | None] = None
    # How to read each figure, by figure key (the part of the file name after "<analysis>_"); the
    # longest key that prefixes a figure's key wins, "" is the fallback.
    captions: ClassVar[Mapping[str, str]] = {}
    profiles: ClassVar[tuple[Profile, ...]] = ()
    verdict: ClassVar[tuple[VerdictRule, ...]] = ()
    presets: ClassVar[Mapping[str, Preset]] = {}  # preset name -> this analysis's choices
    # settings that do not change the compared profiles (compare ignores differences in them)
    settings_not_compared: ClassVar[frozenset[str]] = frozenset()
    second_axis: ClassVar[str] = "layer2"  # tidy tables: "layer2" or "position" for matrices

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

    @classmethod
    def save_figures(cls, result: Result, folder: Path) -> list[Path]:
        """Draw the result into ``folder`` as PNG and PDF; returns the files written."""
        return plot_result(result, folder)

    @classmethod
    def html(cls, result: Result) -> str:
        """The result in a notebook: heading, counts, key numbers and the first two figures."""
        model = result.model.get("name", "model") if isinstance(result.model, dict) else "model"
        parts = [
            f"<h3>{html.escape(cls.heading())}</h3>",
            f"<p>{html.escape(str(model))} · {result.n_prompts} prompts, {result.n_tokens} tokens</p>",
        ]
        numbers = result.numbers()
        if numbers:
            parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in numbers) + "</ul>")
        try:
            figures = list(result.plot().items())[:2]
        except DepthscopeError:
            figures = []
        for key, fig in figures:
            data = base64.b64encode(figure_bytes(fig, "png")).decode("ascii")
            parts.append(
                f"<img src='data:image/png;base64,{data}' alt='{html.escape(key)}' "
                "style='max-width:48%;margin-right:1%'>"
            )
        return "\n".join(parts)
