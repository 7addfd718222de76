"""The rules behind the effective-depth verdict, as pure functions of saved profiles.

Each rule is defined with its formula and the reason for its constants in docs/summary.md; the
constants live here so that the docs, the verdict and the tests read the same numbers. Layer
profiles are indexed by layer ``l = 0..L−1``, boundary profiles (logit lens, erasure) by the
residual boundary ``b`` (``b = l`` is the input of layer ``l``); relative depth is ``index / L``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# Change point: a two-segment least-absolute-deviation fit, tested against random orderings.
MIN_SEGMENT_FRACTION = 1 / 6  # a regime spans at least a sixth of the profile ...
MIN_SEGMENT = 2  # ... and at least two layers
MAX_P_VALUE = 0.01  # the split must beat all but 1 % of random orderings of the same values
PERMUTATIONS = 999  # p-values in steps of 0.001; fixed seed, so the verdict is reproducible
MIN_STEP = 0.25  # |right − left| / max(|left|, |right|) of the two medians
LOG_FLOOR = 1e-3  # positive profiles are fitted in log scale, clipped at this fraction of the max
# Layers that matter for future tokens: output change >= this fraction of the first-half median.
FUTURE_FRACTION = 0.5
# Logit lens: top-k overlap that counts as "agrees with the output"; KL as a fraction of its
# first-half median (the level before the lens converges).
LENS_OVERLAP = 0.5
LENS_KL_FRACTION = 0.5
# Erasure / integrated gradients: a token matters while its effect is >= this share of the maximum.
TOKEN_SHARE = 0.1


@dataclass(frozen=True)
class ChangePoint:
    """Best single split of a profile into two levels, and whether it counts as a transition."""

    index: int  # first index of the second segment
    quality: float  # 1 − cost(k) / cost(no split), in [0, 1] (descriptive)
    p_value: float  # fraction of random orderings whose best split fits at least as well
    left: float  # median before the split
    right: float  # median from the split on
    significant: bool  # p-value small, step large, and in the expected direction
    # qualities of the best splits of the random orderings: the null that draws are tested against
    null: np.ndarray = field(default=None, repr=False, compare=False)

    @property
    def direction(self) -> str:
        return "down" if self.right < self.left else "up"


def min_segment(n: int) -> int:
    return max(MIN_SEGMENT, int(np.ceil(n * MIN_SEGMENT_FRACTION)))


def split_costs(rows: np.ndarray, splits: range) -> np.ndarray:
    """``[P, len(splits)]``: two-median absolute-deviation cost of each split of each row."""
    costs = np.empty((rows.shape[0], len(splits)))
    for j, k in enumerate(splits):
        left, right = rows[:, :k], rows[:, k:]
        costs[:, j] = np.abs(left - np.median(left, axis=1, keepdims=True)).sum(axis=1) + np.abs(
            right - np.median(right, axis=1, keepdims=True)
        ).sum(axis=1)
    return costs


def change_point(
    values: Sequence[float], direction: str | None = None, *, log: bool = False
) -> ChangePoint | None:
    """The split ``k`` minimising ``Σ_{i<k}|y_i − med(y_<k)| + Σ_{i≥k}|y_i − med(y_≥k)|``.

    ``log=True`` fits ``log y`` (for positive ratios and norms, whose changes are relative).
    ``None`` if the profile is too short (fewer than ``2·MIN_SEGMENT`` finite values) or flat.
    The split is significant when at most ``MAX_P_VALUE`` of ``PERMUTATIONS`` random orderings of
    the same values have a best split that fits as well, the medians differ by ``MIN_STEP``, and
    the step goes the ``direction`` ("down"/"up") the caller expects. Non-finite values are
    dropped (indices refer to the input).
    """
    raw = np.asarray(values, dtype=float)
    keep = np.nonzero(np.isfinite(raw))[0]
    raw = raw[keep]
    if raw.size < 2 * MIN_SEGMENT:
        return None
    y = raw
    if log:
        y = np.log(np.maximum(raw, LOG_FLOOR * max(float(raw.max()), 1e-30)))
    total = float(np.abs(y - np.median(y)).sum())
    if total <= 1e-12 * max(float(np.abs(y).max()), 1e-30):
        return None
    edge = min(min_segment(y.size), y.size // 2)
    splits = range(edge, y.size - edge + 1)
    costs = split_costs(y[None, :], splits)[0]
    best = int(np.argmin(costs))
    k = splits[best]
    rng = np.random.default_rng(0)
    shuffled = np.stack([rng.permutation(y) for _ in range(PERMUTATIONS)])
    null = split_costs(shuffled, splits).min(axis=1)
    p_value = (1 + int((null <= costs[best] + 1e-12 * total).sum())) / (1 + PERMUTATIONS)
    left, right = float(np.median(raw[:k])), float(np.median(raw[k:]))
    scale = max(abs(left), abs(right))
    step = abs(right - left) / scale if scale > 0 else 0.0
    expected = direction is None or (direction == "down") == (right < left)
    significant = p_value <= MAX_P_VALUE and step >= MIN_STEP and expected
    quality = 1.0 - costs[best] / total
    null_quality = 1.0 - null / total
    return ChangePoint(int(keep[k]), quality, p_value, left, right, significant, null_quality)


@dataclass(frozen=True)
class FutureUse:
    layers: list[int]  # layers whose future output change reaches the threshold
    reference: float  # median output change over the first half
    threshold: float


def _fit_scale(raw: np.ndarray, log: bool) -> np.ndarray:
    """Rows as fitted: ``log y`` (clipped at :data:`LOG_FLOOR` of each row's max) or ``y``."""
    if not log:
        return raw
    top = np.maximum(raw.max(axis=1, keepdims=True), 1e-30)
    return np.log(np.maximum(raw, LOG_FLOOR * top))


def change_points(
    rows: np.ndarray, direction: str | None, *, log: bool, null: np.ndarray
) -> np.ndarray:
    """:func:`change_point` for many profiles at once (bootstrap draws): the significant split of
    each row, NaN where a row has none. ``null`` holds the qualities of random orderings of the
    all-prompt profile (:attr:`ChangePoint.null`); a draw is tested against them, as the
    all-prompt profile was. Columns not finite in every row are left out (indices refer to the
    input), as a single profile drops its non-finite values."""
    rows = np.atleast_2d(np.asarray(rows, dtype=float))
    keep = np.nonzero(np.isfinite(rows).all(axis=0))[0]
    out = np.full(rows.shape[0], np.nan)
    if keep.size < 2 * MIN_SEGMENT:
        return out
    raw = rows[:, keep]
    y = _fit_scale(raw, log)
    total = np.abs(y - np.median(y, axis=1, keepdims=True)).sum(axis=1)
    flat = total <= 1e-12 * np.maximum(np.abs(y).max(axis=1), 1e-30)
    edge = min(min_segment(y.shape[1]), y.shape[1] // 2)
    splits = range(edge, y.shape[1] - edge + 1)
    costs = split_costs(y, splits)
    best = costs.argmin(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        quality = 1.0 - costs[np.arange(len(best)), best] / total
    beaten = (np.asarray(null)[None, :] >= quality[:, None] - 1e-12).sum(axis=1)
    p_value = (1 + beaten) / (1 + len(null))
    k = np.array([splits[b] for b in best])
    left = np.array([np.median(r[:i]) for r, i in zip(raw, k, strict=True)])
    right = np.array([np.median(r[i:]) for r, i in zip(raw, k, strict=True)])
    scale = np.maximum(np.abs(left), np.abs(right))
    with np.errstate(invalid="ignore", divide="ignore"):
        step = np.where(scale > 0, np.abs(right - left) / scale, 0.0)
    expected = (
        np.full(len(k), True) if direction is None else (direction == "down") == (right < left)
    )
    significant = ~flat & (p_value <= MAX_P_VALUE) & (step >= MIN_STEP) & expected
    out[significant] = keep[k[significant]]
    return out


def normalised_costs(
    rows: np.ndarray, *, log: bool = False, width: int | None = None
) -> np.ndarray:
    """``[rows, width]``: each split's two-segment cost over the no-split cost (1 = no better than
    one level), at the split's index; NaN where a split is not allowed. Curves of several
    indicators add up to their joint fit (:func:`joint_change_points`)."""
    rows = np.atleast_2d(np.asarray(rows, dtype=float))
    width = rows.shape[1] if width is None else width
    out = np.full((rows.shape[0], width), np.nan)
    keep = np.nonzero(np.isfinite(rows).all(axis=0))[0]
    if keep.size < 2 * MIN_SEGMENT:
        return out
    y = _fit_scale(rows[:, keep], log)
    total = np.abs(y - np.median(y, axis=1, keepdims=True)).sum(axis=1, keepdims=True)
    edge = min(min_segment(y.shape[1]), y.shape[1] // 2)
    splits = range(edge, y.shape[1] - edge + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        costs = split_costs(y, splits) / np.where(total > 0, total, np.nan)
    for j, k in enumerate(splits):
        if keep[k] < width:
            out[:, keep[k]] = costs[:, j]
    return out


def joint_change_points(curves: list[np.ndarray]) -> np.ndarray:
    """The split that minimises the mean normalised cost of several indicators, per row (NaN if
    no split is allowed for all of them): one step placed where the indicators together fit two
    levels best."""
    stacked = np.stack(curves)  # [indicators, rows, width]
    joint = stacked.mean(axis=0)
    out = np.full(joint.shape[0], np.nan)
    found = np.isfinite(joint).any(axis=1)
    out[found] = np.nanargmin(np.where(np.isfinite(joint[found]), joint[found], np.inf), axis=1)
    return out


def first_half_median(values: Sequence[float]) -> float | None:
    """Median of the finite values of the first ``⌊n/2⌋`` entries (None if none or not > 0)."""
    array = np.asarray(values, dtype=float)
    first = array[: len(array) // 2]
    first = first[np.isfinite(first)]
    if first.size == 0 or float(np.median(first)) <= 0:
        return None
    return float(np.median(first))


def future_use(output_change: Sequence[float]) -> FutureUse | None:
    """Layers with ``O[s] ≥ FUTURE_FRACTION · median(O[0 .. ⌊L/2⌋−1])``."""
    values = np.asarray(output_change, dtype=float)
    reference = first_half_median(values)
    if reference is None:
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


def per_row(statistic, rows: np.ndarray) -> np.ndarray:
    """``statistic`` (a profile -> int or None) on every row; None becomes NaN."""
    out = [statistic(row) for row in np.atleast_2d(rows)]
    return np.array([np.nan if v is None else float(v) for v in out])


def lens_boundaries(
    kl: np.ndarray, overlap: np.ndarray
) -> tuple[int | None, int | None, float | None]:
    """(first boundary with top-k overlap >= LENS_OVERLAP, boundary from which KL stays below
    LENS_KL_FRACTION of its first-half median, that median)."""
    first = first_at_least(overlap, LENS_OVERLAP) if np.size(overlap) else None
    reference = first_half_median(kl)
    low = None if reference is None else stays_below_from(kl, LENS_KL_FRACTION * reference)
    return first, low, reference
