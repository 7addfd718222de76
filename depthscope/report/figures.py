"""Figures in the paper's style, drawn only from saved result documents (so they can be redrawn).

One drawing function per analysis; each returns ``{stem: Figure}`` and :func:`plot_result` saves
every figure as PNG and PDF under ``figures/`` atomically.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from depthscope.errors import DepthscopeError  # noqa: E402
from depthscope.results import Result, atomic_write_bytes  # noqa: E402

COLORS = {"attention": "C0", "mlp": "C1", "layer": "C2"}
Figures = dict[str, "plt.Figure"]


def _title(result: Result, what: str) -> str:
    return f"{result.model.get('name', 'model')}: {what}"


def _subtitle(result: Result) -> str:
    return f"{result.n_prompts} prompts, {result.n_tokens} tokens"


def _layer_ticks(ax, n: int, axis: str = "x") -> None:
    step = max(1, int(np.ceil(n / 16)))
    ticks = list(range(0, n, step))
    (ax.set_xticks if axis == "x" else ax.set_yticks)(ticks)


def overlapping_bars(ax, series: list[tuple[str, np.ndarray, str]]) -> None:
    """Bars at the same x, not stacked; at each x the shortest bar is drawn in front (paper style)."""
    values = np.stack([s[1] for s in series])
    order = np.argsort(np.argsort(-np.abs(values), axis=0), axis=0)  # rank 0 = tallest
    x = np.arange(values.shape[1])
    width = 1.1 if len(x) > 1 else 0.8
    for index, (_, data, color) in enumerate(series):
        for rank in range(len(series)):
            chosen = order[index] == rank
            ax.bar(x[chosen], data[chosen], width=width, color=color, zorder=rank + 1)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for _, _, c in series]
    ax.legend(handles, [label for label, _, _ in series], fontsize=8)
    ax.set_xlim(-0.5, values.shape[1] - 0.5)


def _bars_figure(
    result: Result, series: list[tuple[str, np.ndarray, str]], ylabel: str, what: str, ylim=None
):
    fig, ax = plt.subplots(figsize=(6, 3))
    overlapping_bars(ax, series)
    ax.set_xlabel("Layer")
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    _layer_ticks(ax, len(series[0][1]))
    ax.set_title(_title(result, what) + f"\n{_subtitle(result)}", fontsize=9)
    fig.tight_layout()
    return fig


def draw_contributions(result: Result) -> Figures:
    d = {k: np.asarray(v, dtype=float) for k, v in result.data.items()}
    att, mlp, res = r"$\|a_l\|$", r"$\|m_l\|$", r"$\|h_l\|$"
    rel = [
        (r"$\|a_l\|/\|h_l\|$", d["rel_att"], COLORS["attention"]),
        (r"$\|m_l\|/\|h_l+a_l\|$", d["rel_mlp"], COLORS["mlp"]),
        (r"$\|a_l+m_l\|/\|h_l\|$", d["rel_layer"], COLORS["layer"]),
    ]
    top = max(float(np.nanmax(s[1])) for s in rel)
    figs = {
        "mean_norms": _bars_figure(
            result,
            [
                (att, d["mean_norm_att"], "C0"),
                (mlp, d["mean_norm_mlp"], "C1"),
                (res, d["mean_norm_resid"], "C2"),
            ],
            "Mean Norm",
            "mean norms",
        ),
        "max_norms": _bars_figure(
            result,
            [
                (att, d["max_norm_att"], "C0"),
                (mlp, d["max_norm_mlp"], "C1"),
                (res, d["max_norm_resid"], "C2"),
            ],
            "Max Norm",
            "max norms",
        ),
        "mean_relative_contribution": _bars_figure(
            result,
            rel,
            "Mean relative contribution",
            "relative contribution",
            ylim=(0, 1.5) if top > 1.5 else None,
        ),
        "max_relative_contribution": _bars_figure(
            result,
            [
                (r"$\|a_l\|/\|h_l\|$", d["max_rel_att"], "C0"),
                (r"$\|m_l\|/\|h_l+a_l\|$", d["max_rel_mlp"], "C1"),
            ],
            "Max relative contribution",
            "max relative contribution",
            ylim=(0, 2),
        ),
        "avg_cossims": _bars_figure(
            result,
            [
                (r"cos$(a_l, h_l)$", d["cos_att"], "C0"),
                (r"cos$(m_l, h_l+a_l)$", d["cos_mlp"], "C1"),
                (r"cos$(a_l+m_l, h_l)$", d["cos_layer"], "C2"),
            ],
            "Cosine similarity",
            "cosine similarity with the residual",
        ),
        "avg_io_cossims": _bars_figure(
            result,
            [(r"cos$(h_{l+1}, h_l)$", d["cos_io"], "C2")],
            "Cosine similarity",
            "cos(layer output, input)",
        ),
    }
    return figs


def effect_heatmap(
    matrix: np.ndarray, title: str, xlabel: str = "Effect @ layer", ylabel: str = "Layer skipped"
):
    """The paper's skip heatmap: row = intervened layer, column = measured layer, 0..1 viridis."""
    n_rows, n_cols = matrix.shape
    fig, ax = plt.subplots(figsize=(10, 3 if n_rows <= 40 else 4))
    image = ax.imshow(matrix, vmin=0, vmax=1, interpolation="nearest", aspect="auto")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _layer_ticks(ax, n_cols, "x")
    _layer_ticks(ax, n_rows, "y")
    fig.colorbar(image, ax=ax, label="Relative change", pad=0.02)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _output_bars(result: Result, values: np.ndarray, what: str):
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(np.arange(len(values)), values, color="C0")
    ax.set_xlim(-1, len(values))
    ax.set_xlabel("Layer")
    ax.set_ylabel("Output change norm")
    _layer_ticks(ax, len(values))
    ax.set_title(_title(result, what) + f"\n{_subtitle(result)}", fontsize=9)
    fig.tight_layout()
    return fig


