"""How sure a verdict number is: a bootstrap over prompts, from the per-prompt data results keep.

Every verdict number is a function of a profile that is a (weighted) mean over prompts. Drawing
the prompts again with replacement (:data:`RESAMPLES` times, seeded) and recomputing the number
on each draw gives its sampling distribution at this prompt count; the verdict states the
:data:`LEVEL` percentile interval of it ("layer 13 [12, 14]"). Nothing is re-run: the resampled
profiles are weighted means of the saved per-prompt profiles, one matrix product for all draws.

Where a prompt's profile is itself a maximum over sampled split points (the future effects of
§3.2), the split points are resampled too (:func:`split_resampled`): each drawn copy of a prompt
draws its split points again with replacement, and its profile is recomputed from the maximum over
the distinct split points drawn. The interval then covers the choice of split points as well as
the choice of prompts.
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


def _subset_profiles(splits: np.ndarray, of_max: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``[2^S − 1, n]``: the prompt's profile from the max over each non-empty subset of its
    ``S`` split points (row ``m − 1`` for the subset with bit mask ``m``)."""
    count = splits.shape[0]
    rows = []
    for mask in range(1, 2**count):
        chosen = [i for i in range(count) if mask >> i & 1]
        rows.append(np.asarray(of_max(splits[chosen].max(axis=0)), dtype=float))
    return np.stack(rows)


def split_resampled(
    per_prompt_splits: list[np.ndarray],
    weights: np.ndarray,
    of_max: Callable[[np.ndarray], np.ndarray],
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> np.ndarray:
    """``[draws, n]``: the weighted mean profile of each draw of prompts *and* split points.

    ``per_prompt_splits[p]`` holds prompt ``p``'s per-split data ``[S_p, ...]``; its profile from a
    set of split points is ``of_max`` of their elementwise maximum. Prompts are drawn as in
    :func:`draws` (the same draws for the same seed); every drawn copy of a prompt draws ``S_p``
    of its split points with replacement.
    """
    weights = np.asarray(weights, dtype=float)
    counts = draws(len(per_prompt_splits), resamples, seed)  # [draws, prompts]
    rng = np.random.default_rng([seed, 1])
    most = int(counts.max()) if counts.size else 0
    total = mass = None
    for p, splits in enumerate(per_prompt_splits):
        splits = np.asarray(splits, dtype=float)
        profiles = _subset_profiles(splits, of_max)  # [2^S − 1, n]
        size = splits.shape[0]
        picks = rng.integers(0, size, size=(resamples, most, size))  # [draws, copies, S]
        codes = np.bitwise_or.reduce(1 << picks, axis=2) - 1  # subset drawn by each copy
        used = np.arange(most)[None, :] < counts[:, p][:, None]  # [draws, copies]
        chosen = profiles[codes]  # [draws, copies, n]
        finite = np.isfinite(chosen) & used[:, :, None]
        part = np.where(finite, chosen, 0.0).sum(axis=1) * weights[p]
        part_mass = finite.sum(axis=1) * weights[p]
        total = part if total is None else total + part
        mass = part_mass if mass is None else mass + part_mass
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


def interval_over(
    point: np.ndarray, samples: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray]
) -> Interval:
    """The statistic of the profile ``point`` and its interval over resampled profiles."""
    value = statistic(np.asarray(point, dtype=float)[None, :])[0]
    return interval_of(None if not np.isfinite(value) else float(value), statistic(samples))


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
