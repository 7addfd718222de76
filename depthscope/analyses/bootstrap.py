"""How sure a verdict number is: a bootstrap over prompts, from the per-prompt data results keep.

Every verdict number is a function of a profile that is a (weighted) mean over prompts. Drawing
the prompts again with replacement (:data:`RESAMPLES` times, seeded) and recomputing the number
on each draw gives its sampling distribution at this prompt count; the verdict states the
:data:`LEVEL` percentile interval of it ("layer 13 [12, 14]"). Nothing is re-run: the resampled
profiles are weighted means of the saved per-prompt profiles, one matrix product for all draws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
LEVEL = 0.90  # the interval holds the central 90 % of the resampled values
SEED = 0  # the same draws every time: the verdict is reproducible


def draws(n_prompts: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``[resamples, n_prompts]``: how often each prompt is drawn in each resample."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_prompts, size=(resamples, n_prompts))
    counts = np.zeros((resamples, n_prompts))
    np.add.at(counts, (np.arange(resamples)[:, None], picks), 1.0)
    return counts


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The profile of all prompts: ``Σ_p w_p x_p / Σ_p w_p`` (NaN entries are skipped)."""
    return resampled(values, weights, np.ones((1, len(weights))))[0]


def resampled(values: np.ndarray, weights: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``[draws, n]``: the weighted mean profile of each draw of prompts (``counts`` from
    :func:`draws`); an entry no drawn prompt has is NaN."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    w = counts * np.asarray(weights, dtype=float)[None, :]  # [draws, prompts]
    total = w @ np.where(finite, values, 0.0)
    mass = w @ finite.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass > 0, total / mass, np.nan)


@dataclass(frozen=True)
class Interval:
    """A verdict number with its bootstrap interval.

    ``none_share`` is the share of draws in which the number does not exist (no transition, a
    boundary never reached); an interval whose ``none_share`` exceeds the tail ``(1 − LEVEL) / 2``
    covers "none".
    """

    value: float | None  # on all prompts
    low: float | None
    high: float | None
    none_share: float
    draws: int

    @property
    def covers_none(self) -> bool:
        return self.none_share > (1 - LEVEL) / 2

    def as_json(self) -> dict:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "none_share": round(self.none_share, 4),
            "level": LEVEL,
            "draws": self.draws,
        }

    def text(self, digits: int = 0) -> str:
        """``13 [12, 14]``; ``13 [12, 14 or none]`` when the draws also find none."""

        def fmt(x: float | None) -> str:
            return "none" if x is None else f"{x:.{digits}f}"

        if self.low is None:
            return f"{fmt(self.value)} [none]"
        tail = " or none" if self.covers_none else ""
        return f"{fmt(self.value)} [{fmt(self.low)}, {fmt(self.high)}{tail}]"


def interval_of(value: float | None, samples: np.ndarray) -> Interval:
    """The percentile interval of ``samples`` (NaN = the number does not exist in that draw)."""
    samples = np.asarray(samples, dtype=float)
    found = samples[np.isfinite(samples)]
    none_share = 1.0 - found.size / samples.size if samples.size else 1.0
    if not found.size:
        return Interval(value, None, None, none_share, int(samples.size))
    tail = 100 * (1 - LEVEL) / 2
    # the tails are taken over all draws: a draw without the number counts as beyond both ends
    low, high = np.percentile(found, [tail, 100 - tail], method="nearest")
    return Interval(value, float(low), float(high), none_share, int(samples.size))


def bootstrap(
    values: np.ndarray,
    weights: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """The statistic of the all-prompt profile, and its interval over resampled prompts.

    ``statistic`` maps profiles ``[rows, n]`` to one number per row (NaN: none).
    """
    values = np.asarray(values, dtype=float)
    point = statistic(weighted_mean(values, weights)[None, :])[0]
    samples = statistic(resampled(values, weights, draws(len(weights), resamples, seed)))
    return interval_of(None if not np.isfinite(point) else float(point), samples)
