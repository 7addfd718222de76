"""Local (direct, non-propagated) layer-to-layer effects (spec E6), current and future.

Row ``s`` removes layer ``s``'s clean contribution from the input of every later layer at the
intervened positions and feeds every layer the clean residual elsewhere, so nothing propagates:
``effect[s, l]`` is the relative change of layer ``l``'s own recomputed contribution when it alone
stops seeing ``c_s``. Current: intervene ``[front, T)``, measure all; future: intervene
``[front, t)``, measure ``[t, T)`` at the same split points as future-effects.
"""

from __future__ import annotations

from dataclasses import dataclass

from depthscope.analyses.base import Analysis, PromptBatch, register
from depthscope.analyses.effects import AGGREGATES
from depthscope.analyses.splits import splits_for
from depthscope.analyses.sweep import SweepRows, split_sweep
from depthscope.engine.interventions import RemoveContribution
from depthscope.engine.stats import Max, Mean
from depthscope.engine.trace import Trace

VARIANTS = ("current", "future")


@dataclass
class LocalSettings:
    front: int = 1
    aggregate: str = "max"
    n_splits: int = 4
    split_stride: int = 8
    split_margin: int = 4

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")


def remove_contribution(rows: SweepRows, trace: Trace, prompt: int) -> RemoveContribution:
    """Row ``i`` removes layer ``rows.layers[i]``'s clean contribution from every later layer."""
    contributions = trace.contributions(prompt)
    return RemoveContribution(
        rows.layers, rows.positions, contributions[rows.layers], trace.resid[1:, prompt]
    )


@register
class LocalEffects(Analysis):
    name = "local-effects"
    description = "direct layer-to-layer effects without propagation, all and future tokens (E6)"
    Settings = LocalSettings

    def new_state(self) -> dict:
        return {
            "stats": {v: (Max(), Mean()) for v in VARIANTS},
            "counts": dict.fromkeys(VARIANTS, 0),
            "split_points": {},
            "n_prompts": 0,
            "n_tokens": 0,
        }

    def update(self, state: dict, batch: PromptBatch) -> None:
        trace = batch.trace
        for row, prompt_id in batch:
            length = batch.length(row)
            splits = splits_for(self.settings, length, seed=self.options.seed, prompt_id=prompt_id)
            state["split_points"][prompt_id] = splits
            variants = {"current": [None], "future": splits}
            self.options.progress.start(f"{self.name} prompt {prompt_id}", 2 * trace.n_layers)
            for variant, points in variants.items():
                if not points:
                    continue
                effect, _ = split_sweep(
                    self.lm.adapter,
                    trace,
                    row,
                    length,
                    points,
                    self.settings.front,
                    remove_contribution,
                    read_before_edit=True,
                    with_outputs=False,
                    batch_size=self.options.batch_size,
                    progress=self.options.progress,
                )
                for stat in state["stats"][variant]:
                    stat.add(effect)
                state["counts"][variant] += 1
            state["n_prompts"] += 1
            state["n_tokens"] += length

    def finish(self, state: dict) -> dict:
        chosen = 0 if self.settings.aggregate == "max" else 1
        data: dict = {
            "split_points": state["split_points"],
            "n_prompts_per_variant": state["counts"],
        }
        for variant in VARIANTS:
            stats = state["stats"][variant]
            if state["counts"][variant]:
                data[variant] = stats[chosen].value
                data[f"{variant}_max"] = stats[0].value
                data[f"{variant}_mean"] = stats[1].value
        return data
