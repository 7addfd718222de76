"""Local (direct, non-propagated) layer-to-layer effects (E6), current and future tokens.

Paper §3.4, Fig. 5. Row ``s`` removes layer ``s``'s clean contribution from the input of every later
layer at the intervened positions and feeds every layer the clean residual elsewhere, so nothing
propagates: ``effect[s, l] = max_p ‖c̄_l[p] − c_l[p]‖ / max(‖c_l[p]‖, 1e-6)`` is the relative change
of layer ``l``'s own recomputed contribution when it alone stops seeing ``c_s``. Current: intervene
``[front, T)``, measure all; future: intervene ``[front, t)``, measure ``[t, T)`` at the same split
points as future-effects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from depthscope.analyses.base import Analysis, PromptBatch, Tally
from depthscope.analyses.card import PaperRef, Preset
from depthscope.analyses.effects import AGGREGATES, Aggregates
from depthscope.analyses.splits import SplitSettings, splits_for
from depthscope.core.registry import register
from depthscope.core.result import Result
from depthscope.data.sources import DEFAULT_SOURCE, GSM8K
from depthscope.engine.interventions import RemoveContribution
from depthscope.engine.state import state_type
from depthscope.engine.stats import relative_change
from depthscope.engine.sweep import Sweep, SweepRows, Window, run_sweep, sweep_cost
from depthscope.engine.trace import Trace
from depthscope.figures.layers import draw_local_effects

VARIANTS = ("current", "future")


@dataclass
class LocalSettings(SplitSettings):
    aggregate: str = field(
        default="max", metadata={"help": "over prompts: max (paper) or mean; both are stored"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")


def remove_contribution(rows: SweepRows, trace: Trace, prompt: int) -> RemoveContribution:
    """Row ``i`` removes layer ``rows.layers[i]``'s clean contribution from every later layer."""
    contributions = trace.contributions(prompt)
    return RemoveContribution(
        rows.layers, rows.positions, contributions[rows.layers], trace.resid[1:, prompt]
    )


LOCAL = Sweep(
    intervention=remove_contribution,
    contribution="recomputed",  # each later layer's own output, before it is reset to clean
    layer_measure=relative_change,
    output=False,
)


@state_type
@dataclass
class LocalState:
    variants: dict = field(default_factory=lambda: {v: Aggregates() for v in VARIANTS})
    counts: dict = field(default_factory=lambda: dict.fromkeys(VARIANTS, 0))
    split_points: dict = field(default_factory=dict)
    tally: Tally = field(default_factory=Tally)


@register
class LocalEffects(Analysis):
    name = "local-effects"
    title = "Local (direct) layer-to-layer effects"
    description = "direct layer-to-layer effects without propagation, all and future tokens (E6)"
    paper = PaperRef("E6", "§3.4", "Fig. 5")
    Settings = LocalSettings
    State = LocalState
    in_default_run = True
    presets = {
        "paper": Preset(
            GSM8K,
            10,
            {"front": "1", "aggregate": "max"},
            DEFAULT_SOURCE,
            "§3.4: first 10 GSM8K prompts",
        )
    }
    captions = {
        "": "Row = layer whose contribution is removed from every later layer's input (no "
        "propagation), column = later layer; bright spots are pairs of layers where the later one "
        "reads the earlier one directly.",
    }

    def prompt_cost(self, length: int, prompt_id: int) -> float:
        splits = splits_for(self.settings, length, seed=self.options.seed, prompt_id=prompt_id)
        windows = [Window((None,), self.settings.front)]
        windows += [Window(tuple(splits), self.settings.front)] if splits else []
        return sum(sweep_cost(length, w, self.lm.adapter, LOCAL.output) for w in windows)

    def update(self, state: LocalState, batch: PromptBatch) -> None:
        trace = batch.trace
        for prompt in self.prompts(state, batch):
            splits = splits_for(
                self.settings, prompt.length, seed=self.options.seed, prompt_id=prompt.prompt_id
            )
            state.split_points[prompt.prompt_id] = splits
            variants = {"current": [None], "future": splits}
            self.options.progress.start(
                f"{self.name} prompt {prompt.prompt_id}", 2 * trace.n_layers
            )
            for variant, points in variants.items():
                if not points:
                    self.options.progress.advance(trace.n_layers)
                    continue
                effect = run_sweep(
                    self.lm.adapter,
                    trace,
                    prompt.row,
                    prompt.length,
                    Window(tuple(points), self.settings.front),
                    LOCAL,
                    batch_size=self.options.batches,
                    progress=self.options.progress,
                ).effect
                state.variants[variant].add(effect)
                state.counts[variant] += 1

    def finish(self, state: LocalState) -> dict:
        self.require_some(state, "use longer prompts or a smaller front")
        chosen = self.settings.aggregate
        data: dict = {
            "split_points": dict(sorted(state.split_points.items())),
            "n_prompts_per_variant": state.counts,
        }
        for variant in VARIANTS:
            stats = state.variants[variant]
            if state.counts[variant]:
                data[variant] = stats.value(chosen)
                data[f"{variant}_max"] = stats.value("max")
                data[f"{variant}_mean"] = stats.value("mean")
        return data

    @classmethod
    def draw(cls, result: Result):
        return draw_local_effects(result)

    @classmethod
    def numbers(cls, result: Result) -> list[str]:
        """The strongest direct dependencies between distinct layers."""
        lines = []
        for variant in VARIANTS:
            if variant not in result.data:
                continue
            matrix = np.asarray(result.data[variant], dtype=float)
            upper = np.where(np.triu(np.ones_like(matrix, dtype=bool), k=1), matrix, np.nan)
            if not np.isfinite(upper).any():
                continue
            flat = np.argsort(np.nan_to_num(upper, nan=-np.inf), axis=None)[::-1][:3]
            pairs = [np.unravel_index(i, matrix.shape) for i in flat]
            shown = ", ".join(f"{s}→{t} ({matrix[s, t]:.2f})" for s, t in pairs)
            lines.append(f"{variant} tokens: strongest direct effects (skipped→affected) {shown}")
        return lines
