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
from depthscope.analyses.effects import AGGREGATES, concat_rows, layer_rows
from depthscope.analyses.splits import split_points
from depthscope.analyses.sweep import SweepRows, sweep
from depthscope.engine.interventions import RemoveContribution
from depthscope.engine.stats import Max, Mean

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

    def _splits(self, length: int, prompt_id: int) -> list[int]:
        s = self.settings
        return split_points(
            length,
            seed=self.options.seed,
            prompt_id=prompt_id,
            count=s.n_splits,
            stride=s.split_stride,
            margin=s.split_margin,
        )

    def update(self, state: dict, batch: PromptBatch) -> None:
        trace = batch.trace
        n_layers = trace.n_layers
        device = trace.resid.device
        for row, prompt_id in batch:
            length = batch.length(row)
            contributions = trace.contributions(row)
            clean_outputs = trace.resid[1:, row]
            splits = self._splits(length, prompt_id)
            state["split_points"][prompt_id] = splits
            variants = {"current": [None], "future": splits}
            total = n_layers * (1 + len(splits))
            self.options.progress.start(f"{self.name} prompt {prompt_id}", total)
            for variant, points in variants.items():
                if not points:
                    continue
                groups = [
                    layer_rows(n_layers, length, trace.seq_len, self.settings.front, t)
                    for t in points
                ]
                rows = concat_rows(groups)
                rows = SweepRows(
                    rows.layers.to(device), rows.positions.to(device), rows.measured.to(device)
                )

                def make(r: SweepRows, c=contributions, outs=clean_outputs) -> RemoveContribution:
                    return RemoveContribution(r.layers, r.positions, c[r.layers], outs)

                result = sweep(
                    self.lm.adapter,
                    trace,
                    row,
                    rows,
                    make,
                    read_before_edit=True,
                    outputs=None,
                    batch_size=self.options.batch_size,
                    progress=self.options.progress,
                )
                effect = result.effect.view(len(points), n_layers, n_layers).amax(dim=0)
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
