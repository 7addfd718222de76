"""Layer-skipping effects on later layers and on the output: current (E3) and future (E4) tokens.

For every layer ``s`` the layer is skipped (``part="layer"``: its output := its input) or one of
its sublayers is zeroed (``"attention"``/``"mlp"``) at the intervened positions, everything after
it is recomputed, and two things are measured at the measured positions:
``effect[s, l] = max_p ‖c_l[p] − c̄_l[p]‖ / max(‖c_l[p]‖, 1e-6)`` (relative change of each later
layer's contribution) and ``output_change[s] = max_p ‖P[p] − P̄[p]‖₂`` (change of the output
distribution). Current effects intervene on ``[front, T)`` and measure everywhere; future effects
intervene on ``[front, t)`` and measure on ``[t, T)`` for sampled split points ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass

from depthscope.analyses.base import Analysis, PromptBatch, register
from depthscope.analyses.splits import splits_for
from depthscope.analyses.sweep import split_sweep
from depthscope.engine.interventions import PARTS, Knockout
from depthscope.engine.stats import Max, Mean
from depthscope.errors import DepthscopeError

AGGREGATES = ("max", "mean")


@dataclass
class EffectSettings:
    """Conventions of spec E3/E4 (paper values by default)."""

    parts: tuple = PARTS
    front: int = 1  # positions before this are never intervened on (protects BOS / first token)
    aggregate: str = "max"  # over prompts; the other is stored too
    n_splits: int = 4  # future only: split points per prompt
    split_stride: int = 8  # future only: split points are multiples of this ...
    split_margin: int = 4  # ... in [stride, T - margin)

    def __post_init__(self) -> None:
        unknown = set(self.parts) - set(PARTS)
        if unknown:
            raise ValueError(f"parts must be among {PARTS}, got {sorted(unknown)}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")
        if self.front < 0:
            raise ValueError("front must be >= 0")


class _EffectsBase(Analysis):
    Settings = EffectSettings
    future: bool

    def splits_for(self, length: int, prompt_id: int) -> list[int | None]:
        if not self.future:
            return [None]
        return splits_for(self.settings, length, seed=self.options.seed, prompt_id=prompt_id)

    def new_state(self) -> dict:
        return {
            "parts": {
                part: {"effect": (Max(), Mean()), "output": (Max(), Mean())}
                for part in self.settings.parts
            },
            "per_prompt": {part: [] for part in self.settings.parts},
            "split_points": {},
            "skipped": [],
            "n_prompts": 0,
            "n_tokens": 0,
        }

    def update(self, state: dict, batch: PromptBatch) -> None:
        trace = batch.trace
        for row, prompt_id in batch:
            length = batch.length(row)
            splits = self.splits_for(length, prompt_id)
            if not splits:
                state["skipped"].append(prompt_id)
                continue
            state["split_points"][prompt_id] = splits
            parts = self.settings.parts
            self.options.progress.start(
                f"{self.name} prompt {prompt_id}", trace.n_layers * len(parts)
            )
            for part in parts:
                effect, output = split_sweep(
                    self.lm.adapter,
                    trace,
                    row,
                    length,
                    splits,
                    self.settings.front,
                    lambda r, _trace, _prompt, part=part: Knockout(r.layers, r.positions, part),
                    read_before_edit=False,
                    with_outputs=True,
                    batch_size=self.options.batch_size,
                    progress=self.options.progress,
                )
                stats = state["parts"][part]
                for stat, value in ((stats["effect"], effect), (stats["output"], output)):
                    stat[0].add(value)
                    stat[1].add(value)
                state["per_prompt"][part].append(
                    {"prompt": prompt_id, "effect": effect.cpu(), "output_change": output.cpu()}
                )
            state["n_prompts"] += 1
            state["n_tokens"] += length

    def finish(self, state: dict) -> dict:
        if state["n_prompts"] == 0:
            raise DepthscopeError(
                f"{self.name}: no prompt was long enough for a split point "
                f"(need more than {self.settings.split_stride + self.settings.split_margin} tokens); "
                f"use longer prompts"
            )
        chosen = 0 if self.settings.aggregate == "max" else 1
        data: dict = {}
        for part, stats in state["parts"].items():
            entry = {
                "effect": stats["effect"][chosen].value,
                "output_change": stats["output"][chosen].value,
                "effect_max": stats["effect"][0].value,
                "effect_mean": stats["effect"][1].value,
                "output_change_max": stats["output"][0].value,
                "output_change_mean": stats["output"][1].value,
                "per_prompt": state["per_prompt"][part],
            }
            if part == "layer":
                data.update(entry)
            else:
                data[part] = entry
        data["split_points"] = state["split_points"]
        data["skipped_prompts"] = state["skipped"]
        return data


@register
class CurrentEffects(_EffectsBase):
    name = "current-effects"
    description = "skip each layer on all tokens: change of later layers' contributions and of the output (E3)"
    future = False


@register
class FutureEffects(_EffectsBase):
    name = "future-effects"
    description = "skip each layer on past tokens only: change at future tokens (E4)"
    future = True
