"""Per-layer figures: contributions (E2), skip effects (E3/E4), local effects (E6), logit lens (E5).

Each ``draw_*`` takes a saved :class:`Result` and returns ``{what: Figure}``; the dispatcher in
:mod:`depthscope.figures.figure_files` names the files ``<analysis>_<what>``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from depthscope.core.result import Result
from depthscope.engine.stats import finite_max, finite_min, share_above
from depthscope.figures.common import (
    ATT,
    BAR_WIDTH,
    LAYER,
    MAP_WIDTH,
    MLP,
    Figures,
    Series,
    as_array,
    cap_note,
    index_ticks,
    mark_clipped,
    model_name,
    new_figure,
    new_grid,
    overlapping_bars,
    plural,
    set_title,
    side_colorbar,
    tidy,
    wide_range,
)
from depthscope.figures.tokens import token_label, token_labels

A, M, H = r"\|a_l\|", r"\|m_l\|", r"\|h_l\|"
EFFECT_CAP = 1.0  # the paper's fixed colour scale for relative changes
PART_LABELS = {"layer": "layer skipped", "attention": "attention zeroed", "mlp": "MLP zeroed"}
PART_YLABELS = {
    "layer": "Layer skipped",
    "attention": "Attention zeroed @ layer",
    "mlp": "MLP zeroed @ layer",
}


# ---------------------------------------------------------------- contributions (E2)


def layer_bars(
    result: Result,
    series: list[Series],
    ylabel: str,
    what: str,
    caption: str,
    top: float | None = None,
    log_if_wide: bool = False,
) -> Figure:
    """The paper's 6×3 overlapping bar plot over layers, optionally with a fixed upper limit
    (clipped bars then carry their value) or a log axis when the values span orders of magnitude."""
    fig, ax = new_figure(BAR_WIDTH, 3)
    overlapping_bars(ax, series)
    ax.set_xlabel("Layer")
    ax.set_ylabel(ylabel)
    index_ticks(ax, len(series[0][1]))
    if top is not None:
        ax.set_ylim(0, top)
        mark_clipped(ax, series, top)
    elif log_if_wide and wide_range([values for _, values, _ in series]):
        ax.set_yscale("log")
        caption = f"{caption}; log scale (values span orders of magnitude)"
    if any(finite_min(values, 0.0) < 0 for _, values, _ in series):
        ax.axhline(0, color="black", linewidth=0.6, zorder=10)
    set_title(ax, result, what, caption)
    return tidy(fig)


def _mean_caption(result: Result) -> str:
    return (
        f"token-mean over {plural(result.n_prompts, 'prompt')} "
        f"({result.n_tokens} tokens, position 0 included)"
    )


def _max_caption(result: Result) -> str:
    return f"max over {result.n_tokens} tokens of {plural(result.n_prompts, 'prompt')}"


def draw_contributions(result: Result) -> Figures:
    """Norms, relative contributions and cosines of attention, MLP and layer (paper §3.1, Fig. 2)."""
    d = {k: as_array(v) for k, v in result.data.items() if k != "per_prompt"}
    rel = [
        (rf"${A}/{H}$", d["rel_att"], ATT),
        (r"$\|m_l\|/\|h_l+a_l\|$", d["rel_mlp"], MLP),
        (r"$\|a_l+m_l\|/\|h_l\|$", d["rel_layer"], LAYER),
    ]
    rel_top = 1.5 if max(finite_max(s[1], 0.0) for s in rel) > 1.5 else None
    mean, peak = _mean_caption(result), _max_caption(result)
    return {
        "mean_norms": layer_bars(
            result,
            [
                (f"${A}$", d["mean_norm_att"], ATT),
                (f"${M}$", d["mean_norm_mlp"], MLP),
                (f"${H}$", d["mean_norm_resid"], LAYER),
            ],
            "Mean Norm",
            "norms of sublayer outputs and residual",
            mean,
            log_if_wide=True,
        ),
        "max_norms": layer_bars(
            result,
            [
                (f"${A}$", d["max_norm_att"], ATT),
                (f"${M}$", d["max_norm_mlp"], MLP),
                (f"${H}$", d["max_norm_resid"], LAYER),
            ],
            "Max Norm",
            "maximum norms",
            peak,
            log_if_wide=True,
        ),
        "mean_relative_contribution": layer_bars(
            result, rel, "Relative contribution", "relative contribution", mean, rel_top
        ),
        "max_relative_contribution": layer_bars(
            result,
            [
                (rf"${A}/{H}$", d["max_rel_att"], ATT),
                (r"$\|m_l\|/\|h_l+a_l\|$", d["max_rel_mlp"], MLP),
            ],
            "Max relative contribution",
            "maximum relative contribution",
            peak,
            2.0,
        ),
        "avg_cossims": layer_bars(
            result,
            [
                (r"$\cos(a_l, h_l)$", d["cos_att"], ATT),
                (r"$\cos(m_l, h_l+a_l)$", d["cos_mlp"], MLP),
                (r"$\cos(a_l+m_l, h_l)$", d["cos_layer"], LAYER),
            ],
            "Cosine similarity",
            "cosine similarity with the residual",
            mean + "; <0 erases, >0 strengthens",
        ),
        "avg_io_cossims": layer_bars(
            result,
            [(r"$\cos(h_{l+1}, h_l)$", d["cos_io"], LAYER)],
            "Cosine similarity",
            "cosine of layer output and input",
            mean,
        ),
    }


# ---------------------------------------------------------------- skip effects (E3, E4, E6)


def effect_heatmap(
    result: Result,
    matrix: np.ndarray,
    what: str,
    caption: str,
    ylabel: str = "Layer skipped",
) -> Figure:
    """The paper's skip heatmap: row = intervened layer, column = measured layer, 0..1 viridis."""
    n = max(matrix.shape)
    fig, ax = new_figure(MAP_WIDTH, min(9.0, 3 * max(1.0, n / 40)))
    draw_matrix(fig, ax, matrix)
    ax.set_xlabel("Effect @ layer")
    ax.set_ylabel(ylabel)
    note = cap_note(matrix, EFFECT_CAP)
    set_title(ax, result, what, f"{caption}\n{note}" if note else caption)
    return tidy(fig)


