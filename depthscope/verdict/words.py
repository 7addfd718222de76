"""How the verdict writes a depth: absolute index, relative depth ``index / L``, layer ranges."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rel(index: int | float | None, n_layers: int | None) -> float | None:
    """``index / L`` rounded to 3 places; None when either is unknown."""
    return None if index is None or not n_layers else round(index / n_layers, 3)


def at(index: int | None, n_layers: int | None, noun: str = "layer") -> str:
    """``layer 12 (relative depth 0.40)``; ``never`` for None."""
    if index is None:
        return "never"
    relative = rel(index, n_layers)
    return f"{noun} {index}" + ("" if relative is None else f" (relative depth {relative:.2f})")


def layer_ranges(layers: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0–2, 5, 7–8"``."""
    parts, run = [], []
    for layer in sorted(layers):
        if run and layer == run[-1] + 1:
            run.append(layer)
            continue
        if run:
            parts.append(_span(run))
        run = [layer]
    if run:
        parts.append(_span(run))
    return ", ".join(parts) or "none"


def _span(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}–{run[-1]}"


def trend_words(value: float | None, low: float | None, high: float | None, *, log: bool) -> str:
    """A linear trend's change from the first to the last entry, with its interval: on a log
    scale as a factor (``×0.31 [0.25, 0.40] from first to last``), else as a difference."""
    if value is None:
        return ""
    if log:
        spread = f" [{np.exp(low):.2f}, {np.exp(high):.2f}]" if low is not None else ""
        return f"×{np.exp(value):.2f}{spread} from first to last"
    spread = f" [{low:+.2f}, {high:+.2f}]" if low is not None else ""
    return f"{value:+.2f}{spread} from first to last"
