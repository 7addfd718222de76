"""Shared drawing helpers: the paper's plot style, readable ticks for any depth, atomic output.

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas, never through
``pyplot``: drawing changes no global backend or state (safe inside a notebook or a thread), and
nothing needs closing. Text from outside (model names, tokens) is escaped so a ``$`` never turns
mathtext on; LaTeX is never required.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Patch
from mpl_toolkits.axes_grid1 import make_axes_locatable

from depthscope.core.atomic_files import atomic_write_bytes
from depthscope.core.result import Result
from depthscope.engine.stats import finite, finite_max, share_above

Figures = dict[str, Figure]
Series = tuple[str, np.ndarray, str]  # (legend label, values, colour)

ATT, MLP, LAYER = "C0", "C1", "C2"  # the paper's colour cycle: attention, MLP, layer/residual
PNG_DPI = 150
BAR_WIDTH = 6.0  # every bar chart over layers has this width, so they line up in a report
MAP_WIDTH = 10.0  # every layer × layer heatmap has this width
LOG_RANGE = 100.0  # bars whose positive values span more than this factor get a log axis


def new_figure(width: float, height: float) -> tuple[Figure, Axes]:
    """A figure with one axes and an Agg canvas (no pyplot, so no global state)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def new_grid(width: float, height: float, ncols: int) -> tuple[Figure, list[Axes]]:
    """A figure with one row of ``ncols`` axes and an Agg canvas."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def plain(text: object) -> str:
    """``text`` as literal characters: ``$`` would otherwise start mathtext."""
    return str(text).replace("$", r"\$")


def model_name(result: Result) -> str:
    return plain(result.model.get("name") or "model")


def n_layers(result: Result, fallback: int) -> int:
    value = result.model.get("n_layers")
    return int(value) if isinstance(value, int) and value > 0 else fallback


def as_array(value: object) -> np.ndarray:
    """Nested JSON lists as a float array; ``null`` (a NaN on save) becomes NaN again."""
    return np.asarray(value, dtype=float)


def plural(n: object, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def set_title(ax: Axes, result: Result, what: str, caption: str = "", name: str = "") -> None:
    """Model name and what is shown, then a caption-like line saying how it was aggregated."""
    title = f"{name or model_name(result)}: {what}"
    ax.set_title(f"{title}\n{caption}" if caption else title, fontsize=8.5)


def tick_step(n: int, max_ticks: int) -> int:
    """A round step (1, 2, 5, 10, 20, 25, 50, ...) giving at most ``max_ticks`` ticks over ``n``."""
    for scale in (1, 10, 100, 1000, 10000):
        for base in (1, 2, 5) if scale == 1 else (1, 2, 2.5, 5):
            step = int(base * scale)
            if step * max_ticks >= n:
                return step
    return max(1, n // max_ticks)


def index_ticks(ax: Axes, n: int, axis: str = "x", max_ticks: int = 16) -> None:
    """0-based integer ticks over ``n`` items, thinned so labels never collide at any depth."""
    ticks = list(range(0, n, tick_step(n, max_ticks)))
    if axis == "x":
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
    else:
        ax.set_yticks(ticks)
        ax.set_yticklabels([str(t) for t in ticks])


def overlapping_bars(ax: Axes, series: Sequence[Series], width: float = 1.1) -> None:
    """Bars at the same x, not stacked; at each x the shortest bar is in front (paper's sort_zorder).

    "Shortest" is by absolute value, so negative cosines are ordered the same way.
    """
    values = np.stack([np.nan_to_num(s[1], nan=0.0) for s in series])
    rank = np.argsort(np.argsort(-np.abs(values), axis=0, kind="stable"), axis=0)  # 0 = tallest
    x = np.arange(values.shape[1])
    for index, (_, data, color) in enumerate(series):
        for level in range(len(series)):
            chosen = rank[index] == level
            if chosen.any():
                ax.bar(x[chosen], data[chosen], width=width, color=color, zorder=2 + level)
    handles = [Patch(color=color) for _, _, color in series]
    ax.legend(handles, [label for label, _, _ in series], fontsize=7, framealpha=0.8)
    ax.set_xlim(-0.5, values.shape[1] - 0.5)


def mark_clipped(ax: Axes, series: Sequence[Series], top: float) -> None:
    """Write the value inside the top of bars cut by a fixed ``ylim``, so no number is lost.

    One label per layer (the largest clipped value), vertical so neighbours never collide.
    """
    values = np.stack([np.nan_to_num(s[1], nan=-np.inf) for s in series]).max(axis=0)
    for x, value in enumerate(values):
        if value > top:
            ax.text(
                x,
                top * 0.98,
                f"{value:.3g}",
                rotation=90,
                ha="center",
                va="top",
                fontsize=6,
                zorder=20,
                bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none"},
            )


def side_colorbar(
    fig: Figure, ax: Axes, image: AxesImage, label: str, extend: str = "neither"
) -> None:
    """Colorbar to the right of ``ax`` (the paper's size 0.2, pad 0.1 divider); ``extend="max"``
    draws an arrow when values above the scale are shown at its top colour."""
    cax = make_axes_locatable(ax).append_axes("right", size=0.2, pad=0.1)
    bar = fig.colorbar(image, cax=cax, extend=extend)
    if label:
        bar.set_label(label)


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """The encoded figure; PNG at the package's fixed resolution."""
    buffer = io.BytesIO()
    options = {"dpi": PNG_DPI} if fmt == "png" else {}
    fig.savefig(buffer, format=fmt, bbox_inches="tight", pad_inches=0.05, **options)
    return buffer.getvalue()


def tidy(fig: Figure) -> Figure:
    """``tight_layout`` without the warnings it emits for colorbar dividers (bbox is tight anyway)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig.tight_layout()
    return fig


def save_figure(fig: Figure, stem: Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``stem.png`` (150 dpi) and ``stem.pdf``, each atomically (temp file, then rename);
    the docs keep only the PNG."""
    written = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        atomic_write_bytes(path, figure_bytes(fig, fmt))
        written.append(path)
    return written


def cap_note(values: object, cap: float) -> str:
    """ "12% of cells above 1 are shown at the cap" when the fixed colour scale clips, else ""."""
    share = share_above(values, cap)
    if share == 0:
        return ""
    percent = f"{100 * share:.0f}%" if share >= 0.01 else "<1%"
    return f"{percent} of cells above {cap:g} are shown at the cap (max {finite_max(values):.3g})"


def wide_range(values: Sequence[np.ndarray]) -> bool:
    """True when the positive values span more than :data:`LOG_RANGE` (a log axis reads better)."""
    positive = np.concatenate([finite(v) for v in values])
    positive = positive[positive > 0]
    return positive.size > 1 and positive.max() / positive.min() > LOG_RANGE
