"""Depth usage figures: depth score vs difficulty (E9) and shallow-to-deep linear maps (E10)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from depthscope.engine.stats import finite_max
from depthscope.figures.common import (
    Figures,
    Series,
    as_array,
    index_ticks,
    new_figure,
    overlapping_bars,
    plain,
    set_title,
    side_colorbar,
    tidy,
)
from depthscope.figures.layers import effect_heatmap
from depthscope.figures.tokens import safe_stem

if TYPE_CHECKING:
    from depthscope.results.document import Result

AGGREGATES = ("max", "mean")

# ---------------------------------------------------------------- depth score (E9)


def level_name(result: Result, level: str) -> str:
    """Legend name: "Level 3" for difficulty levels, "3 hops" for multi-hop data (the paper's legends)."""
    source = str(result.extra.get("data_source", "")) + str(result.settings.get("data", ""))
    if level.lstrip("-").isdigit():
        return f"{level} hops" if "hop" in source.lower() else f"Level {level}"
    return plain(level)


def level_value(entry: dict, name: str, aggregate: str) -> object:
    """``name_<aggregate>`` if the result has both variants, else the run's chosen one."""
    return entry.get(f"{name}_{aggregate}", entry.get(name))


def available_aggregates(result: Result, levels: dict) -> list[str]:
    first = next(iter(levels.values()))
    found = [a for a in AGGREGATES if f"importance_layer_{a}" in first]
    return found or [str(result.settings.get("aggregate", "max"))]


def importance_bars(
    result: Result, levels: dict, key: str, aggregate: str, ylabel: str, what: str
) -> Figure:
    """Per-layer importance of every level overlaid, shortest bar in front."""
    series: list[Series] = [
        (level_name(result, level), as_array(level_value(entry, key, aggregate)), f"C{i % 10}")
        for i, (level, entry) in enumerate(levels.items())
    ]
    n = len(series[0][1])
    fig, ax = new_figure(6, 3)
    overlapping_bars(ax, series, width=0.9)
    ax.set_xlim(-1, n)
    top = max(finite_max(values, 0.0) for _, values, _ in series)
    ax.set_ylim(0, 1.0 if top <= 1 else top * 1.05)
    ax.set_xlabel("Layer")
    ax.set_ylabel(ylabel)
    index_ticks(ax, n)
    set_title(ax, result, what, f"{aggregate} over the examples of each level")
    return tidy(fig)


def depth_summary(result: Result, levels: dict, aggregate: str) -> Figure:
    """Depth score per level from layer effects and from output (logit) effects, accuracy above."""
    fig, ax = new_figure(6, 2.6)
    names = list(levels)
    x = np.arange(len(names)) * 3
    for offset, (key, label, color) in enumerate(
        (("depth_score_layer", "Layer effect", "C0"), ("depth_score_output", "Logit effect", "C1"))
    ):
        values = [level_value(levels[n], key, aggregate) for n in names]
        ax.bar(
            x + offset,
            as_array([np.nan if v is None else v for v in values]),
            color=color,
            label=label,
        )
    n_layers = int(result.model.get("n_layers") or 0) or _levels_depth(levels)
    ax.set_ylim(0, max(1, n_layers - 1) * 1.18)
    above = blended_transform_factory(ax.transData, ax.transAxes)
    for position, name in zip(x, names, strict=True):
        accuracy = levels[name].get("accuracy")
        text = f"acc {accuracy:.0%}" if isinstance(accuracy, int | float) else "acc n/a"
        text += f", n={levels[name].get('n_examples', '?')}"
        ax.text(position + 0.5, 0.97, text, transform=above, ha="center", va="top", fontsize=6)
    ax.set_xlim(-1, 3 * len(names) - 1)  # bars keep their width however few levels there are
    ax.set_xticks(x + 0.5)
    ax.set_xticklabels([level_name(result, n) for n in names], fontsize=8)
    ax.set_ylabel("Depth score")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)  # never over a bar
    set_title(
        ax,
        result,
        "depth score per level",
        f"{aggregate} over examples; 0-based layers (paper's 1-based = +1); teacher-forced accuracy",
    )
    return tidy(fig)


def _levels_depth(levels: dict) -> int:
    first = next(iter(levels.values()))
    return len(first.get("importance_output") or first.get("output_max") or [0, 0])


