"""Per-prompt (layer × token) maps: integrated gradients (E7) and residual erasure (E8).

Both drop the last token (it predicts nothing that is measured), put layer 0 at the bottom and
label columns with the tokens (``Ġ``/``▁`` → ``_``, a leading BOS → "BOS"). Column 0 is left out
of the colour scale: for Llama-like models it is the BOS attention sink, which would otherwise
wash out every other token (the paper does this for IG; we do it for erasure too).
"""

from __future__ import annotations

import re

import numpy as np
from matplotlib.figure import Figure

from depthscope.core.result import Result
from depthscope.engine.stats import finite_max
from depthscope.figures.common import (
    Figures,
    as_array,
    index_ticks,
    new_figure,
    plain,
    set_title,
    side_colorbar,
    tidy,
)

BOS_STRINGS = frozenset(
    {"<|begin_of_text|>", "<s>", "<bos>", "<|endoftext|>", "<|startoftext|>", "[BOS]", "<BOS>"}
)
ANSWER_COLOR = "C3"
IG_TARGETS = ("layer", "attention", "mlp")


def token_label(token: object, position: int) -> str:
    """The paper's tick label for one token: spaces as ``_``, control characters escaped."""
    text = str(token)
    if position == 0 and text in BOS_STRINGS:
        return "BOS"
    for raw, shown in (("Ġ", "_"), ("▁", "_"), (" ", "_"), ("Ċ", r"\n"), ("\n", r"\n")):
        text = text.replace(raw, shown)
    text = text.replace("ĉ", r"\t").replace("\t", r"\t").replace("\r", r"\r")
    return plain(text) if text else "''"


def token_labels(tokens: list[object]) -> list[str]:
    return [token_label(token, i) for i, token in enumerate(tokens)]


def color_scale(matrix: np.ndarray) -> float:
    """Largest magnitude outside column 0 (BOS may saturate); falls back to the whole map."""
    for part in (matrix[:, 1:], matrix):
        finite = np.abs(part[np.isfinite(part)])
        if finite.size and finite.max() > 0:
            return float(finite.max())
    return 1.0


def token_map(
    result: Result,
    matrix: np.ndarray,
    tokens: list[object],
    answer_len: int | None,
    *,
    signed: bool,
    what: str,
    caption: str,
    ylabel: str,
    colorbar_label: str,
) -> Figure:
    """One (row × token) map; ``matrix`` still includes the last token, which is dropped here."""
    shown = matrix[:, :-1] if matrix.shape[1] > 1 else matrix
    n_rows, n_cols = shown.shape
    width = min(40.0, max(5.0, 0.16 * n_cols + 1.8))
    fig, ax = new_figure(width, min(20.0, 5 * max(1.0, n_rows / 30)))
    scale = color_scale(shown)
    limits = (
        {"cmap": "seismic", "vmin": -scale, "vmax": scale} if signed else {"vmin": 0, "vmax": scale}
    )
    image = ax.imshow(shown, origin="lower", aspect="auto", interpolation="nearest", **limits)
    labels = token_labels(list(tokens)[:n_cols]) if len(tokens) >= n_cols else None
    if labels is None:
        index_ticks(ax, n_cols, "x", max_ticks=40)
        ax.set_xlabel("Token position")
    else:
        ax.set_xticks(range(n_cols))
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8 if n_cols <= 60 else 6)
        first_answer = len(tokens) - answer_len if answer_len else n_cols
        for position, tick in enumerate(ax.get_xticklabels()):
            if position >= first_answer:
                tick.set_color(ANSWER_COLOR)
    index_ticks(ax, n_rows, "y", max_ticks=16)
    ax.set_ylabel(ylabel)
    side_colorbar(fig, ax, image, colorbar_label)
    set_title(ax, result, what, caption)
    return tidy(fig)


def prompt_ids(data: dict, count: int) -> list[object]:
    ids = data.get("prompts")
    return list(ids) if isinstance(ids, list) and len(ids) == count else list(range(count))


