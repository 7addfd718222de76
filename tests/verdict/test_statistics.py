"""The verdict's statistics on arrays: resampling prompts and split points, paired and independent
differences with Holm and equivalence margins, the effective depth, and the row-wise thresholded
rules against their one-profile versions."""

from __future__ import annotations

import numpy as np
import pytest

from depthscope.verdict import bootstrap, depth, differences, rules


def test_split_resampling_equals_a_naive_loop_over_draws():
    """Each drawn copy of a prompt draws its split points again; its profile is the max over the
    distinct split points drawn. The vectorised draws equal one loop per draw and copy."""
    rng = np.random.default_rng(0)
    splits = [rng.random((4, 6)), rng.random((2, 6)), rng.random((3, 6))]
    splits[1][0, 2] = np.nan  # a missing entry is skipped, not counted as zero
    weights = np.array([1.0, 2.0, 0.5])

    def of_max(block):
        return block * 10.0

    fast = bootstrap.split_resampled(splits, weights, of_max, resamples=40, seed=3)
    counts = bootstrap.draws(3, 40, 3)
    picks_rng = np.random.default_rng([3, 1])
    most = int(counts.max())
    picks = [picks_rng.integers(0, s.shape[0], size=(40, most, s.shape[0])) for s in splits]
    for d in range(40):
        total, mass = np.zeros(6), np.zeros(6)
        for p, block in enumerate(splits):
            for copy in range(int(counts[d, p])):
                chosen = sorted(set(picks[p][d, copy].tolist()))
                profile = of_max(block[chosen].max(axis=0))
                finite = np.isfinite(profile)
                total += np.where(finite, profile, 0.0) * weights[p]
                mass += finite * weights[p]
        assert np.allclose(fast[d], total / mass, equal_nan=True), d


def test_split_resampling_of_one_split_each_is_prompt_resampling():
    rng = np.random.default_rng(1)
    values = rng.random((5, 4))
    weights = np.arange(1.0, 6.0)
    split = bootstrap.split_resampled([v[None, :] for v in values], weights, np.asarray, 50, 7)
    plain = bootstrap.resampled(values, weights, bootstrap.draws(5, 50, 7))
    assert np.allclose(split, plain)


def test_bootstrap_interval_of_a_case_computable_by_hand():
    """Two prompts with values 0 and 1: a draw's mean is 0, 1/2 or 1 with chances 1/4, 1/2, 1/4,
    so the 90 % interval is [0, 1]; a statistic that exists only above 1/4 is missing in about a
    quarter of the draws."""
    values, weights = np.array([[0.0], [1.0]]), np.ones(2)
    mean = bootstrap.bootstrap(values, weights, lambda rows: rows[:, 0])
    assert (mean.value, mean.low, mean.high) == (0.5, 0.0, 1.0)
    some = bootstrap.bootstrap(
        values, weights, lambda rows: np.where(rows[:, 0] > 0.25, rows[:, 0], np.nan)
    )
    assert some.none_share == pytest.approx(0.25, abs=0.04) and some.covers_none
    counts = bootstrap.draws(5)
    assert counts.shape == (bootstrap.RESAMPLES, 5) and (counts.sum(axis=1) == 5).all()
    weighted = bootstrap.weighted_mean(np.array([[1.0, np.nan], [3.0, 2.0]]), np.array([1.0, 3.0]))
    assert weighted.tolist() == [2.5, 2.0]  # NaN entries are skipped, not counted as zero


def test_paired_differences_are_tested_corrected_and_read_with_a_margin():
    rng = np.random.default_rng(0)
    base = rng.normal(10, 1, 1000)
    pairs = {
        "apart": (10.0, 14.0, base, base + 4 + rng.normal(0, 0.3, 1000)),
        "same": (10.0, 10.0, base, base + rng.normal(0, 0.2, 1000)),
        "unclear": (10.0, 10.5, base, base + rng.normal(0.5, 2.0, 1000)),
    }
    found = differences.compare_all(pairs, margin=1.0, unit="layers")
    assert found["apart"].outcome == "differ" and found["apart"].value == 4.0
    assert found["apart"].interval.low > 3 and found["apart"].p_adjusted <= 0.05
    assert found["same"].outcome == "equivalent"  # 90 % interval within ±1 layer
    assert found["unclear"].outcome == "inconclusive"  # neither shown
    assert found["apart"].text().startswith("+4 [")
    # Holm: three tests, the smallest p is multiplied by 3
    assert found["apart"].p_adjusted == pytest.approx(min(1.0, 3 * found["apart"].p_value))