def draw_effects(result: Result) -> Figures:
    variant = "current" if result.analysis == "current-effects" else "future"
    aggregate = result.settings.get("aggregate", "max")
    tokens = "all tokens" if variant == "current" else "future tokens"
    figs = {}
    parts = [("layer", result.data)] if "effect" in result.data else []
    parts += [(p, result.data[p]) for p in ("attention", "mlp") if p in result.data]
    for part, block in parts:
        label = {"layer": "layer skipped", "attention": "attention zeroed", "mlp": "MLP zeroed"}[
            part
        ]
        title = (
            _title(result, f"effect on later layers, {label}, {tokens}")
            + f" ({aggregate} over {result.n_prompts} prompts)"
        )
        ylabel = (
            "Layer skipped"
            if part == "layer"
            else ("Attention zeroed" if part == "attention" else "MLP zeroed")
        )
        figs[f"{variant}_{aggregate}_effect_{part}"] = effect_heatmap(
            np.asarray(block["effect"], dtype=float), title, ylabel=ylabel
        )
        figs[f"{variant}_{aggregate}_effect_out_{part}"] = _output_bars(
            result,
            np.asarray(block["output_change"], dtype=float),
            f"output change, {label}, {tokens}",
        )
    return figs


def draw_local_effects(result: Result) -> Figures:
    aggregate = result.settings.get("aggregate", "max")
    figs = {}
    for variant, tokens in (("current", "all tokens"), ("future", "future tokens")):
        if variant in result.data:
            title = (
                _title(result, f"local (direct) effects, {tokens}")
                + f" ({aggregate} over {result.n_prompts} prompts)"
            )
            figs[f"{variant}_{aggregate}_effect_local"] = effect_heatmap(
                np.asarray(result.data[variant], dtype=float), title, ylabel="Layer removed"
            )
    return figs


def draw_logit_lens(result: Result) -> Figures:
    figs = {}
    k = result.settings.get("k", 5)
    for key, ylabel, stem in (
        ("kl", "KL Divergence", "kl_div"),
        ("topk_overlap", "Overlap", "topk_overlaps"),
    ):
        values = np.asarray(result.data[key], dtype=float)
        fig, ax = plt.subplots(figsize=(5, 2.4))
        ax.bar(np.arange(len(values)), values, color="C0")
        ax.set_xlabel("Layer")
        ax.set_ylabel(ylabel)
        ax.set_xlim(-0.5, len(values) - 0.5)
        _layer_ticks(ax, len(values))
        what = "logit lens KL(lens||final)" if key == "kl" else f"logit lens top-{k} overlap"
        ax.set_title(_title(result, what), fontsize=9)
        fig.tight_layout()
        figs[stem] = fig
    return figs


