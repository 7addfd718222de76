"""The rules behind the effective-depth verdict, as pure functions of saved profiles.

Each rule is defined with its formula and the reason for its constants in docs/summary.md; the
constants live here so that the docs, the verdict and the tests read the same numbers. Layer
profiles are indexed by layer ``l = 0..L−1``, boundary profiles (logit lens, erasure) by the
residual boundary ``b`` (``b = l`` is the input of layer ``l``); relative depth is ``index / L``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Change point: a two-segment least-absolute-deviation fit. Pure noise scores below 0.35 for
# L >= 12 (0.47 at the 99th percentile for L = 12), a clean step 1, a linear ramp 0.5.
MIN_SEGMENT = 2  # layers on each side of a change point
MIN_QUALITY = 0.5  # 1 − cost(two medians) / cost(one median)
MIN_STEP = 0.25  # |right − left| / max(|left|, |right|): the levels must differ by a quarter
# Layers that matter for future tokens: output change >= this fraction of the first-half median.
FUTURE_FRACTION = 0.5
# Logit lens: top-k overlap that counts as "agrees with the output"; KL as a fraction of its max.
LENS_OVERLAP = 0.5
LENS_KL_FRACTION = 0.5
# Erasure / integrated gradients: a token matters while its effect is >= this share of the maximum.
TOKEN_SHARE = 0.1


@dataclass(frozen=True)
class ChangePoint:
    """Best single split of a profile into two levels, and whether it counts as a transition."""

    index: int  # first index of the second segment
    quality: float  # 1 − cost(k) / cost(no split), in [0, 1]
    left: float  # median before the split
    right: float  # median from the split on
    significant: bool  # quality and step large enough, and in the expected direction

    @property
    def direction(self) -> str:
        return "down" if self.right < self.left else "up"


def _cost(values: np.ndarray) -> float:
    return float(np.abs(values - np.median(values)).sum()) if values.size else 0.0


def change_point(values: Sequence[float], direction: str | None = None) -> ChangePoint | None:
    """The split ``k`` minimising ``Σ_{i<k}|y_i − med(y_<k)| + Σ_{i≥k}|y_i − med(y_≥k)|``.

    ``None`` if the profile is too short (fewer than ``2·MIN_SEGMENT`` finite values) or flat.
    ``direction`` ("down"/"up") is the step the caller expects; a step the other way is reported
    but not significant. Non-finite values are dropped (indices refer to the input).
    """
    y = np.asarray(values, dtype=float)
    keep = np.nonzero(np.isfinite(y))[0]
    y = y[keep]
    if y.size < 2 * MIN_SEGMENT:
        return None
    total = _cost(y)
    if total <= 1e-12 * max(float(np.abs(y).max()), 1e-30):
        return None
    costs = [(_cost(y[:k]) + _cost(y[k:]), k) for k in range(MIN_SEGMENT, y.size - MIN_SEGMENT + 1)]
    cost, k = min(costs)
    left, right = float(np.median(y[:k])), float(np.median(y[k:]))
    quality = 1.0 - cost / total
    scale = max(abs(left), abs(right))
    step = abs(right - left) / scale if scale > 0 else 0.0
    expected = direction is None or (direction == "down") == (right < left)
    significant = quality >= MIN_QUALITY and step >= MIN_STEP and expected
    return ChangePoint(int(keep[k]), quality, left, right, significant)


def later_layer_effect(effect: Sequence[Sequence[float]]) -> np.ndarray:
    """``e_s = mean_{l>s} R[s, l]``: how much skipping ``s`` changes later layers (last: NaN)."""
    matrix = np.asarray(effect, dtype=float)
    n = matrix.shape[0]
    out = np.full(n, np.nan)
    for s in range(n - 1):
        row = matrix[s, s + 1 :]
        row = row[np.isfinite(row)]
        if row.size:
            out[s] = row.mean()
    return out


@dataclass(frozen=True)
class FutureUse:
    layers: list[int]  # layers whose future output change reaches the threshold
    reference: float  # median output change over the first half
    threshold: float


def future_use(output_change: Sequence[float]) -> FutureUse | None:
    """Layers with ``O[s] ≥ FUTURE_FRACTION · median(O[0 .. ⌊L/2⌋−1])``."""
    values = np.asarray(output_change, dtype=float)
    first = values[: len(values) // 2]
    first = first[np.isfinite(first)]
    if first.size == 0:
        return None
    reference = float(np.median(first))
    if reference <= 0:
        return None
    threshold = FUTURE_FRACTION * reference
    layers = [int(i) for i in np.nonzero(np.nan_to_num(values, nan=-np.inf) >= threshold)[0]]
    return FutureUse(layers, reference, threshold)


def first_at_least(values: Sequence[float], level: float) -> int | None:
    """First index whose value is ``≥ level``."""
    hits = np.nonzero(np.nan_to_num(np.asarray(values, dtype=float), nan=-np.inf) >= level)[0]
    return int(hits[0]) if hits.size else None


def stays_below_from(values: Sequence[float], level: float) -> int | None:
    """First index from which every later value is ``< level`` (None if the last one is not)."""
    y = np.nan_to_num(np.asarray(values, dtype=float), nan=np.inf)
    if y.size == 0 or y[-1] >= level:
        return None
    above = np.nonzero(y >= level)[0]
    return int(above[-1]) + 1 if above.size else 0


def context_columns(n_columns: int, answer_length: int | None) -> list[int]:
    """Prompt positions whose erasure can only act through later positions.

    Column 0 (BOS) is excluded, and so are the positions that themselves predict the answer
    (``T − alen − 1`` on): erasing those changes the readout directly at any depth.
    """
    stop = n_columns - (answer_length or 0) - 1
    return list(range(1, max(stop, 1)))


def operand_columns(tokens: Sequence[str] | None, columns: list[int]) -> tuple[list[int], bool]:
    """Columns whose token contains a digit (the operands of arithmetic), else all ``columns``."""
    if tokens:
        digits = [
            c for c in columns if c < len(tokens) and any(ch.isdigit() for ch in str(tokens[c]))
        ]
        if digits:
            return digits, True
    return columns, False


def stop_mattering(matrix: Sequence[Sequence[float]], columns: list[int]) -> int | None:
    """First row from which every ``columns`` entry stays ``< TOKEN_SHARE · max`` (rows: depth).

    The maximum is over the same columns and all rows; magnitudes are used (IG is signed).
    """
    m = np.abs(np.asarray(matrix, dtype=float))
    if not columns or m.ndim != 2:
        return None
    block = np.nan_to_num(m[:, columns])
    peak = float(block.max()) if block.size else 0.0
    if peak <= 0:
        return None
    return stays_below_from(block.max(axis=1), TOKEN_SHARE * peak)


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
