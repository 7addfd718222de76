"""How sure the linear-map numbers are: a bootstrap over held-out texts, ties, and a random null.

Every relative error is a mean of per-token ratios over the held-out tokens. The held-out tokens
come in texts (tokens of one text are correlated), so the texts are the units resampled: drawing
them with replacement (:func:`depthscope.verdict.bootstrap.draws`, 1000 draws, seed 0) and
recomputing every error from per-text sums (sum of the text's per-token ratios and its token
count, kept by :class:`~depthscope.experiments.maps.ridge.HeldOutMetrics`) gives its sampling
distribution; no map is refitted. The 90 % percentile interval of it is reported for every
(source, target) pair.

**Best target.** For each source boundary the best target (lowest error) is *stated* only when the
runner-up's error minus the best's, compared on the same draws (paired), differs from 0 by
:func:`depthscope.verdict.differences.compare_all` with Holm's correction over the source
boundaries. Otherwise the best targets are tied: the best, the runner-up and every other target
whose paired difference from the best is not shown to be positive (Holm over that row's targets).

**Null.** The same maps fitted from a source of the same architecture with freshly initialised
weights, scored on the same held-out tokens: per source boundary, the null's best error minus the
trained source's best error, paired over the same draws, Holm over the source boundaries.

Saved numbers derived from the draws are rounded to :data:`DIGITS` decimals, interval bounds
outwards (so an interval still holds its value), which keeps them identical however many
processes summed the held-out statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from depthscope.verdict.bootstrap import LEVEL, RESAMPLES, SEED, draws, interval_of, resampled
from depthscope.verdict.differences import ALPHA, compare_all

MIN_UNITS = 10  # fewer held-out texts: a percentile bootstrap over them understates the spread
MARGIN = 0.01  # two relative errors within ±0.01 (90 % interval) are "equivalent"
UNIT = "relative error"
DIGITS = 6


@dataclass
class UnitSums:
    """Per held-out unit: the sums of per-token ratios ``rel[u, m, l]`` and the token count ``n[u]``
    (``base[u, l]``: the same for the constant-map baseline, optional)."""

    rel: np.ndarray  # [U, S, G]
    n: np.ndarray  # [U]
    unit: str = "text"
    base: np.ndarray | None = None  # [U, G]

    @classmethod
    def of(cls, rel, n, unit: str = "text", base=None) -> UnitSums:
        def array(value):
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().double().numpy()
            return None if value is None else np.asarray(value, dtype=float)

        return cls(array(rel), array(n), unit, array(base))

    @property
    def n_units(self) -> int:
        return int(self.n.shape[0])

    def _means(self, sums: np.ndarray) -> np.ndarray:
        """``[U, k]`` per-unit mean ratios (NaN for an empty unit: skipped when resampling)."""
        flat = sums.reshape(self.n_units, -1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n[:, None] > 0, flat / self.n[:, None], np.nan)

    def resampled(self, counts: np.ndarray, baseline: bool = False) -> np.ndarray:
        """``[draws, S, G]`` relative errors of each draw of units (``[draws, G]`` for the
        baseline): ``Σ_u c_u rel_u / Σ_u c_u n_u``, the token-weighted mean of unit means."""
        sums = self.base if baseline else self.rel
        out = resampled(self._means(sums), self.n, counts)
        return out.reshape(counts.shape[0], *sums.shape[1:])


def _down(x: float) -> float:
    low = math.floor(x * 10**DIGITS) / 10**DIGITS
    return low - 10**-DIGITS if low > x else low


def _up(x: float) -> float:
    high = math.ceil(x * 10**DIGITS) / 10**DIGITS
    return high + 10**-DIGITS if high < x else high


def tidy(value):
    """Floats rounded to :data:`DIGITS` decimals, ``low``/``high`` of intervals outwards."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "low" and isinstance(item, float):
                out[key] = _down(item)
            elif key == "high" and isinstance(item, float):
                out[key] = _up(item)
            else:
                out[key] = tidy(item)
        return out
    if isinstance(value, list | tuple):
        return [tidy(item) for item in value]
    if isinstance(value, float) and math.isfinite(value):
        return round(value, DIGITS)
    return value


def matrix_intervals(point: np.ndarray, samples: np.ndarray) -> tuple[list, list]:
    """``(low, high)`` nested lists, the :func:`interval_of` bounds of every entry of ``point``
    (``samples``: ``[draws, *point.shape]``), rounded outwards."""
    point = np.asarray(point, dtype=float)
    flat = samples.reshape(samples.shape[0], -1)
    low, high = [], []
    for k, value in enumerate(point.reshape(-1)):
        found = interval_of(float(value), flat[:, k])
        low.append(None if found.low is None else _down(found.low))
        high.append(None if found.high is None else _up(found.high))
    shape = point.shape
    return np.reshape(low, shape).tolist(), np.reshape(high, shape).tolist()


def _interval_json(value: float, samples: np.ndarray) -> dict:
    return tidy(interval_of(float(value), samples).as_json())