def token_labels(tokens: list[str]) -> list[str]:
    """The paper's token labels: leading-space markers shown as ``_``, BOS as "BOS"."""
    out = []
    for token in tokens:
        token = str(token)
        if token in {"<|begin_of_text|>", "<bos>", "<s>", "<|endoftext|>"}:
            out.append("BOS")
            continue
        out.append(
            token.replace("Ġ", "_").replace("▁", "_").replace("Ċ", "\\n").replace("\n", "\\n")
        )
    return out


def token_map(
    matrix: np.ndarray,
    tokens: list[str],
    title: str,
    *,
    symmetric: bool,
    colorbar: str | None,
    ylabel: str,
):
    n_rows = matrix.shape[0]
    width = max(5.0, 0.22 * len(tokens) + 1.5)
    fig, ax = plt.subplots(figsize=(min(width, 24), 5 * max(1.0, n_rows / 30)))
    if symmetric:
        scale = np.abs(matrix[:, 1:]).max() if matrix.shape[1] > 1 else np.abs(matrix).max()
        scale = float(scale) or 1.0
        image = ax.imshow(
            matrix, cmap="seismic", vmin=-scale, vmax=scale, aspect="auto", interpolation="nearest"
        )
    else:
        image = ax.imshow(matrix, vmin=0, aspect="auto", interpolation="nearest")
    ax.invert_yaxis()
    ax.set_xticks(range(len(tokens)))
    ax.set_xticklabels(token_labels(tokens), rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    _layer_ticks(ax, n_rows, "y")
    fig.colorbar(image, ax=ax, label=colorbar or "")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def draw_igrad(result: Result) -> Figures:
    figs = {}
    targets = [("layer", result.data)] if "attribution" in result.data else []
    targets += [(t, result.data[t]) for t in ("attention", "mlp") if t in result.data]
    for target, block in targets:
        for index, attribution in enumerate(block["attribution"]):
            tokens = result.data["tokens"][index]
            matrix = np.asarray(attribution, dtype=float)[
                :, :-1
            ]  # the last token predicts nothing measured
            prompt = result.data.get("prompts", list(range(len(block["attribution"]))))[index]
            title = _title(result, f"integrated gradients ({target}), prompt {prompt}")
            figs[f"igrad_{target}_prompt{prompt}"] = token_map(
                matrix, tokens[:-1], title, symmetric=True, colorbar=None, ylabel="Layer"
            )
    return figs


def draw_erasure(result: Result) -> Figures:
    figs = {}
    for index, effect in enumerate(result.data["effect"]):
        tokens = result.data["tokens"][index]
        matrix = np.asarray(effect, dtype=float)[:, :-1]
        prompt = result.data.get("prompts", list(range(len(result.data["effect"]))))[index]
        title = _title(result, f"residual erasure, prompt {prompt} (row 0 = embedding)")
        figs[f"erasure_prompt{prompt}"] = token_map(
            matrix,
            tokens[:-1],
            title,
            symmetric=False,
            colorbar="Probability Difference Norm",
            ylabel="Boundary",
        )
    return figs


def draw_depth_score(result: Result) -> Figures:
    levels = result.data["levels"]
    figs = {}
    aggregate = result.settings.get("aggregate", "max")
    for level, entry in levels.items():
        title = _title(
            result,
            f"future effect inside the answer, level {level} ({aggregate}, {entry['n_examples']} examples)",
        )
        figs[f"effect_level{level}"] = effect_heatmap(
            np.asarray(entry[f"effect_{aggregate}"], dtype=float), title
        )
    for key, ylabel in (
        ("importance_layer", "Mean effect on later layers"),
        ("importance_output", "Output change norm"),
    ):
        fig, ax = plt.subplots(figsize=(6, 3))
        for index, (level, entry) in enumerate(levels.items()):
            values = np.asarray(entry[key], dtype=float)
            ax.bar(
                np.arange(len(values)),
                values,
                width=1.0,
                alpha=0.5,
                color=f"C{index}",
                label=f"Level {level}",
            )
            n_layers = len(values)
        ax.set_xlim(-1, n_layers)
        ax.set_xlabel("Layer")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
        ax.set_title(_title(result, f"layer importance per level ({aggregate})"), fontsize=9)
        fig.tight_layout()
        figs[key] = fig
    names = list(levels)
    fig, ax = plt.subplots(figsize=(6, 3))
    for offset, (key, label, color) in enumerate(
        (("depth_score_layer", "Layer effect", "C0"), ("depth_score_output", "Logit effect", "C1"))
    ):
        values = [levels[n][key] if levels[n][key] is not None else np.nan for n in names]
        ax.bar(np.arange(len(names)) * 3 + offset, values, color=color, label=label)
    for i, name in enumerate(names):
        ax.annotate(
            f"acc {levels[name]['accuracy']:.0%}",
            (i * 3 + 0.5, 0),
            xytext=(0, -26),
            textcoords="offset points",
            ha="center",
            fontsize=7,
        )
    ax.set_xticks(np.arange(len(names)) * 3 + 0.5)
    ax.set_xticklabels(names)
    ax.set_xlabel("Level")
    ax.set_ylabel("Depth score")
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title(_title(result, f"depth score per level ({aggregate}; 0-based)"), fontsize=9)
    fig.tight_layout()
    figs["depth_score"] = fig
    return figs


def draw_linear_map(result: Result) -> Figures:
    """Heatmap without the embedding row/column (and no zero padding, spec §14.10) + best match."""
    d = result.data
    rel = np.asarray(d["rel_err"], dtype=float)
    source, target = d.get("source_model", "source"), d.get("target_model", "target")
    fig, ax = plt.subplots(figsize=(6, 4))
    body = rel[1:, 1:]
    image = ax.imshow(
        body,
        aspect="auto",
        interpolation="nearest",
        extent=(0.5, body.shape[1] + 0.5, body.shape[0] + 0.5, 0.5),
    )
    ax.set_xlabel(f"{target} layer (target)")
    ax.set_ylabel(f"{source} layer (source)")
    fig.colorbar(image, ax=ax, label="Relative error")
    ax.set_title(f"{source} → {target}: linear map relative error", fontsize=9)
    fig.tight_layout()
    figs = {"rel_err": fig}
    best = np.asarray(d["best_target"], dtype=float)
    n_source, n_target = rel.shape[0] - 1, rel.shape[1] - 1
    fig, ax = plt.subplots(figsize=(4.5, 4))
    x = np.arange(1, n_source + 1) / n_source
    y = best[1:] / n_target
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="same relative depth")
    ax.plot(x, y, marker="o", color="C0", label="best-matching target layer")
    ax.set_xlabel(f"{source} layer / {n_source}")
    ax.set_ylabel(f"{target} best layer / {n_target}")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.set_title("best match by relative depth", fontsize=9)
    fig.tight_layout()
    figs["best_match"] = fig
    return figs


