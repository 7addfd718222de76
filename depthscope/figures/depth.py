"""Depth usage figures: depth score vs difficulty (E9) and shallow-to-deep linear maps (E10)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from depthscope.core.result import Result
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
    for key in ("importance_output", "output_max"):  # lists once saved, tensors while in memory
        value = first.get(key)
        if value is not None and len(value):
            return len(value)
    return 2


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


def best_target_tests(data: dict) -> list[dict]:
    """The saved per-source-boundary tests of the best target ([] for a run without intervals)."""
    tests = data.get("best_target_test")
    return tests if isinstance(tests, list) else []


def _mark_best(ax, tests: list[dict]) -> None:
    """On the heatmap (embedding row/column dropped): a filled dot on each stated best target, a
    hollow square on every target tied for best where the bootstrap cannot separate them."""
    stated = [(t["best"] - 1, t["source"] - 1) for t in tests if t["stated"] and t["source"] > 0]
    tied = [
        (ell - 1, t["source"] - 1)
        for t in tests
        if not t["stated"] and t["source"] > 0
        for ell in t["tied"]
        if ell > 0
    ]
    if stated:
        x, y = zip(*stated, strict=True)
        ax.scatter(
            x,
            y,
            s=14,
            color="white",
            edgecolors="black",
            linewidths=0.5,
            zorder=3,
            label="best target (beats runner-up)",
        )
    if tied:
        x, y = zip(*tied, strict=True)
        ax.scatter(
            x,
            y,
            s=30,
            marker="s",
            facecolors="none",
            edgecolors="white",
            linewidths=0.9,
            zorder=3,
            label="tied for best (90% bootstrap)",
        )
    if stated or tied:
        ax.legend(fontsize=6, loc="lower left", framealpha=0.6)


def linear_map_heatmap(result: Result, rel: np.ndarray) -> Figure:
    """Relative error without the embedding row and column, exactly M×L: no zero padding (Fig. 8).

    With bootstrap tests saved, stated best targets are dotted and tied ones outlined."""
    source, target = map_names(result)
    body = rel[1:, 1:]
    fig, ax = new_figure(6, 4)
    image = ax.imshow(body, aspect="auto", interpolation="nearest", cmap="viridis")
    _mark_best(ax, best_target_tests(result.data))
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
    tests = {t["source"]: t for t in best_target_tests(result.data)}
    ax.plot(
        x, best[1:] / max(n_target, 1), marker="o", markersize=3, color="C0", label="best target"
    )
    tied = [
        (m, tests[m]["tied"])
        for m in range(1, n_source + 1)
        if m in tests and not tests[m]["stated"]
    ]
    for i, (m, layers) in enumerate(tied):  # the hatched span of targets tied for best
        low, high = min(layers) / max(n_target, 1), max(layers) / max(n_target, 1)
        ax.bar(
            m / max(n_source, 1),
            high - low + 0.01,
            bottom=low - 0.005,
            width=0.6 / max(n_source, 1),
            color="none",
            edgecolor="C0",
            hatch="////",
            linewidth=0.5,
            label="tied for best (90% bootstrap)" if i == 0 else None,
        )
        ax.plot(
            [m / max(n_source, 1)],
            [best[m] / max(n_target, 1)],
            marker="o",
            markersize=3,
            markerfacecolor="white",
            color="C0",
        )
    null = result.data.get("null")
    if isinstance(null, dict) and null.get("best_target") is not None:
        null_best = as_array(null["best_target"])
        ax.plot(
            x,
            null_best[1:] / max(n_target, 1),
            marker="x",
            markersize=3,
            linestyle="none",
            color="0.45",
            label="best target, random-init source",
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


def _best_errors(tests: list[dict], key: str = "rel_err") -> tuple[np.ndarray, ...]:
    """Source boundary, value, low and high of each test's ``key`` interval."""
    rows = [
        (t["source"], t[key]["value"], t[key]["low"], t[key]["high"]) for t in tests if key in t
    ]
    return tuple(np.asarray(col, dtype=float) for col in zip(*rows, strict=True))


def linear_map_best_error(result: Result) -> Figure:
    """The best map's relative error per source boundary with its 90 % bootstrap interval; the
    random-init null's best map beside it (filled: the trained source beats the null)."""
    source, target = map_names(result)
    data = result.data
    tests = best_target_tests(data)
    fig, ax = new_figure(6, 3.6)
    m, value, low, high = _best_errors(tests)
    ax.errorbar(
        m,
        value,
        yerr=[value - low, high - value],
        color="C0",
        marker="o",
        markersize=3,
        capsize=2,
        linewidth=1,
        label=f"{source} (trained)",
    )
    open_ = [i for i, t in enumerate(tests) if not t["stated"]]
    if open_:
        ax.plot(
            m[open_],
            value[open_],
            linestyle="none",
            marker="o",
            markersize=5,
            markerfacecolor="white",
            color="C0",
            label="best target tied (not stated)",
        )
    compared = data.get("null_comparison") or []
    if compared:
        nm, nvalue, nlow, nhigh = _best_errors(compared, "null_rel_err")
        ax.errorbar(
            nm + 0.15,
            nvalue,
            yerr=[nvalue - nlow, nhigh - nvalue],
            color="0.45",
            marker="x",
            markersize=3,
            capsize=2,
            linewidth=1,
            label="random-init source",
        )
        beats = [c["source"] for c in compared if c["beats_null"]]
        if beats:
            ax.plot(
                beats,
                [0.0] * len(beats),
                linestyle="none",
                marker="^",
                color="C2",
                markersize=4,
                transform=blended_transform_factory(ax.transData, ax.transAxes),
                clip_on=False,
                label="trained beats null (paired, Holm)",
            )
    index_ticks(ax, int(m.max()) + 1 if m.size else 1, "x", max_ticks=12)
    ax.set_xlabel(f"{source} boundary (0 = embeddings)")
    ax.set_ylabel("relative error of the best map")
    ax.legend(fontsize=6)
    boot = data.get("bootstrap", {})
    set_title(
        ax,
        result,
        "best map per source boundary",
        f"{int(boot.get('level', 0.9) * 100)}% bootstrap over {boot.get('n_units', '?')} held-out "
        f"{boot.get('unit', 'unit')}s; target {target}",
        name=f"{source} → {target}",
    )
    return tidy(fig)


def draw_linear_map(result: Result) -> Figures:
    """Heatmap of the relative error and the best match in relative depth (paper §3.7, Fig. 8);
    with intervals saved, the best map's error per source boundary with its interval and null."""
    rel = as_array(result.data["rel_err"])
    figures = {
        "rel_err": linear_map_heatmap(result, rel),
        "best_match": linear_map_best(result, rel),
    }
    if best_target_tests(result.data) and "rel_err" in best_target_tests(result.data)[0]:
        figures["best_error"] = linear_map_best_error(result)
    return figures
