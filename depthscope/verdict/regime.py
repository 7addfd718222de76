"""Regime or trend: does a depth profile change in a step, or decline smoothly?

Paper §3 reads the profiles as two regimes with a phase transition near the middle. An ordered
profile is not evidence of that by itself: a straight or smooth decline is ordered too. So a
profile is fitted by step-free models and by step models (least squares, on the fit scale: log for
positive ratios and norms), and a transition is named only when a step beats the best step-free fit
by more than the correlated noise of the profile would let it:

- step-free: ``constant``; ``linear`` trend; ``smooth``: a logistic decline or rise
  ``a + h·σ((x − c)/w)`` whose tangent at its midpoint spans at least :data:`SMOOTH_SPAN` of the
  depth (``4w ≥ SMOOTH_SPAN · n``; its centre may lie outside the profile, which covers
  exponential-like curves);
- step: ``two-level`` (``a + h·[x ≥ k]``) and ``step+trend`` (``a + b·x + h·[x ≥ k]``), with ``k``
  leaving at least a sixth of the profile on either side.

The statistic is how much better the best step fit explains the profile than the best step-free
fit once each pays for its parameters: ``D = BIC_free − BIC_step`` with
``BIC = n·log(SSE) + PENALTY·log(n)·k`` (``k``: the shape's parameters, a split counted as one and
a logistic's grid-chosen centre and width as 1.5 together; :data:`PARAMETERS`), and the best model
of each family is the one of lowest BIC. Paying for parameters matters for power: without it the
four-parameter step on a trend wins every comparison, and its extra freedom widens the null far
more than it helps a real step (docs/summary.md's calibration has the rate of
``1 − SSE_step / SSE_free``, penalty 0, beside it). Its null keeps the profile's autocorrelation: a
straight line plus AR(1) noise whose ρ and σ are read off the best step-free fit's residuals (ρ
made median-unbiased for the profile's length by simulation, :data:`RHO_QUANTILE`),
:data:`SIMULATIONS` times with a fixed seed; ``p = (1 + #{D* ≥ D}) / (1 + SIMULATIONS)``. The line
is the step-free mean both families fit exactly, so ``D*`` measures the noise alone, while a
curved step-free mean (which the step fits miss) lowers ``D*``. Profiles are fitted after
:func:`winsorized` pulls in single outlying layers. A step counts when ``p ≤ ALPHA``, it goes the
expected way, and the two levels differ by at least :data:`MIN_STEP`. Calibration (false-positive
rate and power on simulated shapes): :mod:`depthscope.verdict.calibration`, docs/summary.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

SMOOTH_SPAN = 1 / 3  # a smooth decline's midpoint tangent spans at least a third of the depth
PENALTY = 1.0  # BIC: each parameter costs log(n) in n·log(SSE)
# a logistic's centre and width come from a grid (41 × 8 shapes), not a free fit: 1.5 together
PARAMETERS = {"constant": 1, "linear": 2, "smooth": 3.5, "two-level": 3, "step+trend": 4}
RHO_QUANTILE = 0.5  # the null's ρ: the one whose median estimate is the observed one
ALPHA = 0.05  # a step must beat the step-free fit more than 95 % of null simulations do
SIMULATIONS = 999  # null simulations per profile: p-values in steps of 0.001
MIN_STEP = 0.25  # |right − left| / max(|left|, |right|) of the fitted levels at the split
MIN_SEGMENT_FRACTION = 1 / 6  # a regime spans at least a sixth of the profile ...
MIN_SEGMENT = 2  # ... and at least two entries
LOG_FLOOR = 1e-3  # positive profiles are fitted in log scale, clipped at this fraction of the max
WINSOR_SD = 3.0  # single entries further than this many noise SDs beyond the 10–90 % range
SEED = 0
FREE_MODELS = ("constant", "linear", "smooth")
STEP_MODELS = ("two-level", "step+trend")
_CENTRES = 41  # logistic centres over [−n/2, 3n/2] ...
_WIDTHS = 8  # ... and widths from the smallest allowed to ten times it
_RHO_GRID = np.linspace(0.0, 0.97, 25)
LINEAR = 1  # index of the linear model in :class:`Models`


def min_segment(n: int) -> int:
    return max(MIN_SEGMENT, int(np.ceil(n * MIN_SEGMENT_FRACTION)))


def fit_scale(raw: np.ndarray, log: bool) -> np.ndarray:
    """Rows as fitted: ``log y`` (clipped at :data:`LOG_FLOOR` of each row's max) or ``y``."""
    raw = np.asarray(raw, dtype=float)
    if not log:
        return raw
    top = np.maximum(np.max(raw, axis=-1, keepdims=True), 1e-30)
    return np.log(np.maximum(raw, LOG_FLOOR * top))


def winsorized(rows: np.ndarray) -> np.ndarray:
    """Rows with single outlying entries pulled in: values beyond the row's 10–90 % range by more
    than :data:`WINSOR_SD` noise standard deviations (read off the median absolute deviation of
    neighbour differences, which a step barely moves) are clipped there. The paper's special
    first and top layers are single-layer events, not regimes; a regime spans at least a sixth
    of the profile, more than the 10 % tails, so it is never clipped."""
    rows = np.atleast_2d(np.asarray(rows, dtype=float))
    steps = np.diff(rows, axis=1)
    centred = np.abs(steps - np.median(steps, axis=1, keepdims=True))
    scale = 1.4826 * np.median(centred, axis=1, keepdims=True) / np.sqrt(2.0)
    low, high = np.percentile(rows, [10, 90], axis=1, keepdims=True)
    return np.clip(rows, low - WINSOR_SD * scale, high + WINSOR_SD * scale)


def prepared(rows: np.ndarray, log: bool) -> np.ndarray:
    """Rows as the rule fits them: on the fit scale, single outliers winsorized."""
    return winsorized(fit_scale(rows, log))


def _basis(columns: list[np.ndarray]) -> np.ndarray:
    q, _ = np.linalg.qr(np.column_stack(columns))
    return q


@dataclass(frozen=True)
class Model:
    """One fitted shape: its family, the split (step models) and the basis it spans."""

    family: str
    split: int | None  # position (index of x) where the second level starts
    basis: np.ndarray = field(repr=False)


class Models:
    """Every step-free and step model on the positions ``x`` (layer indices of the finite
    entries), as orthonormal bases: the least-squares cost of each model for many rows is a few
    matrix products."""

    def __init__(
        self, x: tuple[float, ...], smooth_span: float = SMOOTH_SPAN, penalty: float = PENALTY
    ) -> None:
        x_arr = np.asarray(x, dtype=float)
        n = x_arr.size
        self.x = x_arr
        one = np.ones(n)
        span = x_arr[-1] - x_arr[0] + 1
        w_min = smooth_span * span / 4
        models = [
            Model("constant", None, _basis([one])),
            Model("linear", None, _basis([one, x_arr])),
        ]
        centres = np.linspace(x_arr[0] - span / 2, x_arr[-1] + span / 2, _CENTRES)
        for w in w_min * np.geomspace(1.0, 10.0, _WIDTHS):
            for c in centres:
                curve = 1.0 / (1.0 + np.exp(-(x_arr - c) / w))
                models.append(Model("smooth", None, _basis([one, curve])))
        edge = min(min_segment(n), n // 2)
        self.splits = list(range(edge, n - edge + 1))
        for k in self.splits:
            models.append(Model("two-level", k, _basis([one, (np.arange(n) >= k) * 1.0])))
        for k in self.splits:
            models.append(Model("step+trend", k, _basis([one, x_arr, (np.arange(n) >= k) * 1.0])))
        self.models = models
        self.free = np.array([m.family in FREE_MODELS for m in models])
        self.penalty = penalty  # per parameter, in units of log(n)
        self.penalties = penalty * np.log(n) * np.array([PARAMETERS[m.family] for m in models])
        self._stacked = np.concatenate([m.basis for m in models], axis=1)
        widths = [m.basis.shape[1] for m in models]
        self._edges = np.concatenate([[0], np.cumsum(widths)])

    def costs(self, rows: np.ndarray) -> np.ndarray:
        """``[rows, models]``: the residual sum of squares of every model for every row."""
        rows = np.atleast_2d(rows)
        projected = np.cumsum((rows @ self._stacked) ** 2, axis=1)
        projected = np.concatenate([np.zeros((rows.shape[0], 1)), projected], axis=1)
        explained = projected[:, self._edges[1:]] - projected[:, self._edges[:-1]]
        return np.maximum((rows**2).sum(axis=1)[:, None] - explained, 0.0)

    def criteria(self, rows: np.ndarray, costs: np.ndarray) -> np.ndarray:
        """``[rows, models]``: each model's BIC, ``n·log(SSE) + penalty``. An exact fit's SSE is
        floored at a tiny share of the row's spread, so exact fits tie and the simpler one wins."""
        rows = np.atleast_2d(rows)
        spread = ((rows - rows.mean(axis=1, keepdims=True)) ** 2).sum(axis=1, keepdims=True)
        floor = np.maximum(1e-12 * spread, 1e-300)
        return rows.shape[1] * np.log(np.maximum(costs, floor)) + self.penalties[None, :]

    def best(self, criteria: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the best (lowest-BIC) step-free and step model per row."""
        free = np.where(self.free[None, :], criteria, np.inf).argmin(axis=1)
        step = np.where(~self.free[None, :], criteria, np.inf).argmin(axis=1)
        return free, step

    def statistic(
        self, rows: np.ndarray, costs: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``D = BIC_free − BIC_step`` per row, with the best models' indices (``costs``: the
        rows' :meth:`costs` when the caller has them already)."""
        rows = np.atleast_2d(rows)
        criteria = self.criteria(rows, self.costs(rows) if costs is None else costs)
        free, step = self.best(criteria)
        index = np.arange(criteria.shape[0])
        return criteria[index, free] - criteria[index, step], free, step

    def fitted(self, y: np.ndarray, model: int) -> np.ndarray:
        basis = self.models[model].basis
        return basis @ (basis.T @ y)

    def step_costs(self, rows: np.ndarray) -> np.ndarray:
        """``[rows, splits]``: the best step model's cost at each split over the best step-free
        cost (1 = a step there fits no better than a smooth shape)."""
        rows = np.atleast_2d(rows)
        costs = self.costs(rows)
        free, _ = self.best(self.criteria(rows, costs))
        base = costs[np.arange(costs.shape[0]), free][:, None]
        n_splits = len(self.splits)
        two, trend = costs[:, -2 * n_splits : -n_splits], costs[:, -n_splits:]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(base > 0, np.minimum(two, trend) / base, 1.0)


@lru_cache(maxsize=64)
def models_for(
    x: tuple[float, ...], smooth_span: float = SMOOTH_SPAN, penalty: float = PENALTY
) -> Models:
    return Models(x, smooth_span, penalty)


def lag1(residuals: np.ndarray) -> np.ndarray:
    r = residuals - residuals.mean(axis=-1, keepdims=True)
    denominator = np.maximum((r**2).sum(axis=-1), 1e-300)
    return (r[..., 1:] * r[..., :-1]).sum(axis=-1) / denominator


def ar1(rng: np.random.Generator, rho: float, sigma: float, rows: int, n: int) -> np.ndarray:
    """``[rows, n]`` stationary AR(1) series with innovation scale ``sigma``."""
    shocks = rng.normal(0.0, sigma, (rows, n))
    out = np.empty((rows, n))
    out[:, 0] = shocks[:, 0] / np.sqrt(max(1.0 - rho**2, 1e-6))
    for t in range(1, n):
        out[:, t] = rho * out[:, t - 1] + shocks[:, t]
    return out


def _null_residuals(models: Models, rows: np.ndarray) -> np.ndarray:
    """Residuals of each row's best step-free fit: the noise is estimated under the null."""
    _, free, _ = models.statistic(rows)
    return np.stack([row - models.fitted(row, int(f)) for row, f in zip(rows, free, strict=True)])


@lru_cache(maxsize=64)
def _rho_bias(
    x: tuple[float, ...], quantile: float = RHO_QUANTILE, penalty: float = PENALTY
) -> np.ndarray:
    """For each ρ of :data:`_RHO_GRID`, the ``quantile`` (:data:`RHO_QUANTILE`: the median) of
    the lag-1 autocorrelation of the step-free fit's residuals under AR(1) noise: fitting absorbs
    part of the correlation, and inverting this curve undoes it (a median-unbiased ρ; a lower
    quantile leans to the larger ρ)."""
    models = models_for(x, SMOOTH_SPAN, penalty)
    rng = np.random.default_rng(SEED + 1)
    quantiles = []
    for rho in _RHO_GRID:
        series = winsorized(ar1(rng, float(rho), 1.0, 300, len(x)))
        estimates = lag1(_null_residuals(models, series))
        quantiles.append(float(np.quantile(estimates, quantile)))
    return np.maximum.accumulate(np.array(quantiles))


def noise_of(models: Models, y: np.ndarray, quantile: float = RHO_QUANTILE) -> tuple[float, float]:
    """(ρ, σ) of the AR(1) noise around the best step-free fit of ``y``: ρ read off
    :func:`_rho_bias`, at least 0; σ the innovations' scale."""
    residual = _null_residuals(models, y[None, :])[0]
    observed = float(lag1(residual))
    curve = _rho_bias(tuple(models.x), quantile, models.penalty)
    rho = float(np.interp(observed, curve, _RHO_GRID))
    innovations = residual[1:] - rho * residual[:-1]
    dof = max(residual.size - 1 - 3, 1)
    return rho, float(np.sqrt((innovations**2).sum() / dof))


@dataclass(frozen=True)
class Regime:
    """A profile's step-versus-trend comparison and its decision."""

    decision: str  # "step", "gradual", "flat"
    reason: str  # why there is no step ("" when there is)
    index: int | None  # first index of the second level of the best step fit (input indices)
    statistic: float  # D = BIC_free − BIC_step
    p_value: float
    p_adjusted: float  # after Holm's correction over the indicators judged together
    fits: dict[str, float]  # each family's best residual sum of squares
    best_free: str
    best_step: str
    left: float  # fitted level just before the split (original scale)
    right: float  # fitted level at the split
    change: float  # linear trend: change from the first to the last entry (fit scale)
    rho: float  # the null's AR(1) correlation and innovation scale
    sigma: float
    log: bool
    expected: str | None
    n: int
    smooth_span: float
    penalty: float
    null: np.ndarray = field(repr=False, compare=False)  # null statistics, sorted
    x: np.ndarray = field(repr=False, compare=False)  # positions fitted

    @property
    def direction(self) -> str:
        return "down" if self.right < self.left else "up"

    @property
    def step_size(self) -> float:
        scale = max(abs(self.left), abs(self.right))
        return abs(self.right - self.left) / scale if scale > 0 else 0.0

    @property
    def significant(self) -> bool:
        return self.decision == "step"

    def p_values(self, statistics: np.ndarray) -> np.ndarray:
        """p-values of other statistics (bootstrap draws) against this profile's null."""
        beaten = self.null.size - np.searchsorted(self.null, statistics - 1e-12, side="left")
        return (1 + beaten) / (1 + self.null.size)

    def as_json(self) -> dict:
        return {
            "decision": self.decision,
            "reason": self.reason,
            "split": self.index,
            "statistic": round(self.statistic, 4),
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "alpha": ALPHA,
            "fits": {k: round(v, 6) for k, v in self.fits.items()},
            "best_step_free": self.best_free,
            "best_step": self.best_step,
            "levels": [self.left, self.right],
            "step_size": round(self.step_size, 4),
            "direction": self.direction,
            "expected": self.expected,
            "trend_change": round(self.change, 4),
            "scale": "log" if self.log else "linear",
            "null": {
                "model": "best step-free fit + AR(1) noise",
                "rho": self.rho,
                "sigma": self.sigma,
                "simulations": int(self.null.size),
            },
        }


def jump_levels(
    fitted: np.ndarray, splits: np.ndarray, x: np.ndarray, log: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(level just before, level at) the split of each row's step fit, on the original scale.

    Only the jump counts: a step+trend fit's level before the split is its trend carried to
    the split, so a steep trend alone is never a step. ``fitted`` ``[rows, n]`` holds each row's
    fitted step model, ``splits`` its split positions (both segments span at least two entries).
    """
    fitted = np.atleast_2d(fitted)
    index = np.arange(fitted.shape[0])
    k = np.asarray(splits)
    after, before, next_ = fitted[index, k], fitted[index, k - 1], fitted[index, k + 1]
    slope = (next_ - after) / (x[k + 1] - x[k])
    right = after
    left = before + slope * (x[k] - x[k - 1])
    return (np.exp(left), np.exp(right)) if log else (left, right)


def _trend_change(models: Models, rows: np.ndarray) -> np.ndarray:
    """Per row: the linear fit's change from the first to the last position (fit scale)."""
    x = models.x - models.x.mean()
    slope = (rows - rows.mean(axis=1, keepdims=True)) @ x / max(float(x @ x), 1e-300)
    return slope * (models.x[-1] - models.x[0])


def regime(
    values,
    expected: str | None = None,
    *,
    log: bool = False,
    alpha: float = ALPHA,
    min_step: float = MIN_STEP,
    smooth_span: float = SMOOTH_SPAN,
    penalty: float = PENALTY,
    rho_quantile: float = RHO_QUANTILE,
    simulations: int = SIMULATIONS,
    seed: int = SEED,
) -> Regime | None:
    """Step or trend for one profile (non-finite entries dropped; indices refer to the input).

    None when fewer than ``4 · MIN_SEGMENT`` entries are finite or the profile is flat.
    """
    raw = np.asarray(values, dtype=float)
    keep = np.nonzero(np.isfinite(raw))[0]
    if keep.size < 4 * MIN_SEGMENT:
        return None
    y = prepared(raw[keep], log)[0]
    if float(np.ptp(y)) <= 1e-12 * max(float(np.abs(y).max()), 1e-30):
        return None
    models = models_for(tuple(float(i) for i in keep), smooth_span, penalty)
    costs = models.costs(y[None, :])[0]
    statistics, free, step = models.statistic(y[None, :], costs[None, :])
    statistic, free, step = float(statistics[0]), int(free[0]), int(step[0])
    rho, sigma = noise_of(models, y, rho_quantile)
    rng = np.random.default_rng(seed)
    baseline = models.fitted(y, LINEAR)  # the step-free mean both families fit: see module doc
    simulated = winsorized(baseline[None, :] + ar1(rng, rho, sigma, simulations, y.size))
    null, _, _ = models.statistic(simulated)
    null = np.sort(null)
    p_value = float((1 + (null >= statistic - 1e-12).sum()) / (1 + simulations))
    k = models.models[step].split
    left, right = (
        float(v[0]) for v in jump_levels(models.fitted(y, step), np.array([k]), models.x, log)
    )
    fits = {
        family: float(
            min(c for c, m in zip(costs, models.models, strict=True) if m.family == family)
        )
        for family in (*FREE_MODELS, *STEP_MODELS)
    }
    change = float(_trend_change(models, y[None, :])[0])
    found = Regime(
        decision="",
        reason="",
        index=int(keep[k]),
        statistic=float(statistic),
        p_value=p_value,
        p_adjusted=p_value,
        fits=fits,
        best_free=models.models[free].family,
        best_step=models.models[step].family,
        left=left,
        right=right,
        change=change,
        rho=rho,
        sigma=sigma,
        log=log,
        expected=expected,
        n=int(keep.size),
        smooth_span=smooth_span,
        penalty=penalty,
        null=null,
        x=keep,
    )
    return judged(found, p_value, alpha, min_step)


def judged(
    found: Regime, p_value: float, alpha: float = ALPHA, min_step: float = MIN_STEP
) -> Regime:
    """``found`` decided with ``p_value`` (its own, or Holm-adjusted over several profiles)."""
    decision, reason = _decide(found, p_value, alpha, min_step)
    return dataclasses.replace(found, decision=decision, reason=reason, p_adjusted=p_value)


def _decide(found: Regime, p_value: float, alpha: float, min_step: float) -> tuple[str, str]:
    if p_value > alpha:
        shown = f"p = {found.p_value:.3f}"
        if abs(p_value - found.p_value) > 1e-12:
            shown += f", Holm-adjusted {p_value:.3f}"
        reason = (
            f"a step at {found.index} fits no better than a {found.best_free} shape beyond "
            f"correlated noise ({shown} > {alpha:g})"
        )
    elif found.expected is not None and found.direction != found.expected:
        reason = f"the step at {found.index} goes the wrong way (a {'rise' if found.expected == 'down' else 'drop'})"
    elif found.step_size < min_step:
        reason = f"the step at {found.index} changes the level by {found.step_size:.0%} (< {min_step:.0%})"
    else:
        return "step", ""
    return ("gradual" if _trend_clear(found) else "flat"), reason


def _trend_clear(found: Regime) -> bool:
    """A trend as large as the step rule asks of a step (else the profile is called flat)."""
    if found.log:
        return 1.0 - np.exp(-abs(found.change)) >= MIN_STEP
    scale = max(abs(found.left), abs(found.right), 1e-30)
    return abs(found.change) / scale >= MIN_STEP


def draw_splits(found: Regime, draws: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Per bootstrap draw of the profile: the split of its best step fit where that step passes
    the same rule against the all-prompt profile's null, else NaN."""
    draws = np.atleast_2d(np.asarray(draws, dtype=float))[:, found.x]
    out = np.full(draws.shape[0], np.nan)
    finite = np.isfinite(draws).all(axis=1)
    if not finite.any():
        return out
    rows = prepared(draws[finite], found.log)
    models = models_for(tuple(float(i) for i in found.x), found.smooth_span, found.penalty)
    statistic, _, step = models.statistic(rows)
    p = found.p_values(statistic)
    splits = np.array([models.models[s].split for s in step])
    fitted = np.stack([models.fitted(r, int(s)) for r, s in zip(rows, step, strict=True)])
    left, right = jump_levels(fitted, splits, models.x, found.log)
    scale = np.maximum(np.abs(left), np.abs(right))
    with np.errstate(invalid="ignore", divide="ignore"):
        size = np.where(scale > 0, np.abs(right - left) / scale, 0.0)
    ok = (p <= alpha) & (size >= MIN_STEP)
    if found.expected is not None:
        ok &= (right < left) == (found.expected == "down")
    result = np.where(ok, found.x[splits].astype(float), np.nan)
    out[np.nonzero(finite)[0]] = result
    return out


def draw_changes(found: Regime, draws: np.ndarray) -> np.ndarray:
    """Per bootstrap draw: the linear trend's change over the profile (fit scale)."""
    draws = np.atleast_2d(np.asarray(draws, dtype=float))[:, found.x]
    out = np.full(draws.shape[0], np.nan)
    finite = np.isfinite(draws).all(axis=1)
    if finite.any():
        models = models_for(tuple(float(i) for i in found.x), found.smooth_span)
        out[finite] = _trend_change(models, prepared(draws[finite], found.log))
    return out


def holm(p_values: dict[str, float], alpha: float = ALPHA) -> dict[str, bool]:
    """Which hypotheses Holm's step-down procedure rejects at family-wise level ``alpha``."""
    order = sorted(p_values, key=lambda name: p_values[name])
    rejected, m = {}, len(order)
    still = True
    for rank, name in enumerate(order):
        still = still and p_values[name] <= alpha / (m - rank)
        rejected[name] = still
    return rejected


def holm_adjusted(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-adjusted p-values (monotone, capped at 1)."""
    order = sorted(p_values, key=lambda name: p_values[name])
    adjusted, running, m = {}, 0.0, len(order)
    for rank, name in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[name]))
        adjusted[name] = running
    return adjusted
