"""Depth score vs difficulty (E9): do harder problems use later layers more?

Paper §3.6, Fig. 7.
Per example, each layer ``s`` is skipped on the question (positions ``[front, t)``) and the effect
is measured from ``t`` on (``[t, T)``), as in future-effects, with split points: ``t`` = the
position that predicts the first answer token (one before the answer; the paper's code splits at
the answer itself, see :data:`ANSWER_START_OFFSET`) for short answers (MQuAKE rule) or up to 4
sampled offsets ``0, 4, 8, …`` into long answers (MATH rule); the rule is the data source's
(:func:`depthscope.data.sources.split_rule_for`) unless ``split_rule`` names one. Per difficulty
level the matrices are aggregated (max and mean over examples), turned into layer importances
``e_s = Σ_l R[s, l] / max(L − 1 − s, 1)`` (mean effect on later layers) and ``e_s = O[s]``
(output change), and summarised by the depth score ``Σ_s s·e_s / Σ_s e_s`` with 0-based ``s``
(the paper's 1-based score is this plus 1). Accuracy is teacher-forced: an example is correct when
the argmax prediction is right on every answer token; the first answer token's top-1 is recorded
per example too (``first_token_correct``), and decides which levels the model solves.

The verdict (:func:`difficulty`, :func:`difficulty_report`) reads the depth score of the *mean*
effect matrix over a level's examples (a smooth function of the examples' means, so its bootstrap
over examples is sound; the paper's max is shown beside it without an interval), fits a
least-squares slope of relative depth against the level over the levels the model solves, and
calls a direction only when the slope's test says so, "no more depth" only when the predicted
easiest-to-hardest change is inside ±``DEPTH_MARGIN`` (docs/depth-score.md).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from depthscope.analyses.base import Analysis, PromptBatch, RunContext, Tally
from depthscope.analyses.card import Finding, PaperRef, Preset, VerdictRule
from depthscope.analyses.effects import AGGREGATES, Aggregates, skip_sweep
from depthscope.core.errors import DepthscopeError
from depthscope.core.registry import register
from depthscope.core.result import Result
from depthscope.data.sources import split_rule_for
from depthscope.engine.state import state_type
from depthscope.engine.sweep import Window, run_sweep
from depthscope.figures.depth import draw_depth_score
from depthscope.verdict import bootstrap, differences
from depthscope.verdict.words import rel

SPLIT_RULES = ("auto", "answer-start", "in-answer")
# Deliberate deviation from the paper's code (paper §3.6, Fig. 7; docs/depth-score.md): the
# original splits MQuAKE examples at the first answer position, so the position that predicts the
# first answer token (one before it) is intervened on and never measured; for one-token answers
# only the position after the answer is. Here the answer-start split sits one position earlier:
# layers are skipped on ``[front, a_start − 1)`` and measured from the prediction of the first
# answer token on. Results record it (``answer_start_offset``; results without it split at 0).
ANSWER_START_OFFSET = -1
# A level enters the difficulty trend when the model's top-1 prediction of the first answer token
# is right on at least this share of its examples: on a level answered wrong more often than right
# the depth score mostly measures a model failing, not how it computes the answer.
MIN_ACCURACY = 0.5


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
    """Split points for one example (paper §3.6: MQuAKE at the answer start, MATH inside it).

    The answer-start split is the position predicting the first answer token
    (``start + ANSWER_START_OFFSET``), so that prediction is measured (see the constant)."""
    start = length - answer_length
    offsets = list(range(0, answer_length - 4, settings.split_stride))
    rule = settings.split_rule
    if rule == "auto":
        rule = "in-answer" if offsets else "answer-start"
    if rule == "answer-start" or not offsets:
        return [max(start + ANSWER_START_OFFSET, 0)]
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


def answer_correct(
    adapter, final: torch.Tensor, answer_ids: torch.Tensor, first: int
) -> tuple[bool, bool]:
    """(every answer token, the first answer token) is the top-1 of the clean logits at the
    position predicting it (``first`` predicts the first; from the clean trace's last residual,
    no extra forward pass)."""
    hits = adapter.logits(final[first : first + answer_ids.numel()]).argmax(dim=-1) == answer_ids
    return bool(hits.all()), bool(hits[0])


@state_type
@dataclass
class LevelState:
    effect: Aggregates = field(default_factory=Aggregates)
    output: Aggregates = field(default_factory=Aggregates)
    correct: int = 0
    first_correct: int = 0  # examples whose first answer token is the clean top-1
    n: int = 0
    # {"prompt", "effect", "output_change", "first_token_correct"}
    per_example: list = field(default_factory=list)


@state_type
@dataclass
class DepthScoreState:
    levels: dict = field(default_factory=dict)  # level key -> LevelState
    split_points: dict = field(default_factory=dict)
    tally: Tally = field(default_factory=Tally)

    def level(self, level: object) -> LevelState:
        key = "all" if level is None else str(level)
        return self.levels.setdefault(key, LevelState())


# ------------------------------------------------------------------------------ the verdict

OUTCOMES = {
    "more": "harder problems use more depth",
    "less": "harder problems use less depth",
    "equivalent": "harder problems do not use more depth",
    "inconclusive": "inconclusive",
}


@dataclass(frozen=True)
class LevelMean:
    """A level's depth score from the mean over its examples, with its bootstrap draws."""

    layer: bootstrap.Interval  # from effects on later layers
    output: bootstrap.Interval  # from the output change
    layer_draws: np.ndarray  # [draws]
    n: int