def draw_matrix(
    fig: Figure, ax: Axes, matrix: np.ndarray, colorbar: bool = True, max_ticks: int = 12
) -> None:
    """``imshow`` with the paper's fixed 0..1 scale, origin top-left and thinned layer ticks.

    Values above 1 are drawn at the cap; the colour bar then gets an arrow (``extend="max"``) and
    the caption says how many cells (see :func:`cap_note`).
    """
    image = ax.imshow(matrix, vmin=0, vmax=EFFECT_CAP, cmap="viridis", interpolation="nearest")
    index_ticks(ax, matrix.shape[1], "x", max_ticks=max_ticks)
    index_ticks(ax, matrix.shape[0], "y", max_ticks=max_ticks)
    if colorbar:
        extend = "max" if share_above(matrix, EFFECT_CAP) > 0 else "neither"
        side_colorbar(fig, ax, image, "Relative change", extend=extend)


def output_bars(result: Result, values: np.ndarray, what: str, caption: str) -> Figure:
    """Output change per skipped layer (the paper's Fig. 17 bars)."""
    fig, ax = new_figure(BAR_WIDTH, 3)
    ax.bar(np.arange(len(values)), values, color="C0", width=0.8)
    ax.set_xlim(-1, len(values))
    ax.set_xlabel("Layer")
    ax.set_ylabel("Output change norm")
    index_ticks(ax, len(values))
    set_title(ax, result, what, caption)
    return tidy(fig)


def effect_parts(data: dict) -> list[tuple[str, dict]]:
    """(part, block) for every part that was run; the layer part lives at the top level."""
    parts = [("layer", data)] if "effect" in data else []
    return parts + [(p, data[p]) for p in ("attention", "mlp") if isinstance(data.get(p), dict)]


def _effects_caption(result: Result, future: bool) -> str:
    aggregate = result.settings.get("aggregate", "max")
    caption = f"{aggregate} over {plural(result.n_prompts, 'prompt')}"
    if future:
        splits = result.settings.get("n_splits")
        each = f"≤{splits}" if splits else "sampled"
        caption += f", max over {each} split points each; skip before, measure after the split"
    else:
        front = result.settings.get("front", 1)
        where = f"positions ≥{front}" if front else "all positions"
        caption += f", skipped on {where}, measured everywhere"
    return caption


