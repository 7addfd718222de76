"""Depth score vs difficulty (E9): do harder problems use later layers more?

Paper §3.6, Fig. 7.
Per example, each layer ``s`` is skipped on the question (positions ``[front, t)``) and the effect
is measured from the answer on (``[t, T)``), as in future-effects, with split points inside the
answer: ``t`` = the first answer position for short answers (MQuAKE rule) or up to 4 sampled
offsets ``0, 4, 8, …`` into long answers (MATH rule); the rule is the data source's
(:func:`depthscope.data.sources.split_rule_for`) unless ``split_rule`` names one. Per difficulty
level the matrices are aggregated (max and mean over examples), turned into layer importances
``e_s = Σ_l R[s, l] / max(L − 1 − s, 1)`` (mean effect on later layers) and ``e_s = O[s]``
(output change), and summarised by the depth score ``Σ_s s·e_s / Σ_s e_s`` with 0-based ``s``
(the paper's 1-based score is this plus 1). Accuracy is teacher-forced: an example is correct when
the argmax prediction is right on every answer token.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch

from depthscope.analyses.base import Analysis, PromptBatch, RunContext, Tally
from depthscope.analyses.card import Finding, PaperRef, Preset, VerdictRule
from depthscope.analyses.catalog import register
from depthscope.analyses.effects import AGGREGATES, Aggregates, skip_sweep
from depthscope.analyses.verdict import rel
from depthscope.core.errors import DepthscopeError
from depthscope.data.sources import split_rule_for
from depthscope.engine.state import state_type
from depthscope.engine.sweep import Window, run_sweep
from depthscope.figures.depth import draw_depth_score

if TYPE_CHECKING:
    from depthscope.results.document import Result

SPLIT_RULES = ("auto", "answer-start", "in-answer")


@dataclass
class DepthScoreSettings:
    split_rule: str = field(
        default="auto",
        metadata={
            "help": "answer-start (MQuAKE), in-answer (MATH), auto: the data source's rule "
            "(by answer length, in-answer over 4 tokens, for prompts given without a source)"
        },
    )
    n_splits: int = field(default=4, metadata={"help": "in-answer: split points per example"})
    split_stride: int = field(default=4, metadata={"help": "in-answer: offsets 0, stride, ..."})
    front: int = field(default=1, metadata={"help": "positions before this are never skipped"})
    aggregate: str = field(default="max", metadata={"help": "over examples: max or mean"})

    def __post_init__(self) -> None:
        if self.split_rule not in SPLIT_RULES:
            raise ValueError(f"split_rule must be one of {SPLIT_RULES}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}")


def answer_splits(
    length: int, answer_length: int, settings: DepthScoreSettings, seed: int, prompt_id: int
) -> list[int]:
    """Split points for one example (paper §3.6: MQuAKE at the answer start, MATH inside it)."""
    start = length - answer_length
    offsets = list(range(0, answer_length - 4, settings.split_stride))
    rule = settings.split_rule
    if rule == "auto":
        rule = "in-answer" if offsets else "answer-start"
    if rule == "answer-start" or not offsets:
        return [start]
    random.Random(f"depthscope-depth:{seed}:{prompt_id}").shuffle(offsets)
    return [start + o for o in offsets[: settings.n_splits]]


def chosen_split_rule(split_rule: str, data: str) -> tuple[str, str]:
    """(rule, why): the ``split_rule`` setting when named, else the data source's rule (paper
    §3.6: MQuAKE at the answer start, MATH inside the answer), else ``auto`` by answer length
    for prompts given without a known source (Python lists, ``(given examples)``)."""
    if split_rule != "auto":
        return split_rule, "setting"
    try:
        return split_rule_for(data), "data source"
    except DepthscopeError:
        return "auto", "answer length"


def importance_from_effects(effect: torch.Tensor) -> torch.Tensor:
    """``e_s``: mean effect of skipping ``s`` on the layers after it."""
    n = effect.shape[0]
    later = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    counts = torch.clamp(torch.arange(n - 1, -1, -1, dtype=effect.dtype), min=1)
    return (effect * later).sum(dim=1) / counts


def depth_score(importance: torch.Tensor) -> float:
    """``Σ s·e_s / Σ e_s`` with 0-based layer index ``s`` (NaN if all importances are 0)."""
    total = float(importance.sum())
    if total == 0:
        return float("nan")
    layers = torch.arange(importance.numel(), dtype=importance.dtype)
    return float((layers * importance).sum()) / total


def teacher_forced_correct(
    adapter, final: torch.Tensor, answer_ids: torch.Tensor, first: int
) -> bool:
    logits = adapter.logits(final[first : first + answer_ids.numel()])
    return bool((logits.argmax(dim=-1) == answer_ids).all())


@state_type
@dataclass
class LevelState:
    effect: Aggregates = field(default_factory=Aggregates)
    output: Aggregates = field(default_factory=Aggregates)
    correct: int = 0
    n: int = 0


@state_type
@dataclass
class DepthScoreState:
    levels: dict = field(default_factory=dict)  # level key -> LevelState
    split_points: dict = field(default_factory=dict)
    tally: Tally = field(default_factory=Tally)

    def level(self, level: object) -> LevelState:
        key = "all" if level is None else str(level)
        return self.levels.setdefault(key, LevelState())


def difficulty(result: Result, n_layers: int | None) -> Finding | None:
    """Depth score per difficulty level, and whether it grows from the easiest to the hardest."""
    scores = {
        level: entry["depth_score_layer"]
        for level, entry in result.data["levels"].items()
        if isinstance(entry.get("depth_score_layer"), int | float)
    }
    if not scores:
        return None
    values = list(scores.values())
    grows = values[-1] > values[0] if len(values) > 1 else None
    listed = ", ".join(f"level {k}: {v:.2f} ({rel(v, n_layers)})" for k, v in scores.items())
    trend = {None: "", True: "; harder problems use more depth"}.get(
        grows, "; harder problems do not use more depth"
    )
    aggregate = result.settings.get("aggregate", "max")
    return Finding(
        key="difficulty",
        title="Depth vs difficulty",
        headline=f"depth score {values[0]:.1f} → {values[-1]:.1f}",
        sentence=f"Depth score (0-based layer, relative depth) per level: {listed}{trend}.",
        layer=None,
        relative_depth=None,
        details={"depth_score_layer": scores, "grows": grows},
        figures=[f"{result.analysis}_summary_{aggregate}"],
        analyses=[result.analysis],
    )


@register
class DepthScore(Analysis):
    name = "depth-score"
    title = "Depth score vs problem complexity"
    description = (
        "per difficulty level: future effects inside the answer, layer importance, depth score (E9)"
    )
    paper = PaperRef("E9", "§3.6", "Fig. 7")
    Settings = DepthScoreSettings
    State = DepthScoreState
    default_data = "builtin:hops"
    requires_answer = True
    verdict = (
        VerdictRule("difficulty", "Depth vs difficulty", difficulty, suggest="--data builtin:hops"),
    )
    presets = {
        "paper": Preset(
            "hf:mquake",
            20,
            {"aggregate": "max"},  # split rule by dataset: MQuAKE at the answer start, MATH inside
            "builtin:hops",
            "§3.6: 20 MQuAKE examples per hop count (run --data hf:math for the MATH levels)",
        )
    }
    captions = {
        "effect_level": "Future effects for one difficulty level, measured from the answer on: "
        "row = layer skipped on the question, column = later layer.",
        "importance_layer": "Per-layer importance (mean effect on later layers) for each level, "
        "overlaid; a harder level using more depth would shift its mass to the right.",
        "importance_output": "Per-layer importance from the change of the answer's prediction, "
        "per level, overlaid.",
        "summary": "Depth score (importance-weighted mean layer) per level, with teacher-forced "
        "accuracy above; rising bars would mean harder problems use more depth.",
    }

    split_rule: str = "auto"  # the rule used, set by prepare()
    split_rule_from: str = "answer length"

    @classmethod
    def plan_key(cls, settings: DepthScoreSettings, data: str) -> dict:
        return {"split_rule": chosen_split_rule(settings.split_rule, data)[0]}

    def prepare(self, context: RunContext) -> None:
        super().prepare(context)
        self.split_rule, self.split_rule_from = chosen_split_rule(
            self.settings.split_rule, context.data
        )

    def update(self, state: DepthScoreState, batch: PromptBatch) -> None:
        trace = batch.trace
        n_layers = trace.n_layers
        adapter = self.lm.adapter
        settings = replace(self.settings, split_rule=self.split_rule)  # the rule prepare() chose
        for prompt in self.prompts(state, batch):
            row, length, alen = prompt.row, prompt.length, prompt.answer_length
            splits = answer_splits(length, alen, settings, self.options.seed, prompt.prompt_id)
            state.split_points[prompt.prompt_id] = splits
            self.options.progress.start(f"{self.name} prompt {prompt.prompt_id}", n_layers)
            sweep = run_sweep(
                adapter,
                trace,
                row,
                length,
                Window(tuple(splits), self.settings.front),
                skip_sweep("layer"),
                batch_size=self.options.batches,
                progress=self.options.progress,
            )
            effect, output = sweep.effect, sweep.output
            final = trace.resid[n_layers, row, :length]
            level = state.level(batch.prompts.levels[prompt.prompt_id])
            level.effect.add(effect)
            level.output.add(output)
            answer_ids = trace.input_ids[row, length - alen : length]
            with torch.no_grad():
                level.correct += teacher_forced_correct(
                    adapter, final, answer_ids, length - alen - 1
                )
            level.n += 1

    def finish(self, state: DepthScoreState) -> dict:
        if not state.levels:
            raise DepthscopeError(
                "depth-score: no example has a usable answer; use a source with answers, e.g. --data builtin:hops"
            )
        levels = {}
        for key in sorted(state.levels, key=_level_order):
            stats = state.levels[key]
            entry = {
                "effect_max": stats.effect.value("max"),
                "effect_mean": stats.effect.value("mean"),
                "output_max": stats.output.value("max"),
                "output_mean": stats.output.value("mean"),
                "accuracy": stats.correct / stats.n,
                "n_examples": stats.n,
            }
            for variant in AGGREGATES:
                importance = importance_from_effects(entry[f"effect_{variant}"].float())
                out_importance = entry[f"output_{variant}"].float()
                entry[f"importance_layer_{variant}"] = importance
                entry[f"importance_output_{variant}"] = out_importance
                entry[f"depth_score_layer_{variant}"] = depth_score(importance)
                entry[f"depth_score_output_{variant}"] = depth_score(out_importance)
            chosen = self.settings.aggregate
            for name in (
                "importance_layer",
                "importance_output",
                "depth_score_layer",
                "depth_score_output",
            ):
                entry[name] = entry[f"{name}_{chosen}"]
            levels[key] = entry
        return {
            "levels": levels,
            "split_points": dict(sorted(state.split_points.items())),
            "split_rule": self.split_rule,  # answer-start, in-answer, or auto (by answer length)
            "split_rule_from": self.split_rule_from,  # setting, data source or answer length
            "skipped_prompts": state.tally.skipped_ids,
        }

    @classmethod
    def draw(cls, result: Result):
        return draw_depth_score(result)

    @classmethod
    def numbers(cls, result: Result) -> list[str]:
        lines = []
        for level, entry in result.data["levels"].items():
            layer, output = entry.get("depth_score_layer"), entry.get("depth_score_output")
            accuracy = entry.get("accuracy")
            acc = f"{accuracy:.0%}" if isinstance(accuracy, int | float) else "n/a"
            lines.append(
                f"level {level}: depth score {_fmt(layer)} from layer effects, {_fmt(output)} from "
                f"output change (0-based); accuracy {acc}; n={entry.get('n_examples', '?')}"
            )
        return lines


def _fmt(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "n/a"


def _level_order(key: str) -> tuple:
    return (0, int(key), "") if key.lstrip("-").isdigit() else (1, 0, key)
