"""How often the step rule names a transition that is not there, and finds one that is.

Profiles of ``n`` layers are simulated on the original scale of a positive indicator and fitted
in log scale, as the verdict fits effects, output changes, relative contributions and KL:

- **step-free shapes** (a named transition is a false positive): flat; a linear ramp from 1 to 0.2;
  an exponential decline ``exp(−x / (n/3))``; a logistic decline from 1 to 0.25 whose midpoint
  tangent spans a third of the depth (the smoothest shape the rule still calls smooth);
- **steps** (a named transition is a hit): a drop by 1.5×, 2× or 3× at mid-depth;

each times ``exp(ε)`` with AR(1) noise ``ε`` (correlation ρ between neighbouring layers, marginal
standard deviation σ in log scale). The rate is the share of seeded simulations in which
:func:`depthscope.verdict.regime.regime` decides "step" with the expected direction (down).
``docs/make_findings.py --calibration`` writes the table of docs/summary.md from
:func:`calibrate`; the tests hold the rates with fixed seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from depthscope.verdict.regime import ALPHA, SMOOTH_SPAN, ar1, models_for, regime
from depthscope.verdict.sensitivity import RANGES


def _x(n: int) -> np.ndarray:
    return np.arange(n, dtype=float)


def flat(n: int) -> np.ndarray:
    return np.ones(n)


def ramp(n: int) -> np.ndarray:
    return 1.0 - 0.8 * _x(n) / (n - 1)


def exponential(n: int) -> np.ndarray:
    return np.exp(-_x(n) / (n / 3))


def logistic(n: int) -> np.ndarray:
    width = SMOOTH_SPAN * n / 4  # midpoint tangent spans SMOOTH_SPAN of the depth
    return 0.25 + 0.75 / (1.0 + np.exp((_x(n) - (n - 1) / 2) / width))


def step(factor: float) -> Callable[[int], np.ndarray]:
    def shape(n: int) -> np.ndarray:
        return np.where(_x(n) >= n // 2, 1.0 / factor, 1.0)

    return shape


SHAPES: dict[str, tuple[Callable[[int], np.ndarray], bool]] = {
    "flat": (flat, False),
    "linear ramp": (ramp, False),
    "exponential decline": (exponential, False),
    "logistic decline over a third": (logistic, False),
    "1.5× step": (step(1.5), True),
    "2× step": (step(2.0), True),
    "3× step": (step(3.0), True),
}


@dataclass(frozen=True)
class Scenario:
    shape: str
    rho: float
    sigma: float  # marginal standard deviation of the log-scale noise

    @property
    def has_step(self) -> bool:
        return SHAPES[self.shape][1]

    @property
    def measures(self) -> str:
        return "power" if self.has_step else "false-positive rate"

    def row(self, rate: float, lead: dict | None = None, **context) -> dict:
        """The scenario's rate as a table row: ``lead`` keys first, then the scenario, then
        ``context`` (how it was simulated), then what the rate measures and the rate."""
        scenario = {"shape": self.shape, "rho": self.rho, "sigma": self.sigma}
        return {**(lead or {}), **scenario, **context, "measures": self.measures, "rate": rate}


def simulate(scenario: Scenario, n: int, seed: int) -> np.ndarray:
    """One noisy profile (original scale)."""
    make, _ = SHAPES[scenario.shape]
    rng = np.random.default_rng([seed, n, int(scenario.rho * 100), int(scenario.sigma * 1000)])
    innovation = scenario.sigma * np.sqrt(1.0 - scenario.rho**2)
    noise = ar1(rng, scenario.rho, innovation, 1, n)[0]
    return make(n) * np.exp(noise)


def rate(
    scenario: Scenario,
    n: int = 30,
    seeds: int = 200,
    alpha: float = ALPHA,
    first_seed: int = 0,
    **rule: float,
) -> float:
    """Share of ``seeds`` simulations (seeds ``first_seed, first_seed + 1, …``) in which the rule
    (its constants overridden by ``rule``, e.g. ``penalty``) names a (downward) transition."""
    found = 0
    for seed in range(first_seed, first_seed + seeds):
        profile = simulate(scenario, n, seed)
        result = regime(profile, "down", log=True, alpha=alpha, seed=seed, **rule)
        found += bool(result is not None and result.significant)
    return found / seeds


def scenarios() -> list[Scenario]:
    """The documented table: every step-free shape at ρ ∈ {0, 0.5, 0.8}, every step at
    ρ ∈ {0, 0.5}, each at σ ∈ {0.1, 0.2}."""
    out = []
    for shape, (_, has_step) in SHAPES.items():
        for rho in (0.0, 0.5) if has_step else (0.0, 0.5, 0.8):
            for sigma in (0.1, 0.2):
                out.append(Scenario(shape, rho, sigma))
    return out


def calibrate(
    chosen: Iterable[Scenario] | None = None, n: int = 30, seeds: int = 200
) -> list[dict]:
    """One row per scenario: the rate, and whether it is a false-positive rate or power."""
    return [
        scenario.row(rate(scenario, n, seeds), n_layers=n, seeds=seeds, alpha=ALPHA)
        for scenario in chosen or scenarios()
    ]


SENSITIVE = (  # the scenarios nearest the rule's limits in the table
    Scenario("flat", 0.8, 0.2),
    Scenario("linear ramp", 0.0, 0.1),
    Scenario("logistic decline over a third", 0.0, 0.2),
    Scenario("2× step", 0.0, 0.2),
)


def constants_sensitivity(n: int = 30, seeds: int = 200) -> list[dict]:
    """The rates of :data:`SENSITIVE` as the penalty per parameter and the null's ρ quantile move
    over their documented ranges (one at a time, the other at its default): the constants were
    chosen on these simulations, so a reader sees what the choice bought and what it cost."""
    return [
        scenario.row(
            rate(scenario, n, seeds, **{constant: value}), {"constant": constant, "value": value}
        )
        for constant in ("penalty", "rho_quantile")
        for value in RANGES[constant]
        for scenario in SENSITIVE
    ]


HELD_OUT_SEED = 20_000  # seeds the constants were not chosen on


def held_out(n: int = 30, seeds: int = 200) -> list[dict]:
    """:data:`SENSITIVE` with the chosen constants on seeds from :data:`HELD_OUT_SEED`: rates the
    choice of constants never saw."""
    return [
        scenario.row(rate(scenario, n, seeds, first_seed=HELD_OUT_SEED), first_seed=HELD_OUT_SEED)
        for scenario in SENSITIVE
    ]


def bounds(n: int = 30, sigma: float = 0.2, factor: float = 2.0, sims: int = 4000) -> dict:
    """What a step of ``factor`` at mid-depth under iid noise ``sigma`` allows any rule that
    keeps the smoothest step-free decline (:func:`logistic`) at ``ALPHA``:

    - ``neyman_pearson``: the power of the best test of exactly that logistic against exactly
      that step, ``Φ(√λ − z_{1−α})`` with ``λ`` the squared distance of the step from the
      nearest step-free fit over ``σ²`` (no rule that must also find other steps can beat it);
    - ``known_noise``: the power of the rule's own statistic if the noise were known to be
      independent with standard deviation ``sigma`` (critical value simulated at the logistic),
      which the rule cannot assume: neighbouring layers' noise may be correlated.
    """
    x = tuple(float(i) for i in range(n))
    models = models_for(x)
    step_profile = np.log(step(factor)(n))
    costs = models.costs(step_profile[None, :])[0]
    distance = float(costs[models.free].min())
    normal = NormalDist()
    neyman = normal.cdf(np.sqrt(distance) / sigma - normal.inv_cdf(1 - ALPHA))
    rng = np.random.default_rng(0)
    smooth = np.log(logistic(n))
    smooth = smooth - smooth.mean() + step_profile.mean()
    null, _, _ = models.statistic(smooth[None, :] + rng.normal(0, sigma, (sims, n)))
    hits, _, _ = models.statistic(step_profile[None, :] + rng.normal(0, sigma, (sims, n)))
    critical = float(np.quantile(null, 1 - ALPHA))
    return {
        "n_layers": n,
        "sigma": sigma,
        "factor": factor,
        "alpha": ALPHA,
        "neyman_pearson": round(float(neyman), 4),
        "known_noise": round(float((hits > critical).mean()), 4),
    }