def draw_depth_score(result: Result) -> Figures:
    """Per-level effect heatmaps, overlaid importance bars and depth score per level (paper §3.6, Fig. 7)."""
    levels: dict = result.data["levels"]
    if not levels:
        return {}
    chosen = str(result.settings.get("aggregate", "max"))
    figs: Figures = {}
    for level, entry in levels.items():
        matrix = entry.get(f"effect_{chosen}", entry.get("effect_max"))
        figs[f"effect_level_{safe_stem(level)}"] = effect_heatmap(
            result,
            as_array(matrix),
            f"future effect, {level_name(result, level)}",
            f"{chosen} over {entry.get('n_examples', '?')} examples; "
            "skip before a split inside the answer, measure after",
        )
    for aggregate in available_aggregates(result, levels):
        figs[f"importance_layer_{aggregate}"] = importance_bars(
            result,
            levels,
            "importance_layer",
            aggregate,
            "Mean effect on later layers",
            "layer importance from effects on later layers",
        )
        figs[f"importance_output_{aggregate}"] = importance_bars(
            result,
            levels,
            "importance_output",
            aggregate,
            "Output change norm",
            "layer importance from output change",
        )
        figs[f"summary_{aggregate}"] = depth_summary(result, levels, aggregate)
    return figs


# ---------------------------------------------------------------- linear maps (E10)


def map_names(result: Result) -> tuple[str, str]:
    data = result.data
    fallback = result.model.get("name", "model")
    return (
        plain(data.get("source_model") or f"{fallback} (source)"),
        plain(data.get("target_model") or f"{fallback} (target)"),
    )


def best_targets(rel: np.ndarray, data: dict) -> np.ndarray:
    """Best target boundary per source boundary: the saved one, else the row-wise argmin."""
    if data.get("best_target") is not None:
        return as_array(data["best_target"])
    out = np.full(rel.shape[0], np.nan)
    for row, values in enumerate(rel):
        if np.isfinite(values).any():
            out[row] = float(np.nanargmin(values))
    return out


def linear_map_heatmap(result: Result, rel: np.ndarray) -> Figure:
    """Relative error without the embedding row and column, exactly M×L: no zero padding (Fig. 8)."""
    source, target = map_names(result)
    body = rel[1:, 1:]
    fig, ax = new_figure(6, 4)
    image = ax.imshow(body, aspect="auto", interpolation="nearest", cmap="viridis")
    index_ticks(ax, body.shape[1], "x", max_ticks=12)
    index_ticks(ax, body.shape[0], "y", max_ticks=12)
    ax.set_xlabel(f"{target} Layer (target)")
    ax.set_ylabel(f"{source} Layer (source)")
    side_colorbar(fig, ax, image, "Relative error")
    set_title(
        ax,
        result,
        "linear map relative error",
        "layer l = its output; embeddings dropped; autoscaled",
        name=f"{source} → {target}",
    )
    return tidy(fig)


def linear_map_best(result: Result, rel: np.ndarray) -> Figure:
    """Best-matching target layer against source layer, both in relative depth, with the diagonal."""
    source, target = map_names(result)
    n_source, n_target = rel.shape[0] - 1, rel.shape[1] - 1
    best = best_targets(rel, result.data)
    fig, ax = new_figure(4.5, 4)
    ax.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1, label="same relative depth")
    x = np.arange(1, n_source + 1) / max(n_source, 1)
    ax.plot(
        x, best[1:] / max(n_target, 1), marker="o", markersize=3, color="C0", label="best target"
    )
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel(f"{source} relative depth (layer+1)/{n_source}")
    ax.set_ylabel(f"{target} relative depth (layer+1)/{n_target}")
    ax.legend(fontsize=7, loc="upper left")
    set_title(
        ax,
        result,
        "best-matching target layer",
        "lowest relative error per source layer",
        name=f"{source} → {target}",
    )
    return tidy(fig)


def draw_linear_map(result: Result) -> Figures:
    """Heatmap of the relative error and the best match in relative depth (paper §3.7, Fig. 8)."""
    rel = as_array(result.data["rel_err"])
    return {"rel_err": linear_map_heatmap(result, rel), "best_match": linear_map_best(result, rel)}