def best_target_tests(point: np.ndarray, samples: np.ndarray, margin: float = MARGIN) -> list:
    """Per source boundary: the best target, its runner-up, their paired difference (Holm over
    the source boundaries), whether the best is stated, and the targets tied with it."""
    point = np.asarray(point, dtype=float)
    n_source, n_target = point.shape
    order = [np.argsort(point[m], kind="stable") for m in range(n_source)]
    if n_target < 2:
        return [
            {"source": m, "best": int(order[m][0]), "stated": True, "tied": [int(order[m][0])]}
            for m in range(n_source)
        ]
    pairs = {}
    for m in range(n_source):
        best, runner = int(order[m][0]), int(order[m][1])
        pairs[str(m)] = (
            point[m, best],
            point[m, runner],
            samples[:, m, best],
            samples[:, m, runner],
        )
    headline = compare_all(pairs, margin=margin, unit=UNIT)
    records = []
    for m in range(n_source):
        best, runner = int(order[m][0]), int(order[m][1])
        difference = headline[str(m)]
        stated = difference.outcome == "differ" and (difference.value or 0.0) > 0
        tied = [best] if stated else _tied(point[m], samples[:, m], best, runner, margin)
        records.append(
            {
                "source": m,
                "best": best,
                "stated": stated,
                "rel_err": _interval_json(point[m, best], samples[:, m, best]),
                "runner_up": runner,
                "runner_up_rel_err": _interval_json(point[m, runner], samples[:, m, runner]),
                "difference": tidy(difference.as_json()),
                "outcome": difference.outcome,
                "tied": tied,
            }
        )
    return records


def _tied(row: np.ndarray, samples: np.ndarray, best: int, runner: int, margin: float) -> list:
    """``best``, ``runner`` and every target whose paired excess over ``best`` is not shown > 0
    (Holm over the row's other targets)."""
    others = {
        str(ell): (row[best], row[ell], samples[:, best], samples[:, ell])
        for ell in range(row.shape[0])
        if ell != best
    }
    found = compare_all(others, margin=margin, unit=UNIT)
    separated = {
        int(ell) for ell, d in found.items() if d.outcome == "differ" and (d.value or 0.0) > 0
    }
    return sorted({best, runner} | (set(range(row.shape[0])) - separated))


def null_tests(
    point: np.ndarray,
    samples: np.ndarray,
    null_point: np.ndarray,
    null_samples: np.ndarray,
    margin: float = MARGIN,
) -> list:
    """Per source boundary: the trained source's best map against the null source's best map on
    the same draws (null error − trained error; > 0 = the trained source predicts the target
    better), Holm over the source boundaries."""
    point, null_point = np.asarray(point, dtype=float), np.asarray(null_point, dtype=float)
    best = point.argmin(axis=1)
    null_best = null_point.argmin(axis=1)
    pairs = {
        str(m): (
            point[m, best[m]],
            null_point[m, null_best[m]],
            samples[:, m, best[m]],
            null_samples[:, m, null_best[m]],
        )
        for m in range(point.shape[0])
    }
    found = compare_all(pairs, margin=margin, unit=UNIT)
    records = []
    for m in range(point.shape[0]):
        difference = found[str(m)]
        records.append(
            {
                "source": m,
                "target": int(best[m]),
                "rel_err": _interval_json(point[m, best[m]], samples[:, m, best[m]]),
                "null_target": int(null_best[m]),
                "null_rel_err": _interval_json(
                    null_point[m, null_best[m]], null_samples[:, m, null_best[m]]
                ),
                "difference": tidy(difference.as_json()),
                "outcome": difference.outcome,
                "beats_null": difference.outcome == "differ" and (difference.value or 0.0) > 0,
            }
        )
    return records


def bootstrap_settings(sums: UnitSums, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """What was resampled, how, and whether there were enough units to do it."""
    enough = sums.n_units >= MIN_UNITS
    return {
        "unit": sums.unit,
        "n_units": sums.n_units,
        "draws": resamples,
        "seed": seed,
        "level": LEVEL,
        "alpha": ALPHA,
        "margin": MARGIN,
        "method": f"percentile bootstrap over held-out {sums.unit}s (whole {sums.unit}s drawn "
        f"with replacement), errors recomputed from per-{sums.unit} sums; paired where two "
        "numbers share the held-out tokens; Holm over source boundaries",
        "computed": enough,
        **(
            {}
            if enough
            else {
                "reason": f"only {sums.n_units} held-out {sums.unit}s; intervals need at least "
                f"{MIN_UNITS} (more --val-tokens)"
            }
        ),
    }


def map_uncertainty(
    rel_err: np.ndarray,
    sums: UnitSums,
    null_rel_err: np.ndarray | None = None,
    null_sums: UnitSums | None = None,
    baseline: np.ndarray | None = None,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict:
    """The result fields of the bootstrap: settings, intervals, best-target tests, null tests
    (the null's own intervals and tests under ``"null"``).

    ``rel_err`` (and ``null_rel_err``) are the reported point errors; the null must have been
    scored on the same held-out units (its draws are the same draws: paired).
    """
    settings = bootstrap_settings(sums, resamples, seed)
    out: dict = {"bootstrap": settings}
    if not settings["computed"]:
        return out
    counts = draws(sums.n_units, resamples, seed)
    rel_err = np.asarray(rel_err, dtype=float)
    samples = sums.resampled(counts)
    out["rel_err_low"], out["rel_err_high"] = matrix_intervals(rel_err, samples)
    if baseline is not None and sums.base is not None:
        low, high = matrix_intervals(baseline, sums.resampled(counts, baseline=True))
        out["rel_err_mean_baseline_low"], out["rel_err_mean_baseline_high"] = low, high
    out["best_target_test"] = best_target_tests(rel_err, samples)
    if null_rel_err is not None and null_sums is not None:
        if null_sums.n_units != sums.n_units or not np.array_equal(null_sums.n, sums.n):
            raise ValueError("the null must be scored on the same held-out units")
        null_samples = null_sums.resampled(counts)
        null_rel_err = np.asarray(null_rel_err, dtype=float)
        low, high = matrix_intervals(null_rel_err, null_samples)
        out["null"] = {
            "rel_err_low": low,
            "rel_err_high": high,
            "best_target_test": best_target_tests(null_rel_err, null_samples),
        }
        out["null_comparison"] = null_tests(rel_err, samples, null_rel_err, null_samples)
    return out
