"""The card of the shallow-to-deep linear maps (E10), computed by ``depthscope map``.

Paper §3.7, Fig. 8. The fit itself lives in :mod:`depthscope.experiments.maps` (two models, streamed
statistics, an exact solve); this card is how its saved result is titled, drawn and summarised.
"""

from __future__ import annotations

import numpy as np

from depthscope.analyses.card import Card, PaperRef
from depthscope.core.registry import register
from depthscope.core.result import Result
from depthscope.engine.stats import finite_max, finite_mean, finite_min
from depthscope.figures.depth import best_targets, draw_linear_map


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
        "depth; points on the dashed line mean the deep model is a stretched shallow one. Hollow "
        "points with a hatched span: the best targets are tied (the bootstrap over held-out texts "
        "does not separate the best from the runner-up); crosses: the random-init source's best.",
        "best_error": "Relative error of each source layer's best map with its 90% bootstrap "
        "interval over held-out texts, beside the same maps fitted from a randomly initialised "
        "source of the same architecture; triangles mark where the trained source beats it.",
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
            *uncertainty_numbers(result.data),
        ]


def _interval(record: dict) -> str:
    return f"{record['value']:.3f} [{record['low']:.3f}, {record['high']:.3f}]"


def uncertainty_numbers(data: dict) -> list[str]:
    """The bootstrap's key numbers: stated and tied best targets, and the trained source against
    the random-init null (a "no intervals" line for a result without them)."""
    boot = data.get("bootstrap")
    if not isinstance(boot, dict):
        return ["no intervals: this result predates the held-out bootstrap"]
    if not boot.get("computed"):
        return [f"no intervals: {boot.get('reason', 'too few held-out units')}"]
    tests = data.get("best_target_test") or []
    stated = [t for t in tests if t["stated"]]
    lines = [
        f"best target stated for {len(stated)} of {len(tests)} source boundaries (beats the "
        f"runner-up: paired {int(boot['level'] * 100)}% bootstrap over {boot['n_units']} held-out "
        f"{boot['unit']}s, Holm over source boundaries); tied elsewhere"
        + (
            ": "
            + ", ".join(
                f"{t['source']}→{'/'.join(map(str, t['tied']))}" for t in tests if not t["stated"]
            )
            if len(stated) < len(tests)
            else ""
        )
    ]
    if tests and "rel_err" in tests[-1]:
        last = tests[-1]
        lines.append(
            f"last source boundary {last['source']}: best target {last['best']}, relative error "
            f"{_interval(last['rel_err'])}"
        )
    compared = data.get("null_comparison") or []
    if compared:
        null = data.get("null") or {}
        beats = [c for c in compared if c["beats_null"]]
        gaps = [c["difference"]["difference"] for c in compared]
        lines.append(
            f"beyond the random-init null ({null.get('model', 'fresh weights')}): the trained "
            f"source's best map beats the null's at {len(beats)} of {len(compared)} source "
            f"boundaries (paired, Holm); null − trained best error {min(gaps):+.3f} to "
            f"{max(gaps):+.3f}; the null's best targets correlate "
            + (
                f"{null['depth_correlation']:.3f}"
                if null.get("depth_correlation") is not None
                else "(undefined)"
            )
            + " with relative depth"
        )
    return lines