def level_mean(entry: dict, seed: int = bootstrap.SEED) -> LevelMean | None:
    """The depth score of the level's mean effect matrix (and mean output change) over its
    examples, and its 90 % interval over resampled examples (None: no per-example matrices).

    Importance is linear in the matrix, so the score is a ratio of two means over the examples: a
    smooth function of them, whose bootstrap is sound (the max over examples is not). It equals
    the run's ``mean`` aggregate."""
    examples = entry.get("per_example") or []
    if not examples:
        return None
    effects = np.stack([np.asarray(e["effect"], dtype=float) for e in examples])
    outputs = np.stack([np.asarray(e["output_change"], dtype=float) for e in examples])
    layer, output = resampled_depth_scores(effects, outputs, "mean", np.ones((1, len(examples))))
    draws_layer, draws_output = resampled_depth_scores(
        effects, outputs, "mean", bootstrap.draws(len(examples), seed=seed)
    )

    def value(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None

    return LevelMean(
        bootstrap.interval_of(value(layer[0]), draws_layer),
        bootstrap.interval_of(value(output[0]), draws_output),
        draws_layer,
        len(examples),
    )


def first_token_accuracy(entry: dict) -> float | None:
    """Share of the level's examples whose first answer token is the clean top-1 (None: the
    result was saved before it was recorded)."""
    value = entry.get("first_token_accuracy")
    if isinstance(value, int | float):
        return float(value)
    flags = [e.get("first_token_correct") for e in entry.get("per_example") or []]
    if not flags or any(flag is None for flag in flags):
        return None
    return float(np.mean(flags))


def level_positions(levels: list[str]) -> np.ndarray:
    """Where each level sits on the trend's x axis: its number when every level is a number
    (hop count, MATH level), else its rank 0, 1, 2, … in the result's order."""
    if all(level.lstrip("-").isdigit() for level in levels):
        return np.array([int(level) for level in levels], dtype=float)
    return np.arange(len(levels), dtype=float)


def slope_weights(x: np.ndarray) -> np.ndarray:
    """``w`` with ``w @ y`` the least-squares slope of ``y`` against ``x``."""
    centred = np.asarray(x, dtype=float) - np.mean(x)
    return centred / float(centred @ centred)


def trend(
    x: np.ndarray, scores: np.ndarray, draws: np.ndarray
) -> tuple[float, np.ndarray, float, np.ndarray]:
    """(slope, its draws, predicted change from the first to the last ``x``, its draws) of the
    least-squares line through ``scores[k]`` at ``x[k]``; ``draws`` ``[k, resamples]`` holds each
    level's independently resampled scores (a draw with a NaN score gives a NaN slope)."""
    weights = slope_weights(x)
    span = float(np.max(x) - np.min(x))
    slope = float(weights @ np.asarray(scores, dtype=float))
    slope_draws = weights @ np.asarray(draws, dtype=float)
    return slope, slope_draws, slope * span, slope_draws * span


@dataclass
class _Task:
    """One result's part of a difficulty report, before the tests are made together."""

    result: Result
    n_layers: int | None
    levels: dict  # level -> entry (levels with a saved depth score)
    means: dict  # level -> LevelMean | None
    accuracy: dict  # level -> first-answer-token accuracy | None
    kept: list = field(default_factory=list)  # levels in the trend
    left_out: list = field(default_factory=list)
    status: str = "untested"  # "tested", "no-trend" (< 2 levels solved), "untested" (old result)
    slope: float | None = None
    slope_draws: np.ndarray | None = None
    change: float | None = None
    change_draws: np.ndarray | None = None


def _prepare(result: Result, n_layers: int | None) -> _Task | None:
    levels = {
        level: entry
        for level, entry in result.data["levels"].items()
        if isinstance(entry.get("depth_score_layer"), int | float)
    }
    if not levels:
        return None
    if not n_layers:  # the model's depth as the result's matrices show it
        first = next(iter(levels.values()))
        examples = first.get("per_example") or [{}]
        matrix = first.get("importance_layer", examples[0].get("output_change"))
        n_layers = len(matrix) if isinstance(matrix, list | tuple) else None
    # each level its own seed: its examples are other examples, so its draws must be independent
    means = {
        level: level_mean(entry, seed=bootstrap.SEED + i)
        for i, (level, entry) in enumerate(levels.items())
    }
    accuracy = {level: first_token_accuracy(entry) for level, entry in levels.items()}
    task = _Task(result, n_layers, levels, means, accuracy)
    if not all(means.values()) or any(a is None for a in accuracy.values()) or not n_layers:
        return task  # saved before the per-example data the test needs
    task.kept = [level for level in levels if accuracy[level] >= MIN_ACCURACY]
    task.left_out = [level for level in levels if level not in task.kept]
    kept = [level for level in task.kept if means[level].layer.value is not None]
    if len(kept) < 2:
        task.status = "no-trend"
        return task
    task.kept = kept
    task.left_out = [level for level in levels if level not in kept]
    x = level_positions(list(levels))[[list(levels).index(level) for level in kept]]
    scores = np.array([means[level].layer.value for level in kept]) / n_layers
    draws = np.stack([means[level].layer_draws for level in kept]) / n_layers
    task.slope, task.slope_draws, task.change, task.change_draws = trend(x, scores, draws)
    task.status = "tested"
    return task


def outcome_of(difference: differences.Difference) -> str:
    """``more``/``less`` when the (Holm-corrected) test shows a change, ``equivalent`` when its
    90 % interval lies inside the margin, else ``inconclusive``."""
    found = difference.outcome
    if found == "differ":
        return "more" if difference.interval.low > 0 else "less"
    return found


def difficulty_report(
    results: Mapping[str, Result], n_layers: int | None = None
) -> dict[str, Finding | None]:
    """The difficulty finding of every result (one task each), their trend tests Holm-corrected
    together (one test per task). ``n_layers`` None: each result's own depth."""
    tasks = {
        name: _prepare(result, n_layers or result.model.get("n_layers"))
        for name, result in results.items()
    }
    tested = {name: task for name, task in tasks.items() if task and task.status == "tested"}
    tests = differences.compare_all(
        {
            name: (0.0, task.change, np.zeros_like(task.change_draws), task.change_draws)
            for name, task in tested.items()
        },
        margin=differences.DEPTH_MARGIN,
        unit="relative depth",
    )
    return {
        name: None if task is None else _finding(task, tests.get(name), len(tested))
        for name, task in tasks.items()
    }


def difficulty(result: Result, n_layers: int | None) -> Finding | None:
    """Depth score per difficulty level (mean over the level's examples, with its interval; the
    paper's max beside it), and whether it rises with the level over the levels the model solves
    (the verdict's rule; docs/depth-score.md)."""
    return difficulty_report({result.analysis: result}, n_layers)[result.analysis]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _levels_text(levels: list[str]) -> str:
    """``level 3``, ``levels 2, 3`` or ``no level``."""
    if not levels:
        return "no level"
    return ("level " if len(levels) == 1 else "levels ") + ", ".join(levels)


def _finding(task: _Task, test: differences.Difference | None, n_tests: int) -> Finding:
    result, n_layers, levels = task.result, task.n_layers, task.levels
    aggregate = result.settings.get("aggregate", "max")
    names = list(levels)
    first, last = names[0], names[-1]
    saved = {level: float(entry["depth_score_layer"]) for level, entry in levels.items()}
    paper = {
        level: entry.get("depth_score_layer_max", saved[level] if aggregate == "max" else None)
        for level, entry in levels.items()
    }
    with_means = all(task.means.values())
    scores = (
        {level: task.means[level].layer.value for level in names} if with_means else dict(saved)
    )

    def shown(level: str) -> str:
        found = task.means[level]
        if found is None or found.layer.value is None:
            return f"level {level}: {saved[level]:.2f} ({rel(saved[level], n_layers)})"
        max_text = "" if paper[level] is None else f"; max {paper[level]:.2f}"
        acc = task.accuracy[level]
        acc_text = "" if acc is None else f"; {_percent(acc)} first token right"
        return (
            f"level {level}: {found.layer.text(2)} ({rel(found.layer.value, n_layers)}"
            f"{max_text}{acc_text})"
        )

    listed = ", ".join(shown(level) for level in names)
    if with_means:
        basis = (
            "Depth score (0-based layer) per level, of the mean effect matrix over the level's "
            "examples [90 % interval over resampled examples] (relative depth; max: the paper's "
            "max over examples, no interval; share of examples whose first answer token is the "
            "model's top-1)"
        )
    else:
        basis = (
            f"Depth score (0-based layer, relative depth) per level, as saved ({aggregate} over "
            "examples, no interval)"
        )
    trend_details = None
    grows: bool | None = None
    outcome = "untested"
    n_text = _n_text(task)
    if task.status == "tested" and test is not None:
        outcome = outcome_of(test)
        grows = {"more": True, "less": False}.get(outcome)
        slope_interval = bootstrap.interval_of(task.slope, task.slope_draws)
        kept = task.kept
        left = (
            f"; left out: {_levels_text(task.left_out)}, first-answer-token accuracy below "
            f"{MIN_ACCURACY:.0%}"
            if task.left_out
            else ""
        )
        holm = f", Holm-corrected over {n_tests} tasks" if n_tests > 1 else ""
        said = OUTCOMES[outcome]
        margin = differences.DEPTH_MARGIN
        if outcome == "inconclusive":
            said = (
                f"inconclusive at {n_text} examples per level (neither a change nor its absence "
                f"within ±{margin} relative depth is shown)"
            )
        elif outcome == "equivalent":
            said += f" (the change's 90 % interval lies within ±{margin} relative depth)"
        elif -margin <= test.interval.low and test.interval.high <= margin:
            said += f" (by less than the ±{margin} equivalence margin)"
        trend = (
            f"; trend over the levels solved ({_levels_text(kept)}{left}): slope "
            f"{slope_interval.text(4)} relative depth per level, predicted change from level "
            f"{kept[0]} to level {kept[-1]} {test.text(3)}{holm}: {said}"
        )
        headline = {
            "more": "more depth",
            "less": "less depth",
            "equivalent": f"no more depth (within ±{margin})",
            "inconclusive": "inconclusive",
        }[outcome] + f": {test.text(3).split(' (')[0]}, level {kept[0]} → {kept[-1]}"
        trend_details = {
            "levels": kept,
            "left_out": task.left_out,
            "x": level_positions(names)[[names.index(level) for level in kept]].tolist(),
            "slope": slope_interval.as_json(),
            "change": test.as_json(),
            "n_tests_corrected": n_tests,
        }
    elif task.status == "no-trend" and len(names) < 2:
        outcome = "no-trend"
        trend = "; one level only: no trend to test"
        headline = f"one level: {task.means[first].layer.text(1)}"
    elif task.status == "no-trend":
        outcome = "no-trend"
        solved = list(task.kept)
        trend = (
            f"; no trend is tested: fewer than two levels are solved (first-answer-token accuracy "
            f"at least {MIN_ACCURACY:.0%}: {_levels_text(solved)}; left out: "
            f"{_levels_text(task.left_out)})"
        )
        headline = f"no trend: {len(solved)} of {len(names)} levels solved"
    else:
        went = saved[last] - saved[first] if len(names) > 1 else 0.0
        grows = None if len(names) < 2 else went > 0
        if with_means:
            why = (
                "this result was saved before the first answer token's accuracy was recorded "
                "(and before the answer-start split measured its prediction)"
            )
        else:
            why = "this result holds no per-example data"
        direction = "more" if went > 0 else "less"
        word = "rise" if went > 0 else "fall" if went < 0 else "stay"
        trend = (
            ""
            if len(names) < 2
            else f"; the saved scores {word} from level {first} to level {last}, but {why}, so "
            f"whether harder problems use {direction} depth is not tested (rerun depth-score)"
        )
        if with_means:
            easiest, hardest = task.means[first].layer, task.means[last].layer
            headline = f"depth score {easiest.text(1)} → {hardest.text(1)}"
        else:
            headline = f"depth score {saved[first]:.1f} → {saved[last]:.1f}"
    details = {
        "basis": "mean over examples" if with_means else f"saved {aggregate} over examples",
        "depth_score_layer": scores,
        "paper_max": paper,
        "intervals": {
            level: {kind: getattr(found, kind).as_json() for kind in ("layer", "output")}
            for level, found in task.means.items()
            if found
        },
        "first_token_accuracy": task.accuracy,
        "min_accuracy": MIN_ACCURACY,
        "margin": differences.DEPTH_MARGIN,
        "outcome": outcome,
        "grows": grows,
        "trend": trend_details,
        "change": trend_details["change"] if trend_details else None,
        "split_rule": result.data.get("split_rule"),
        "answer_start_offset": result.data.get("answer_start_offset", 0),
    }
    return Finding(
        key="difficulty",
        title="Depth vs difficulty",
        headline=headline,
        sentence=f"{basis}: {listed}{trend}.",
        layer=None,
        relative_depth=None,
        details=details,
        figures=[f"{result.analysis}_summary_{aggregate}"],
        analyses=[result.analysis],
    )


def _n_text(task: _Task) -> str:
    counts = sorted({task.means[level].n for level in task.kept if task.means.get(level)})
    if not counts:
        return "?"
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


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
        # the answer-start offset is part of the fingerprint: results split at the answer itself
        # (saved before the offset existed) are recomputed, not reused
        return {
            "split_rule": chosen_split_rule(settings.split_rule, data)[0],
            "answer_start_offset": ANSWER_START_OFFSET,
        }

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
                every, first = answer_correct(adapter, final, answer_ids, length - alen - 1)
            level.per_example.append(
                {
                    "prompt": prompt.prompt_id,
                    "effect": effect.cpu(),
                    "output_change": output.cpu(),
                    "first_token_correct": first,
                }
            )
            level.correct += every
            level.first_correct += first
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
                "first_token_accuracy": stats.first_correct / stats.n,
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
            # the answer-start split relative to the first answer position: −1 measures the
            # prediction of the first answer token (results without this key split at 0)
            "answer_start_offset": ANSWER_START_OFFSET,
            "skipped_prompts": state.tally.skipped_ids,
        }

    @classmethod
    def draw(cls, result: Result):
        return draw_depth_score(result)

    @classmethod
    def numbers(cls, result: Result) -> list[str]:
        lines = []
        aggregate = result.settings.get("aggregate", "max")
        for level, entry in result.data["levels"].items():
            layer, output = entry.get("depth_score_layer"), entry.get("depth_score_output")
            accuracy = entry.get("accuracy")
            acc = f"{accuracy:.0%}" if isinstance(accuracy, int | float) else "n/a"
            mean = entry.get("depth_score_layer_mean")
            mean_text = f"; mean over examples {_fmt(mean)}" if aggregate != "mean" else ""
            first = first_token_accuracy(entry)
            first_text = "" if first is None else f", first answer token {first:.0%}"
            lines.append(
                f"level {level}: depth score {_fmt(layer)} from layer effects, {_fmt(output)} from "
                f"output change (0-based, {aggregate} over examples){mean_text}; accuracy {acc}"
                f"{first_text}; n={entry.get('n_examples', '?')}"
            )
        return lines


def _fmt(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "n/a"


def _level_order(key: str) -> tuple:
    return (0, int(key), "") if key.lstrip("-").isdigit() else (1, 0, key)
