"""The verdict's evidence in figures drawn from ``summary.json`` alone.

:func:`draw_evidence`: every transition indicator on one relative-depth axis. Top: each
indicator's profile (the mean over prompts the verdict fits), scaled to [0, 1] between its own
minimum and maximum, in the scale the step rule fits (log for positive ratios and norms), at
relative depth ``index / L``. Bottom: each indicator's change point with its 90 % interval, one row
each (hollow: no step beyond a smooth trend), and its threshold-free effective depth (diamond,
with its interval as a thin line). The consensus interval is shaded in both.

:func:`draw_sensitivity`: every thresholded verdict number against its constant over the
documented range, the default marked.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from depthscope.figures.common import BAR_WIDTH, plain, tidy

CAPTION = (
    "Every transition indicator of the run on one relative-depth axis. Top: each profile scaled to "
    "[0, 1] between its own extremes (log scale for positive ratios and norms, as the rule fits "
    "them; nothing is clipped). Bottom: each indicator's change point (dot) and 90 % interval over "
    "resampled prompts (bar); hollow dots mark the best split of an indicator with no step beyond "
    "a smooth trend. Diamonds: each indicator's threshold-free effective depth (importance-"
    "weighted mean depth) with its interval (thin line). Grey band: the consensus interval; "
    "whether indicators differ is decided by paired tests, not by the bars' overlap."
)
SENSITIVITY_CAPTION = (
    "How each thresholded verdict number moves with its constant over the documented range "
    "(docs/summary.md); the ringed point is the default. A flat line means the answer is the "
    "model's; a steep one means it is the constant's. Missing points: the number does not exist "
    "at that value (no transition, a boundary never reached)."
)


def _scaled(values: list, log: bool) -> np.ndarray:
    y = np.array([np.nan if v is None else v for v in values], dtype=float)
    if log:
        top = np.nanmax(y) if np.isfinite(y).any() else 1.0
        y = np.log(np.maximum(y, 1e-3 * max(top, 1e-30)))
    low, high = np.nanmin(y), np.nanmax(y)
    return (y - low) / (high - low) if high > low else np.zeros_like(y)


def draw_evidence(details: dict, n_layers: int, model: str, log_scale: list[str]) -> Figure:
    """The figure of a transition finding's ``details`` (profiles, intervals, consensus)."""
    profiles = details.get("profiles", {})
    fig = Figure(figsize=(BAR_WIDTH + 2, 5.2))
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.0, 1.3]})
    consensus = details.get("consensus") or {}
    band = (consensus.get("interval") or {}) if consensus.get("layer") is not None else {}
    for ax in (top, bottom):
        if band.get("low") is not None:
            ax.axvspan(band["low"] / n_layers, band["high"] / n_layers, color="0.85", zorder=0)
        elif consensus.get("layer") is not None:
            ax.axvline(consensus["layer"] / n_layers, color="0.6", linewidth=3, zorder=0)
    names = list(profiles)
    for row, name in enumerate(names):
        entry = profiles[name]
        colour = f"C{row % 10}"
        y = _scaled(entry.get("profile") or [], name in log_scale)
        x = np.arange(y.size) / n_layers
        style = "-" if entry.get("significant") else ":"
        top.plot(x, y, style, color=colour, linewidth=1.2, label=plain(name))
        layer = entry.get("layer")
        if layer is None:  # no step: show where the best step fit would split, hollow
            layer = (entry.get("step_vs_trend") or {}).get("split")
        interval = entry.get("interval") or {}
        level = len(names) - 1 - row
        depth = entry.get("effective_depth") or {}
        if depth.get("value") is not None:
            if depth.get("low") is not None:
                bottom.plot(
                    [depth["low"], depth["high"]], [level - 0.25] * 2, color=colour, linewidth=1
                )
            bottom.plot(depth["value"], level - 0.25, "D", color=colour, markersize=4)
        if interval.get("low") is not None:
            bottom.plot(
                [interval["low"] / n_layers, interval["high"] / n_layers],
                [level, level],
                color=colour,
                linewidth=3,
                solid_capstyle="butt",
            )
        if layer is not None:
            face = colour if entry.get("significant") else "white"
            bottom.plot(layer / n_layers, level, "o", color=colour, markerfacecolor=face)
    top.set_ylabel("scaled profile")
    top.set_xlim(-0.02, 1.02)
    top.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    where = consensus.get("layer")
    state = (
        "" if where is None else (" (indicators disagree)" if not consensus.get("agreed") else "")
    )
    top.set_title(
        plain(f"{model}: transition indicators and their change points{state}"), fontsize=9
    )
    bottom.set_yticks(range(len(names)), [plain(n) for n in reversed(names)], fontsize=7)
    bottom.set_xlim(-0.02, 1.02)
    bottom.set_ylim(-0.7, len(names) - 0.3)
    bottom.set_xlabel("relative depth  index / L  (layer l, or residual boundary b, over L)")
    bottom.grid(axis="x", alpha=0.3)
    return tidy(fig)


def draw_sensitivity(sweeps: list[tuple[str, dict]], model: str) -> Figure | None:
    """One panel per ``(verdict line, sweep)``: the number over its constant's values."""
    if not sweeps:
        return None
    columns = min(3, len(sweeps))
    rows = (len(sweeps) + columns - 1) // columns
    fig = Figure(figsize=(3.2 * columns, 2.4 * rows))
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for ax, (title, sweep) in zip(axes, sweeps, strict=False):
        values = np.asarray(sweep["values"], dtype=float)
        results = np.array([np.nan if r is None else r for r in sweep["results"]], dtype=float)
        found = np.isfinite(results)
        pad = 0.08 * float(np.ptp(values) or 1.0)
        ax.set_xlim(float(values.min()) - pad, float(values.max()) + pad)
        ax.set_xticks(values, [f"{v:.3g}" for v in values])
        if not found.any():
            ax.set_yticks([])
            ax.text(0.5, 0.5, "none at every value", transform=ax.transAxes, ha="center",
                    va="center", fontsize=8, color="0.4")  # fmt: skip
        else:
            ax.plot(values, results, "o-", color="C0", markersize=4)
            low = float(np.nanmin(results))
            for value in values[~found]:  # the number does not exist there
                ax.annotate("none", (value, low), ha="center", va="bottom", fontsize=7,
                            color="0.4")  # fmt: skip
        default = float(sweep["default"])
        at = np.nonzero(np.isclose(values, default))[0]
        if at.size and np.isfinite(results[at[0]]):
            ax.plot(
                values[at[0]], results[at[0]], "o", markersize=9, markerfacecolor="none", color="C3"
            )
        ax.set_xlabel(plain(sweep["constant"]), fontsize=7)
        ax.set_title(plain(f"{title}: {sweep['number']}"), fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(sweeps) :]:
        ax.set_visible(False)
    fig.suptitle(plain(f"{model}: sensitivity of the verdict to its constants"), fontsize=9)
    return tidy(fig)