def safe_stem(value: object) -> str:
    """A prompt id or level usable in a file name."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", str(value)).strip("-") or "x"


def _answer_len(data: dict, index: int) -> int | None:
    lengths = data.get("answer_tokens")
    if isinstance(lengths, list) and index < len(lengths) and isinstance(lengths[index], int):
        return lengths[index]
    return None


def _tokens(data: dict, index: int) -> list[object]:
    tokens = data.get("tokens")
    return list(tokens[index]) if isinstance(tokens, list) and index < len(tokens) else []


def igrad_targets(result: Result) -> list[tuple[str, dict]]:
    """(target, block) pairs: the layer target at the top level, others nested by name."""
    data = result.data
    found = []
    if "attribution" in data:
        found.append((str(result.settings.get("target", "layer")), data))
    found += [(t, data[t]) for t in IG_TARGETS if isinstance(data.get(t), dict)]
    return found


def draw_igrad(result: Result) -> Figures:
    """Signed IG attribution of the answer probability over layers × tokens, one map per prompt."""
    steps = result.settings.get("steps")
    caption = (
        f"{steps} steps, " if steps else ""
    ) + "baseline: sequence mean; target: P(answer)\ncolour scale excludes column 0; red = answer"
    sites = {"layer": "layer output", "attention": "attention output", "mlp": "MLP output"}
    figs: Figures = {}
    for target, block in igrad_targets(result):
        maps = block["attribution"]
        for index, prompt in enumerate(prompt_ids(result.data, len(maps))):
            figs[f"{target}_prompt{safe_stem(prompt)}"] = token_map(
                result,
                as_array(maps[index]),
                _tokens(result.data, index),
                _answer_len(result.data, index),
                signed=True,
                what=f"integrated gradients at the {sites.get(target, target)}, prompt {prompt}",
                caption=caption,
                ylabel="Layer",
                colorbar_label="",
            )
    return figs


def draw_erasure(result: Result) -> Figures:
    """Answer change when one (boundary, token) residual is replaced by a mean, per prompt."""
    n_base = result.data.get("n_baseline_prompts")
    mean = f"mean over {n_base} prompts" if n_base else "a dataset mean"
    caption = (
        f"one residual replaced by {mean}; max over answer predictions\n"
        "colour scale excludes column 0; red = answer"
    )
    figs: Figures = {}
    maps = result.data["effect"]
    for index, prompt in enumerate(prompt_ids(result.data, len(maps))):
        figs[f"prompt{safe_stem(prompt)}"] = token_map(
            result,
            as_array(maps[index]),
            _tokens(result.data, index),
            _answer_len(result.data, index),
            signed=False,
            what=f"residual erasure, prompt {prompt}",
            caption=caption,
            ylabel="Residual entering layer (0 = embedding)",
            colorbar_label="Probability Difference Norm",
        )
    return figs


# ---------------------------------------------------------------- key numbers of token maps


def deepest_row(matrix: np.ndarray, answer_len: int | None, share: float = 0.1) -> int | None:
    """Deepest row where a prompt token (not column 0, not the answer) holds ``share`` of the max."""
    last = matrix.shape[1] - (answer_len or 1)
    columns = np.abs(matrix[:, 1:last])
    if columns.size == 0 or not np.isfinite(columns).any():
        return None
    threshold = share * finite_max(np.abs(matrix[:, 1:-1]), 0.0)
    rows = np.nonzero((np.nan_to_num(columns) >= threshold).any(axis=1))[0]
    return int(rows[-1]) if len(rows) and threshold > 0 else None


def token_map_numbers(result: Result, maps: list, noun: str) -> list[str]:
    """Per prompt: until which depth the prompt's tokens still matter for the answer."""
    prompts = result.data.get("prompts") or list(range(len(maps)))
    lines = []
    for index, matrix in enumerate(maps):
        matrix = np.asarray(matrix, dtype=float)
        row = deepest_row(matrix[:, :-1], _answer_len(result.data, index))
        depth = f"{noun} {row} of 0–{matrix.shape[0] - 1}" if row is not None else "nowhere"
        lines.append(
            f"prompt {prompts[index]}: prompt tokens (column 0 and answer excluded) keep ≥10% "
            f"of the map's maximum up to {depth}"
        )
    return lines
