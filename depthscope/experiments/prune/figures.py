"""The pruning figure: each validation metric (text perplexity; task accuracy and answer NLL)
against the number of layers removed, one curve per criterion, the random baseline as the mean
over seeds with its range shaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depthscope.experiments.prune.pipeline import SHOWN
from depthscope.experiments.prune.settings import RANDOM
from depthscope.figures.common import new_grid, plain, save_figure, tidy

STEM = "prune_metrics"
MARKERS = ("o", "s", "^", "D")  # shrinking sizes, so curves that coincide stay visible
LOG_SCALE = {"perplexity", "answer_nll"}


def draw_prune(doc: dict, folder: Path) -> list[Path]:
    """Write ``folder/prune_metrics.png`` and ``.pdf`` from a ``prune.json`` document."""
    panels = [  # a task the unpruned model does not solve ranks nothing: not drawn
        (d, metric, label)
        for d in doc["data"]
        if d.get("informative", True)
        for metric, label in SHOWN[d["kind"]]
    ]
    fig, axes = new_grid(4.2 * len(panels), 3.2, len(panels))
    ks = np.arange(doc["max_drop"] + 1)
    for ax, (entry, metric, ylabel) in zip(axes, panels, strict=True):
        source = entry["source"]
        for index, (name, curves) in enumerate(doc["metrics"].items()):
            values = np.asarray(curves[source][metric], dtype=float)
            if name == RANDOM:
                seeds = doc["random"]["metrics_per_seed"].values()
                per_seed = np.array([s[source][metric] for s in seeds], dtype=float)
                ax.fill_between(ks, per_seed.min(0), per_seed.max(0), color="0.8", zorder=1)
                label = f"random (mean of {len(per_seed)} seeds)"
                ax.plot(ks, values, "--", color="0.4", label=label, zorder=2)
            else:
                marker, size = MARKERS[index % len(MARKERS)], 7 - 1.5 * (index % len(MARKERS))
                ax.plot(ks, values, marker=marker, markersize=size, color=f"C{index}", label=name)
                healed = ((doc.get("healed") or {}).get("metrics") or {}).get(name)
                if healed:  # the same removals after healing, dashed in the same colour
                    after = np.asarray(healed[source][metric], dtype=float)
                    ax.plot(
                        ks,
                        after,
                        ":",
                        marker=marker,
                        markersize=size - 1,
                        color=f"C{index}",
                        label=f"{name}, healed",
                    )
        if metric in LOG_SCALE:
            ax.set_yscale("log")
            ylabel += " (log scale)"
        else:
            ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("layers removed")
        ax.set_ylabel(ylabel)
        ax.set_xticks(ks)
        ax.set_title(plain(f"{source}"), fontsize=8.5)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, framealpha=0.8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    name = plain(doc["model"].get("name", "model"))
    healed = doc.get("healed")
    how = (
        f"layers removed; dotted: after {healed['settings']['steps']} LoRA steps of healing"
        if healed
        else "layers removed without retraining"
    )
    fig.suptitle(f"{name} ({doc['n_layers']} layers): {how}", fontsize=9)
    return save_figure(tidy(fig), Path(folder) / STEM)
