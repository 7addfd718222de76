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

import numpy as np
import torch

from depthscope.analyses.base import Analysis, PromptBatch, RunContext, Tally
from depthscope.analyses.card import Finding, PaperRef, Preset, VerdictRule
from depthscope.analyses.catalog import register
from depthscope.analyses.effects import AGGREGATES, Aggregates, skip_sweep
from depthscope.core.errors import DepthscopeError
from depthscope.data.sources import split_rule_for
from depthscope.engine.state import state_type
from depthscope.engine.sweep import Window, run_sweep
from depthscope.figures.depth import draw_depth_score
from depthscope.verdict import bootstrap
from depthscope.verdict.words import rel

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


def depth_scores_of(importances: np.ndarray) -> np.ndarray:
    """``[rows]``: the depth score of each importance profile ``[rows, L]`` (NaN: all zero)."""
    layers = np.arange(importances.shape[1], dtype=float)
    total = importances.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total != 0, importances @ layers / total, np.nan)


def resampled_depth_scores(
    effects: np.ndarray, outputs: np.ndarray, aggregate: str, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Depth scores (from layer effects, from output change) of each draw of examples.

    ``effects`` ``[n, L, L]`` and ``outputs`` ``[n, L]`` are the examples' own matrices, ``counts``
    ``[draws, n]`` how often each is drawn (:func:`bootstrap.draws`). Under ``mean`` a draw's
    importance is the weighted mean of the examples' importances (importance is linear in the
    matrix); under ``max`` the matrices of the drawn examples are maxed first, as ``finish`` does.
    """
    n_layers = effects.shape[1]
    later = np.triu(np.ones((n_layers, n_layers), dtype=bool), k=1)
    per_count = np.maximum(np.arange(n_layers - 1, -1, -1, dtype=float), 1.0)
    if aggregate == "mean":
        per_example = np.where(later, effects, 0.0).sum(axis=2) / per_count  # [n, L]
        weights = counts / counts.sum(axis=1, keepdims=True)
        return depth_scores_of(weights @ per_example), depth_scores_of(weights @ outputs)
    layer_scores, output_scores = [], []
    for chunk in np.array_split(counts, max(1, len(counts) // 100)):  # bounded memory
        drawn = chunk[:, :, None] > 0
        maxed = np.where(drawn[..., None], effects[None], -np.inf).max(axis=1)  # [d, L, L]
        importance = np.where(later, maxed, 0.0).sum(axis=2) / per_count
        layer_scores.append(depth_scores_of(importance))
        output_scores.append(depth_scores_of(np.where(drawn, outputs[None], -np.inf).max(axis=1)))
    return np.concatenate(layer_scores), np.concatenate(output_scores)


def level_intervals(entry: dict, aggregate: str, seed: int = bootstrap.SEED) -> dict | None:
    """The depth scores' bootstrap intervals over the level's examples, with the draws kept for
    comparing levels (None when the result holds no per-example matrices: older runs)."""
    examples = entry.get("per_example") or []
    if not examples:
        return None
    effects = np.stack([np.asarray(e["effect"], dtype=float) for e in examples])
    outputs = np.stack([np.asarray(e["output_change"], dtype=float) for e in examples])
    counts = bootstrap.draws(len(examples), seed=seed)
    layer, output = resampled_depth_scores(effects, outputs, aggregate, counts)
    return {
        "layer": bootstrap.interval_of(entry.get("depth_score_layer"), layer),
        "output": bootstrap.interval_of(entry.get("depth_score_output"), output),
        "layer_draws": layer,
    }


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
    per_example: list = field(default_factory=list)  # {"prompt", "effect", "output_change"}


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
    """Depth score per difficulty level with its interval over the level's examples, and whether
    the hardest level's score differs from the easiest's beyond that interval."""
    levels = {
        level: entry
        for level, entry in result.data["levels"].items()
        if isinstance(entry.get("depth_score_layer"), int | float)
    }
    if not levels:
        return None
    aggregate = result.settings.get("aggregate", "max")
    scores = {level: entry["depth_score_layer"] for level, entry in levels.items()}
    # each level its own seed: its examples are other examples, so its draws must be independent
    intervals = {
        level: level_intervals(entry, aggregate, seed=bootstrap.SEED + i)
        for i, (level, entry) in enumerate(levels.items())
    }
    values = list(scores.values())
    first, last = list(levels)[0], list(levels)[-1]
    change = None
    if len(levels) > 1 and intervals[first] and intervals[last]:
        change = bootstrap.interval_of(
            values[-1] - values[0], intervals[last]["layer_draws"] - intervals[first]["layer_draws"]
        )
        grows = None
        if change.low is not None:
            grows = True if change.low > 0 else False if change.high < 0 else None
        trend = {
            True: "; harder problems use more depth",
            False: "; harder problems use less depth",
            None: "; harder problems do not use more depth (the change is within its interval)",
        }[grows]
        trend += f" (hardest − easiest: {change.text(2)} layers)"
    else:
        grows = values[-1] > values[0] if len(values) > 1 else None
        trend = {None: "", True: "; harder problems use more depth"}.get(
            grows, "; harder problems do not use more depth"
        )

    def shown(level: str) -> str:
        found = intervals[level]
        score = found["layer"].text(2) if found else f"{scores[level]:.2f}"
        return f"level {level}: {score} ({rel(scores[level], n_layers)})"

    listed = ", ".join(shown(level) for level in levels)
    headline = f"depth score {values[0]:.1f} → {values[-1]:.1f}"
    if change is not None:
        headline = (
            f"depth score {intervals[first]['layer'].text(1)} → {intervals[last]['layer'].text(1)}"
        )
    return Finding(
        key="difficulty",
        title="Depth vs difficulty",
        headline=headline,
        sentence=f"Depth score (0-based layer, relative depth) per level: {listed}{trend}.",
        layer=None,
        relative_depth=None,
        details={
            "depth_score_layer": scores,
            "grows": grows,
            "intervals": {
                level: {kind: found[kind].as_json() for kind in ("layer", "output")}
                for level, found in intervals.items()
                if found
            },
            "change": change.as_json() if change else None,
        },
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
            level.per_example.append(
                {"prompt": prompt.prompt_id, "effect": effect.cpu(), "output_change": output.cpu()}
            )
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
                # each example's own matrices: the verdict's intervals resample them
                "per_example": sorted(stats.per_example, key=lambda e: e["prompt"]),
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
