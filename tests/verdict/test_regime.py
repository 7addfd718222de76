"""Step or trend: the fits against a naive least-squares fit, and the rule on shapes with a known
answer (steps, ramps, smooth declines, noise, outlying layers, the wrong direction)."""

from __future__ import annotations

import numpy as np
import pytest

from depthscope.verdict import regime

L = 30


def step(n: int, at: int, before: float, after: float) -> np.ndarray:
    return np.where(np.arange(n) < at, before, after).astype(float)


def test_every_model_cost_equals_a_naive_least_squares_fit():
    """The projection trick gives each model's residual sum of squares exactly."""
    rng = np.random.default_rng(0)
    x = tuple(float(i) for i in [0, 1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13])  # gaps: NaN dropped
    models = regime.Models(x)
    rows = rng.normal(size=(3, len(x)))
    costs = models.costs(rows)
    xs = np.asarray(x)
    for j, model in enumerate(models.models):
        n = len(x)
        one = np.ones(n)
        if model.family == "constant":
            design = one[:, None]
        elif model.family == "linear":
            design = np.column_stack([one, xs])
        elif model.family == "two-level":
            design = np.column_stack([one, np.arange(n) >= model.split])
        elif model.family == "step+trend":
            design = np.column_stack([one, xs, np.arange(n) >= model.split])
        else:  # smooth: the basis spans [1, logistic curve]; check it is a 2-column span with 1
            assert model.basis.shape[1] == 2
            design = np.column_stack([one, model.basis[:, 1]])
        for r, row in enumerate(rows):
            coef = np.linalg.lstsq(design, row, rcond=None)[0]
            naive = float(((row - design @ coef) ** 2).sum())
            assert costs[r, j] == pytest.approx(naive, abs=1e-9), (model.family, model.split)


def test_a_clean_step_is_a_step_at_its_place():
    found = regime.regime(step(L, 12, 1.0, 0.1), "down", log=True)
    assert found.decision == "step" and found.index == 12
    assert found.best_step in regime.STEP_MODELS
    assert found.left == pytest.approx(1.0) and found.right == pytest.approx(0.1)
    assert found.p_value == pytest.approx(1 / (1 + regime.SIMULATIONS))


def test_noisy_steps_are_found_near_their_place():
    for seed in range(10):
        rng = np.random.default_rng(seed)
        noisy = step(L, 17, 1.0, 0.25) * rng.lognormal(0.0, 0.1, L)
        found = regime.regime(noisy, "down", log=True)
        assert found.significant and abs(found.index - 17) <= 1, (seed, found)


def test_a_straight_or_smooth_decline_is_no_transition():
    """A noiseless ramp got a 'transition' at layer 17 (p = 0.001) from the permutation rule."""
    x = np.arange(L)
    for name, profile in {
        "ramp": 1.0 - 0.8 * x / (L - 1),
        "exponential": np.exp(-x / 10),
        "logistic over half the depth": 0.2 + 0.8 / (1 + np.exp((x - 14.5) / (L / 8))),
    }.items():
        found = regime.regime(profile, "down", log=True)
        assert not found.significant, name
        assert found.decision == "gradual", name
        assert found.change < 0, name


def test_a_flat_profile_is_none_and_short_profiles_are_refused():
    assert regime.regime(np.full(L, 0.7), "down") is None
    assert regime.regime([1.0, 0.5, 0.2, 0.1, 0.05, 0.01, 0.0], "down") is None


def test_the_wrong_direction_and_small_steps_are_no_transition():
    rising = regime.regime(step(L, 10, 0.1, 1.0), "down", log=True)
    assert rising.index == 10 and rising.direction == "up" and not rising.significant
    assert "wrong way" in rising.reason
    assert regime.regime(step(L, 10, 0.1, 1.0), "up", log=True).significant
    small = regime.regime(step(L, 10, 1.0, 0.9), "down")  # a clean but 10 % step
    assert small.p_value < regime.ALPHA and not small.significant
    assert "10%" in small.reason


def test_outlying_first_layers_do_not_move_the_split():
    """Real future-effect profiles: layers 0-1 are several times larger than the rest."""
    for seed in range(6):
        noise = np.random.default_rng(seed).lognormal(0.0, 0.1, L)
        profile = step(L, 20, 0.5, 0.15) * noise
        profile[:2] = [4.0, 2.0]
        found = regime.regime(profile, "down", log=True)
        assert found.significant and abs(found.index - 20) <= 1, (seed, found)


def test_nan_entries_are_dropped_and_indices_kept():
    values = step(L, 12, 1.0, 0.1)
    values[[3, 20]] = np.nan
    found = regime.regime(values, "down", log=True)
    assert found.index == 12 and found.n == L - 2


def test_bootstrap_draws_are_judged_like_the_profile():
    rng = np.random.default_rng(3)
    profile = step(L, 15, 1.0, 0.3)
    found = regime.regime(profile, "down", log=True)
    draws = profile[None, :] * rng.lognormal(0.0, 0.05, (50, L))
    splits = regime.draw_splits(found, np.concatenate([profile[None, :], draws]))
    assert splits[0] == found.index  # the profile itself, as a draw
    assert np.all(np.abs(splits[1:] - 15) <= 1)
    flat = np.full((5, L), 0.5) * rng.lognormal(0.0, 0.05, (5, L))
    assert np.isnan(regime.draw_splits(found, flat)).all()


def test_the_null_correlation_is_median_unbiased():
    """ρ is read off the step-free fit's residuals, corrected for what fitting absorbs: its median
    over profiles is the true ρ, and it stays low for iid noise."""
    models = regime.models_for(tuple(map(float, range(L))))
    estimates = []
    for seed in range(80):
        noise = regime.winsorized(regime.ar1(np.random.default_rng(seed), 0.6, 0.1, 1, L))[0]
        estimates.append(regime.noise_of(models, noise)[0])
    assert 0.45 <= float(np.median(estimates)) <= 0.75
    iid = np.random.default_rng(0).normal(0, 0.1, (40, L))
    rhos = [regime.noise_of(models, r)[0] for r in regime.winsorized(iid)]
    assert float(np.median(rhos)) < 0.25


def test_holm_rejects_step_down():
    p = {"a": 0.001, "b": 0.02, "c": 0.04, "d": 0.3}
    assert regime.holm(p, 0.05) == {"a": True, "b": False, "c": False, "d": False}
    assert regime.holm({"a": 0.001, "b": 0.02}, 0.05) == {"a": True, "b": True}
    adjusted = regime.holm_adjusted(p)
    assert adjusted["a"] == pytest.approx(0.004) and adjusted["b"] == pytest.approx(0.06)
    assert adjusted["c"] == pytest.approx(0.08) and adjusted["d"] == pytest.approx(0.3)
