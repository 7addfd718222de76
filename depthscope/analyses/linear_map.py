"""The card of the shallow-to-deep linear maps (E10), computed by ``depthscope map``.

Paper §3.7, Fig. 8. The fit itself lives in :mod:`depthscope.experiments.maps` (two models, streamed
statistics, an exact solve); this card is how its saved result is titled, drawn and summarised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from depthscope.analyses.card import Card, PaperRef
from depthscope.analyses.catalog import register
from depthscope.engine.stats import finite_max, finite_mean, finite_min
from depthscope.figures.depth import best_targets, draw_linear_map

if TYPE_CHECKING:
    from depthscope.results.document import Result


@register
class LinearMap(Card):
    name = "linear-map"
    title = "Linear maps from a shallow to a deep model"
    description = "closed-form maps from every layer of a shallow model to a deeper one (E10; `depthscope map`)"
    paper = PaperRef("E10", "§3.7", "Fig. 8")
    captions = {
        "rel_err": "Relative error of the best affine map from each source layer (row) to each "
        "target layer (column); a dark diagonal means layers at the same relative depth match.",
        "best_match": "For each source layer, the target layer it maps to best, both as relative "
        "depth; points on the dashed line mean the deep model is a stretched shallow one.",
    }

    @classmethod
    def draw(cls, result: Result):
        return draw_linear_map(result)

    @classmethod
    def numbers(cls, result: Result) -> list[str]:
        rel = np.asarray(result.data["rel_err"], dtype=float)
        n_source, n_target = rel.shape[0] - 1, rel.shape[1] - 1
        best = best_targets(rel, result.data)[1:] / max(n_target, 1)
        depth = np.arange(1, n_source + 1) / max(n_source, 1)
        return [
            f"best target relative depth vs source relative depth: mean |difference| "
            f"{finite_mean(np.abs(best - depth)):.3f} (0 = perfect diagonal)",
            f"lowest relative error {finite_min(rel[1:, 1:]):.3f}, "
            f"highest {finite_max(rel[1:, 1:]):.3f} (embeddings excluded)",
        ]
