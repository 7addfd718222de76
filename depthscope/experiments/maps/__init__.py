"""Linear maps from a shallow model's residual stream to a deep model's (paper E10), solved exactly."""

from __future__ import annotations

from depthscope.experiments.maps.align import AlignedText, Aligner, align_offsets, same_vocabulary
from depthscope.experiments.maps.fit_maps import fit_linear_maps, split_texts, target_groups
from depthscope.experiments.maps.intervals import UnitSums, map_uncertainty
from depthscope.experiments.maps.ridge import AffineMaps, HeldOutMetrics, MapStatistics, solve

__all__ = [
    "AffineMaps",
    "AlignedText",
    "Aligner",
    "HeldOutMetrics",
    "MapStatistics",
    "UnitSums",
    "align_offsets",
    "fit_linear_maps",
    "map_uncertainty",
    "same_vocabulary",
    "solve",
    "split_texts",
    "target_groups",
]
