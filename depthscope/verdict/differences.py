"""Is one number different from another, the same within a margin, or can the data not tell?

Every comparison the verdict makes (two transition indicators of one run, one indicator across two
models, the depth score across difficulty levels) reads bootstrap draws of both numbers:

- **paired** when both come from the same resampled prompts (indicators of one run): draw ``i``
  of one is compared with draw ``i`` of the other;
- **independent** when they come from different prompts or models: the two draw sets are
  resampled independently (different seeds) and paired by index.

The difference's 90 % percentile interval and a two-sided bootstrap p-value
``2 · min(P(d ≤ 0), P(d ≥ 0))`` (ties at 0 count on both sides) are computed; p-values of the
comparisons made together are Holm-corrected. The outcome is

- ``equivalent`` when the 90 % interval lies inside ``[−margin, margin]`` (two one-sided tests at
  5 %; a "no difference" needs this, not a large p-value). This comes first: a difference whose
  whole interval is smaller than the margin is too small to matter at that margin, even when many
  prompts make it significant (a difference of 0.01 relative depth is not "later");
- ``differ`` when the corrected p-value is at most :data:`ALPHA` and the interval reaches beyond
  the margin;
- ``inconclusive`` otherwise: neither shown at this number of prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depthscope.verdict.bootstrap import Interval, interval_of
from depthscope.verdict.regime import holm_adjusted

ALPHA = 0.05  # family-wise, after Holm's correction
LAYER_MARGIN = 1.0  # two change points of one run are "the same" within ±1 layer
DEPTH_MARGIN = 0.05  # two relative depths (models, levels) are "the same" within ±0.05


@dataclass(frozen=True)
class Difference:
    """``b − a`` with its interval, test and outcome."""

    value: float | None  # the point estimates' difference
    interval: Interval
    p_value: float
    p_adjusted: float
    margin: float
    unit: str  # "layers" or "relative depth"

    @property
    def outcome(self) -> str:
        if self.interval.low is None:
            return "inconclusive"
        if -self.margin <= self.interval.low and self.interval.high <= self.margin:
            return "equivalent"
        if self.p_adjusted <= ALPHA:
            return "differ"
        return "inconclusive"

    def text(self, digits: int = 0) -> str:
        """``+4 [3, 5] layers (Holm p = 0.002)``."""
        if self.value is None or self.interval.low is None:
            return "not computable"
        fmt = f"{{:+.{digits}f}}"
        low, high = f"{self.interval.low:.{digits}f}", f"{self.interval.high:.{digits}f}"
        return (
            f"{fmt.format(self.value)} [{low}, {high}] {self.unit} (Holm p = {self.p_adjusted:.3f})"
        )

    def as_json(self) -> dict:
        return {
            "difference": self.value,
            "interval": self.interval.as_json(),
            "p_value": round(self.p_value, 4),
            "p_adjusted": round(self.p_adjusted, 4),
            "margin": self.margin,
            "unit": self.unit,
            "outcome": self.outcome,
        }


def bootstrap_p(samples: np.ndarray) -> float:
    """Two-sided bootstrap p-value of ``d = 0``: ``2 · min(P(d ≤ 0), P(d ≥ 0))``, at most 1."""
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return 1.0
    below = float((samples <= 0).mean())
    above = float((samples >= 0).mean())
    return min(1.0, 2.0 * min(below, above))


def _difference(
    a: float | None, b: float | None, a_draws, b_draws, margin: float, unit: str
) -> tuple[float | None, Interval, float]:
    a_draws, b_draws = np.asarray(a_draws, dtype=float), np.asarray(b_draws, dtype=float)
    n = min(a_draws.size, b_draws.size)
    samples = b_draws[:n] - a_draws[:n]
    value = None if a is None or b is None else float(b - a)
    interval = interval_of(value, samples)
    return value, interval, bootstrap_p(samples)


def compare_all(
    pairs: dict[str, tuple[float | None, float | None, np.ndarray, np.ndarray]],
    *,
    margin: float,
    unit: str,
) -> dict[str, Difference]:
    """Every ``name: (a, b, a_draws, b_draws)`` compared as ``b − a``, Holm-corrected together."""
    raw = {name: _difference(a, b, da, db, margin, unit) for name, (a, b, da, db) in pairs.items()}
    adjusted = holm_adjusted({name: p for name, (_, _, p) in raw.items()}) if raw else {}
    return {
        name: Difference(value, interval, p, adjusted[name], margin, unit)
        for name, (value, interval, p) in raw.items()
    }