def _position_mean_caption(result: Result, future: bool) -> str:
    where = "positions and split points" if future else "positions"
    return (
        f"mean over the measured {where} of each prompt, then mean over "
        f"{plural(result.n_prompts, 'prompt')} (the paper's figure takes the max of both)"
    )


def per_prompt_grid(result: Result, entries: list[dict], what: str, note: str) -> Figure:
    """Up to four single-prompt matrices side by side (the paper's Fig. 13): no max over prompts."""
    shown = entries[:4]
    ids = [str(e.get("prompt", i)) for i, e in enumerate(shown)]
    which = (
        f"prompts {', '.join(ids)} of {len(entries)}"
        if len(entries) > len(shown)
        else (f"all {len(entries)} prompts")
    )
    fig, axes = new_grid(3.0 * len(shown) + 0.6, 3.2, len(shown))
    for index, (ax, entry) in enumerate(zip(axes, shown, strict=True)):
        last = index == len(shown) - 1
        draw_matrix(fig, ax, as_array(entry["effect"]), colorbar=last, max_ticks=8)
        ax.set_title(f"prompt {entry.get('prompt', index)}", fontsize=8)
        ax.set_xlabel("Effect @ layer")
        if index == 0:
            ax.set_ylabel("Layer skipped")
    clipped = cap_note([as_array(e["effect"]) for e in shown], EFFECT_CAP)
    fig.suptitle(
        f"{model_name(result)}: {what}\nsingle prompts ({which}){note}"
        + (f"\n{clipped}" if clipped else ""),
        fontsize=8.5,
    )
    return tidy(fig)


def draw_effects(result: Result) -> Figures:
    """Heatmap and output-change bars for every part run (paper §3.2, Fig. 3, 17)."""
    future = result.analysis == "future-effects"
    tokens = "future tokens" if future else "all tokens"
    caption = _effects_caption(result, future)
    figs: Figures = {}
    for part, block in effect_parts(result.data):
        label = PART_LABELS[part]
        if "effect_position_mean" in block:
            # first in the report: a max over positions saturates (most cells at the cap), the
            # mean over them shows where skipping a layer changes later layers typically
            figs[f"effect_{part}_position_mean"] = effect_heatmap(
                result,
                as_array(block["effect_position_mean"]),
                f"effect on later layers, {label}, {tokens}",
                _position_mean_caption(result, future),
                PART_YLABELS[part],
            )
        figs[f"effect_{part}"] = effect_heatmap(
            result,
            as_array(block["effect"]),
            f"effect on later layers, {label}, {tokens}",
            caption,
            PART_YLABELS[part],
        )
        figs[f"output_change_{part}"] = output_bars(
            result,
            as_array(block["output_change"]),
            f"output change, {label}, {tokens}",
            caption,
        )
        if "output_change_position_mean" in block:
            figs[f"output_change_{part}_position_mean"] = output_bars(
                result,
                as_array(block["output_change_position_mean"]),
                f"output change, {label}, {tokens}",
                _position_mean_caption(result, future),
            )
    layer_prompts = result.data.get("per_prompt") if "effect" in result.data else None
    if layer_prompts:
        figs["per_prompt_layer"] = per_prompt_grid(
            result,
            layer_prompts,
            f"effect on later layers, layer skipped, {tokens}",
            " (max over split points only)" if future else "",
        )
    return figs


def draw_local_effects(result: Result) -> Figures:
    """Direct (non-propagated) layer-to-layer effects, all tokens and future tokens (paper §3.4, Fig. 5)."""
    aggregate = result.settings.get("aggregate", "max")
    figs: Figures = {}
    for variant, tokens in (("current", "all tokens"), ("future", "future tokens")):
        if variant not in result.data:
            continue
        caption = (
            f"{aggregate} over {plural(result.n_prompts, 'prompt')}; "
            "the skipped layer's contribution removed from all later inputs (no propagation)"
        )
        figs[variant] = effect_heatmap(
            result, as_array(result.data[variant]), f"local (direct) effects, {tokens}", caption
        )
    return figs


# ---------------------------------------------------------------- logit lens (E5)