DRAWERS: dict[str, Callable[[Result], Figures]] = {
    "contributions": draw_contributions,
    "current-effects": draw_effects,
    "future-effects": draw_effects,
    "local-effects": draw_local_effects,
    "logit-lens": draw_logit_lens,
    "igrad": draw_igrad,
    "erasure": draw_erasure,
    "depth-score": draw_depth_score,
    "linear-map": draw_linear_map,
}


def save_figure(fig, stem: Path) -> list[Path]:
    """Write ``stem.png`` (150 dpi) and ``stem.pdf`` atomically and close the figure."""
    written = []
    for suffix, kwargs in ((".png", {"dpi": 150}), (".pdf", {})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix[1:], **kwargs)
        path = stem.with_suffix(suffix)
        atomic_write_bytes(path, buffer.getvalue())
        written.append(path)
    plt.close(fig)
    return written


def plot_result(result: Result, out_dir: Path) -> list[Path]:
    """Draw every figure of ``result`` into ``out_dir`` as ``<analysis>_<what>.{png,pdf}``."""
    drawer = DRAWERS.get(result.analysis)
    if drawer is None:
        print(f"depthscope: no figures for analysis {result.analysis!r}; skipped", file=sys.stderr)
        return []
    written = []
    for stem, fig in drawer(result).items():
        written += save_figure(fig, Path(out_dir) / f"{result.analysis}_{stem}")
    return written


def plot_run(run_dir: Path) -> list[Path]:
    """Redraw the figures of every saved result of a run directory into ``run_dir/figures``."""
    results = sorted((Path(run_dir) / "results").glob("*.json"))
    if not results:
        raise DepthscopeError(
            f"{run_dir} has no results/*.json; run `depthscope analyze --out {run_dir}` first"
        )
    written = []
    for path in results:
        written += plot_result(Result.load(path), Path(run_dir) / "figures")
    return written