def test_a_significant_difference_smaller_than_the_margin_is_equivalent_not_differ():
    rng = np.random.default_rng(1)
    base = rng.normal(0.5, 0.05, 1000)
    pairs = {"tiny": (0.50, 0.51, base, base + 0.01 + rng.normal(0, 0.002, 1000))}
    tiny = differences.compare_all(pairs, margin=0.05, unit="relative depth")["tiny"]
    assert tiny.p_adjusted <= 0.05  # the data show a difference...
    assert tiny.outcome == "equivalent"  # ...too small to matter at the stated margin
    wide = differences.compare_all(
        {"wide": (0.50, 0.56, base, base + 0.06 + rng.normal(0, 0.002, 1000))},
        margin=0.05,
        unit="relative depth",
    )["wide"]
    assert wide.outcome == "differ"  # beyond the margin and significant


def test_bootstrap_p_counts_ties_on_both_sides():
    assert differences.bootstrap_p(np.zeros(100)) == 1.0
    assert differences.bootstrap_p(np.ones(100)) == 0.0
    assert differences.bootstrap_p(np.r_[np.ones(90), -np.ones(10)]) == pytest.approx(0.2)
    assert differences.bootstrap_p(np.array([np.nan])) == 1.0


def test_effective_depth_is_the_importance_weighted_mean_depth():
    L = 10
    first_four = np.r_[np.ones(4), np.zeros(6)]
    assert depth.effective_depth(first_four, "value", L)[0] == pytest.approx(1.5 / L)
    assert depth.effective_depth(np.ones(L), "value", L)[0] == pytest.approx(4.5 / L)
    overlap = np.r_[np.zeros(4), np.ones(6)]  # the lens agrees from boundary 4 on
    assert depth.effective_depth(overlap, "one-minus", L)[0] == pytest.approx(1.5 / L)
    cosine = np.r_[-np.ones(4), np.ones(6)]  # layers write against the residual until 4
    assert depth.effective_depth(cosine, "dissimilarity", L)[0] == pytest.approx(1.5 / L)
    with_nan = first_four.copy()
    with_nan[8] = np.nan
    assert depth.effective_depth(with_nan, "value", L)[0] == pytest.approx(1.5 / L)
    assert np.isnan(depth.effective_depth(np.zeros(L), "value", L)[0])
    with pytest.raises(ValueError, match="importance"):
        depth.effective_depth(first_four, "bogus", L)


def test_row_wise_rules_equal_the_one_profile_rules():
    rng = np.random.default_rng(0)
    rows = rng.lognormal(0, 1, (300, 12))
    rows[rng.random(rows.shape) < 0.1] = np.nan
    rows[5] = np.nan
    count, deepest = rules.future_use_rows(rows, 0.6)
    kl, overlap = rng.lognormal(0, 1, (300, 12)), rng.random((300, 12))
    first, low = rules.lens_boundary_rows(kl, overlap, 0.4, 0.6)
    for i, row in enumerate(rows):
        use = rules.future_use(row, 0.6)
        assert count[i] == (len(use.layers) if use else None) or (
            use is None and np.isnan(count[i])
        )
        if use and use.layers:
            assert deepest[i] == max(use.layers)
        else:
            assert np.isnan(deepest[i])
        a, b, _ = rules.lens_boundaries(kl[i], overlap[i], 0.4, 0.6)
        assert np.isnan(first[i]) if a is None else first[i] == a, i
        assert np.isnan(low[i]) if b is None else low[i] == b, i


def test_half_ratio():
    assert rules.half_ratio(np.r_[np.full(5, 2.0), np.full(5, 1.0)])[0] == pytest.approx(0.5)
    assert np.isnan(rules.half_ratio(np.r_[np.zeros(5), np.ones(5)])[0])