def draw_logit_lens(result: Result) -> Figures:
    """KL to the final distribution and top-k overlap of the lens at each layer's input."""
    k = result.settings.get("k", 5)
    direction = result.settings.get("kl_direction", "lens||final").replace("||", "‖")
    prompts = plural(result.n_prompts, "prompt")
    if result.settings.get("weighting", "prompt") == "prompt":
        mean = f"mean over {prompts} (each prompt weighted equally)"
    else:
        mean = f"token-mean over {prompts} ({result.n_tokens} tokens)"
    panels = (
        ("kl", "kl_div", "KL Divergence", f"logit lens KL({direction})", None),
        ("topk_overlap", "topk_overlaps", "Overlap", f"logit lens top-{k} overlap with final", 1.0),
    )
    figs: Figures = {}
    tuned = result.data.get("tuned") or {}
    for key, stem, ylabel, what, top in panels:
        if key not in result.data:
            continue
        values = as_array(result.data[key])
        fig, ax = new_figure(BAR_WIDTH, 2.6)
        if key in tuned:  # both lenses, side by side at every boundary
            tuned_values = as_array(tuned[key])
            x = np.arange(len(values))
            ax.bar(x - 0.2, values, color="C0", width=0.4, label="logit lens")
            ax.bar(
                x[: len(tuned_values)] + 0.2,
                tuned_values,
                color="C3",
                width=0.4,
                label="tuned lens",
            )
            ax.legend(fontsize=7)
            what = what.replace("logit lens", "logit and tuned lens")
        else:
            ax.bar(np.arange(len(values)), values, color="C0", width=0.8)
        ax.set_xlim(-1, len(values))
        if top is not None:
            ax.set_ylim(0, top)
        ax.set_xlabel("Layer (input; 0 = embedding)")
        ax.set_ylabel(ylabel)
        index_ticks(ax, len(values))
        set_title(ax, result, what, mean)
        figs[stem] = tidy(fig)
    for table in result.data.get("top_tokens") or []:
        figs[f"tokens_prompt{table.get('prompt', 0)}"] = lens_token_table(result, table)
    for table in tuned.get("top_tokens") or []:
        figs[f"tokens_tuned_prompt{table.get('prompt', 0)}"] = lens_token_table(result, table)
    return figs


LENS_POSITIONS = 24  # positions shown in a per-position lens table (the last ones)


def lens_token_table(result: Result, table: dict) -> Figure:
    """Top-1 token of every layer's readout at the last positions, coloured by its probability."""
    words = table["tokens"]
    probs = as_array(table["probs"])[..., 0]  # [L+1, T]
    n_rows, length = probs.shape
    first = max(0, length - LENS_POSITIONS)
    shown = probs[:, first:]
    fig, ax = new_figure(min(18.0, 1.0 + 0.62 * shown.shape[1]), min(16.0, 0.9 + 0.24 * n_rows))
    image = ax.imshow(shown, origin="lower", aspect="auto", vmin=0, vmax=1, cmap="Blues")
    size = 6 if shown.shape[1] <= 16 else 5
    for layer in range(n_rows):
        for column in range(shown.shape[1]):
            word = token_label(words[layer][first + column][0], position=1)[:8]
            dark = shown[layer, column] > 0.6
            ax.text(
                column,
                layer,
                word,
                ha="center",
                va="center",
                fontsize=size,
                color="white" if dark else "black",
            )
    inputs = table.get("input_tokens") or []
    labels = token_labels(list(inputs))[first:length]
    ax.set_xticks(range(shown.shape[1]))
    ax.set_xticklabels(
        labels if len(labels) == shown.shape[1] else range(first, length),
        rotation=45,
        ha="right",
        fontsize=6,
    )
    ax.set_yticks(range(n_rows))
    ax.set_yticklabels([str(i) for i in range(n_rows - 1)] + ["out"], fontsize=6)
    ax.set_ylabel("Layer input (0 = embedding; out = model output)")
    side_colorbar(fig, ax, image, "Top-1 probability")
    note = f"last {shown.shape[1]} of {length} positions" if first else f"all {length} positions"
    set_title(
        ax,
        result,
        f"logit lens per position, prompt {table.get('prompt', 0)}",
        f"most likely next token at each layer; {note}",
    )
    return tidy(fig)
