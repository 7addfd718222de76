"""The thresholded rules of the verdict, as pure functions of saved profiles.

Each rule is defined with its formula and the reason for its constants in docs/summary.md; the
constants live here so that the docs, the verdict and the tests read the same numbers, and each is
also swept over a documented range (:mod:`depthscope.verdict.sensitivity`). The transition is not
a threshold rule: see :mod:`depthscope.verdict.regime`. Layer
profiles are indexed by layer ``l = 0..L−1``, boundary profiles (logit lens, erasure) by the
residual boundary ``b`` (``b = l`` is the input of layer ``l``); relative depth is ``index / L``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Layers that matter for future tokens: output change >= this fraction of the first-half median.
FUTURE_FRACTION = 0.5
# Logit lens: top-k overlap that counts as "agrees with the output"; KL as a fraction of its
# first-half median (the level before the lens converges).
LENS_OVERLAP = 0.5
LENS_KL_FRACTION = 0.5
# Erasure / integrated gradients: a token matters while its effect is >= this share of the maximum.
TOKEN_SHARE = 0.1
# Current-token use: second-half layers matter "as much" as first-half ones when the ratio of the
# halves' median output changes lies within [1 / CURRENT_MARGIN, CURRENT_MARGIN].
CURRENT_MARGIN = 1.25


@dataclass(frozen=True)
class FutureUse:
    layers: list[int]  # layers whose future output change reaches the threshold
    reference: float  # median output change over the first half
    threshold: float


def first_half_median(values: Sequence[float]) -> float | None:
    """Median of the finite values of the first ``⌊n/2⌋`` entries (None if none or not > 0)."""
    array = np.asarray(values, dtype=float)
    first = array[: len(array) // 2]
    first = first[np.isfinite(first)]
    if first.size == 0 or float(np.median(first)) <= 0:
        return None
    return float(np.median(first))


def future_use(
    output_change: Sequence[float], fraction: float = FUTURE_FRACTION
) -> FutureUse | None:
    """Layers with ``O[s] ≥ fraction · median(O[0 .. ⌊L/2⌋−1])``."""
    values = np.asarray(output_change, dtype=float)
    reference = first_half_median(values)
    if reference is None:
        return None
    threshold = fraction * reference
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


def stop_mattering(
    matrix: Sequence[Sequence[float]], columns: list[int], share: float = TOKEN_SHARE
) -> int | None:
    """First row from which every ``columns`` entry stays ``< share · max`` (rows: depth).

    The maximum is over the same columns and all rows; magnitudes are used (IG is signed).
    """
    m = np.abs(np.asarray(matrix, dtype=float))
    if not columns or m.ndim != 2:
        return None
    block = np.nan_to_num(m[:, columns])
    peak = float(block.max()) if block.size else 0.0
    if peak <= 0:
        return None
    return stays_below_from(block.max(axis=1), share * peak)


def first_half_medians(rows: np.ndarray) -> np.ndarray:
    """:func:`first_half_median` of every row (NaN where it is None)."""
    rows = np.atleast_2d(np.asarray(rows, dtype=float))
    half = rows[:, : rows.shape[1] // 2]
    with warnings.catch_warnings():  # an all-NaN row warns; NaN is its answer
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(half, axis=1) if half.shape[1] else np.full(len(rows), np.nan)
    return np.where(median > 0, median, np.nan)


def future_use_rows(
    rows: np.ndarray, fraction: float = FUTURE_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """(count, deepest layer) of :func:`future_use` for every row (NaN where it is None)."""
    rows = np.atleast_2d(np.asarray(rows, dtype=float))
    threshold = fraction * first_half_medians(rows)
    hits = np.nan_to_num(rows, nan=-np.inf) >= threshold[:, None]
    count = np.where(np.isfinite(threshold), hits.sum(axis=1), np.nan)
    last = rows.shape[1] - 1 - np.argmax(hits[:, ::-1], axis=1)
    deepest = np.where(np.isfinite(threshold) & hits.any(axis=1), last, np.nan)
    return count.astype(float), deepest.astype(float)


def first_at_least_rows(rows: np.ndarray, level: float) -> np.ndarray:
    """:func:`first_at_least` of every row (NaN: never)."""
    hits = np.nan_to_num(np.atleast_2d(np.asarray(rows, dtype=float)), nan=-np.inf) >= level
    return np.where(hits.any(axis=1), np.argmax(hits, axis=1), np.nan).astype(float)


def stays_below_rows(rows: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """:func:`stays_below_from` of every row with its own level (NaN: never, or no level)."""
    y = np.nan_to_num(np.atleast_2d(np.asarray(rows, dtype=float)), nan=np.inf)
    levels = np.asarray(levels, dtype=float)
    above = y >= levels[:, None]
    last_above = y.shape[1] - 1 - np.argmax(above[:, ::-1], axis=1)
    start = np.where(above.any(axis=1), last_above + 1, 0).astype(float)
    never = ~np.isfinite(levels) | above[:, -1] if y.shape[1] else np.full(len(y), True)
    return np.where(never, np.nan, start)


def lens_boundary_rows(
    kl: np.ndarray,
    overlap: np.ndarray,
    overlap_level: float = LENS_OVERLAP,
    kl_fraction: float = LENS_KL_FRACTION,
) -> tuple[np.ndarray, np.ndarray]:
    """(overlap boundary, KL boundary) of :func:`lens_boundaries` for every row (NaN: none)."""
    first = first_at_least_rows(overlap, overlap_level)
    low = stays_below_rows(kl, kl_fraction * first_half_medians(kl))
    return first, low


def per_row(statistic, rows: np.ndarray) -> np.ndarray:
    """``statistic`` (a profile -> int or None) on every row; None becomes NaN."""
    out = [statistic(row) for row in np.atleast_2d(rows)]
    return np.array([np.nan if v is None else float(v) for v in out])


def lens_boundaries(
    kl: np.ndarray,
    overlap: np.ndarray,
    overlap_level: float = LENS_OVERLAP,
    kl_fraction: float = LENS_KL_FRACTION,
) -> tuple[int | None, int | None, float | None]:
    """(first boundary with top-k overlap >= ``overlap_level``, boundary from which KL stays
    below ``kl_fraction`` of its first-half median, that median)."""
    first = first_at_least(overlap, overlap_level) if np.size(overlap) else None
    reference = first_half_median(kl)
    low = None if reference is None else stays_below_from(kl, kl_fraction * reference)
    return first, low, reference


def half_ratio(rows: np.ndarray) -> np.ndarray:
    """Per row: median of the second half over the median of the first half (``⌊n/2⌋`` split;
    NaN where the first half's median is not positive)."""
    rows = np.atleast_2d(np.asarray(rows, dtype=float))
    half = rows.shape[1] // 2
    first = np.nanmedian(rows[:, :half], axis=1)
    second = np.nanmedian(rows[:, half:], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(first > 0, second / first, np.nan)
