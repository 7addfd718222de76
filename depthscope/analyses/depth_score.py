"""Depth score vs difficulty (spec E9): do harder problems use later layers more?

Per example, each layer ``s`` is skipped on the question (positions ``[front, t)``) and the effect
is measured from the answer on (``[t, T)``), as in future-effects, with split points inside the
answer: ``t`` = the first answer position for short answers (MQuAKE rule) or up to 4 sampled
offsets ``0, 4, 8, …`` into long answers (MATH rule). Per difficulty level the matrices are
aggregated (max and mean over examples), turned into layer importances
``e_s = Σ_l R[s, l] / max(L − 1 − s, 1)`` (mean effect on later layers) and ``e_s = O[s]``
(output change), and summarised by the depth score ``Σ_s s·e_s / Σ_s e_s`` with 0-based ``s``
(the paper's 1-based score is this plus 1). Accuracy is teacher-forced: an example is correct when
the argmax prediction is right on every answer token.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from depthscope.analyses.base import Analysis, PromptBatch, register
from depthscope.analyses.effects import AGGREGATES
from depthscope.analyses.sweep import split_sweep
from depthscope.engine.interventions import Knockout
from depthscope.engine.stats import Max, Mean
from depthscope.errors import DepthscopeError

SPLIT_RULES = ("auto", "answer-start", "in-answer")


@dataclass
class DepthScoreSettings:
    split_rule: str = "auto"  # auto: in-answer when the answer has more than 4 tokens
    n_splits: int = 4
    split_stride: int = 4
    front: int = 1
    aggregate: str = "max"

    def __post_init__(self) -> None:
        if self.split_rule not in SPLIT_RULES:
            raise ValueError(f"split_rule must be one of {SPLIT_RULES}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}")


def answer_splits(
    length: int, answer_length: int, settings: DepthScoreSettings, seed: int, prompt_id: int
) -> list[int]:
    """Split points for one example (spec E9)."""
    start = length - answer_length
    offsets = list(range(0, answer_length - 4, settings.split_stride))
    rule = settings.split_rule
    if rule == "auto":
        rule = "in-answer" if offsets else "answer-start"
    if rule == "answer-start" or not offsets:
        return [start]
    random.Random(f"depthscope-depth:{seed}:{prompt_id}").shuffle(offsets)
    return [start + o for o in offsets[: settings.n_splits]]


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


@register
class DepthScore(Analysis):
    name = "depth-score"
    description = (
        "per difficulty level: future effects inside the answer, layer importance, depth score (E9)"
    )
    Settings = DepthScoreSettings
    needs_answers = True

    def new_state(self) -> dict:
        return {"levels": {}, "skipped": [], "split_points": {}, "n_prompts": 0, "n_tokens": 0}

    def _level(self, state: dict, level: object) -> dict:
        key = "all" if level is None else str(level)
        if key not in state["levels"]:
            state["levels"][key] = {
                "effect": (Max(), Mean()),
                "output": (Max(), Mean()),
                "correct": 0,
                "n": 0,
            }
        return state["levels"][key]

    def update(self, state: dict, batch: PromptBatch) -> None:
        trace = batch.trace
        n_layers = trace.n_layers
        adapter = self.lm.adapter
        for row, prompt_id in batch:
            alen = batch.answer_length(prompt_id)
            if alen is None:
                state["skipped"].append(prompt_id)
                continue
            length = batch.length(row)
            splits = answer_splits(length, alen, self.settings, self.options.seed, prompt_id)
            state["split_points"][prompt_id] = splits
            self.options.progress.start(f"{self.name} prompt {prompt_id}", n_layers)
            effect, output = split_sweep(
                adapter,
                trace,
                row,
                length,
                splits,
                self.settings.front,
                lambda r, _trace, _prompt: Knockout(r.layers, r.positions, "layer"),
                read_before_edit=False,
                with_outputs=True,
                batch_size=self.options.batch_size,
                progress=self.options.progress,
            )
            final = trace.resid[n_layers, row, :length]
            level = self._level(state, batch.prompts.levels[prompt_id])
            for stat in level["effect"]:
                stat.add(effect)
            for stat in level["output"]:
                stat.add(output)
            answer_ids = trace.input_ids[row, length - alen : length]
            with torch.no_grad():
                level["correct"] += teacher_forced_correct(
                    adapter, final, answer_ids, length - alen - 1
                )
            level["n"] += 1
            state["n_prompts"] += 1
            state["n_tokens"] += length

    def finish(self, state: dict) -> dict:
        if not state["levels"]:
            raise DepthscopeError(
                "depth-score: no example has a usable answer; use a source with answers, e.g. --data builtin:hops"
            )
        levels = {}
        for key in sorted(state["levels"], key=_level_order):
            stats = state["levels"][key]
            entry = {
                "effect_max": stats["effect"][0].value,
                "effect_mean": stats["effect"][1].value,
                "output_max": stats["output"][0].value,
                "output_mean": stats["output"][1].value,
                "accuracy": stats["correct"] / stats["n"],
                "n_examples": stats["n"],
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
            "split_points": state["split_points"],
            "skipped_prompts": state["skipped"],
        }


def _level_order(key: str) -> tuple:
    return (0, int(key), "") if key.lstrip("-").isdigit() else (1, 0, key)
