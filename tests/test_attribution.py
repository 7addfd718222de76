"""Integrated gradients, residual erasure and depth score (E7–E9) against naive references."""

from __future__ import annotations

import math

import pytest
import torch
from naive import naive_erasure, naive_igrad, naive_mean_residuals
from recording_progress import RecordingProgress
from tiny_models import random_ids, tiny_model

from depthscope.analyses import RunOptions
from depthscope.analyses.depth_score import (
    DepthScoreSettings,
    answer_splits,
    depth_score,
    importance_from_effects,
)
from depthscope.analyses.erasure import Erasure, ErasureSettings, baseline_means
from depthscope.analyses.igrad import IGSettings, coarse_integral_warning
from depthscope.analyses.prompts import PromptSet
from depthscope.analyses.run import analyze, run_analysis

LENGTHS = [9, 12, 7]
ANSWERS = [2, 1, 3]


def assert_close(actual, expected, atol=1e-5):
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, atol=atol, rtol=1e-4), (actual - expected).abs().max()


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def lm(request):
    return tiny_model(request.param)


@pytest.fixture(scope="module")
def prompts():
    return PromptSet(random_ids(LENGTHS, seed=11), answer_lengths=list(ANSWERS))


def test_erasure_matches_naive(lm, prompts):
    baseline = random_ids([6, 10], seed=5)
    means = naive_mean_residuals(lm, baseline)
    assert_close(baseline_means(lm, baseline), means)
    erasure = Erasure(lm, ErasureSettings(), RunOptions(batch_size=7))
    erasure.baseline = baseline  # instead of prepare() drawing it from a data source
    data = run_analysis(erasure, prompts, prompt_batch=3)
    assert data["n_baseline_prompts"] == 2
    for index, ids in enumerate(prompts.sequences):
        expected = naive_erasure(lm, ids, ANSWERS[index], means)
        assert_close(data["effect"][index], expected)
        assert expected.abs().max() > 1e-3
        assert torch.all(expected[:, -1] == 0)  # the last token never influences answer predictions


@pytest.mark.parametrize("target", ["layer", "attention", "mlp"])
def test_igrad_matches_naive(lm, prompts, target):
    settings = IGSettings(steps=6, block=4, targets=(target,))
    data = analyze(lm, "igrad", prompts, settings=settings, prompt_batch=3)
    got = data if target == "layer" else data[target]
    for index, ids in enumerate(prompts.sequences):
        for layer in range(lm.n_layers):
            ig, f_input, f_base = naive_igrad(lm, ids, ANSWERS[index], target, layer, steps=6)
            assert_close(got["attribution"][index][layer], ig)
            assert got["f_input"][index] == pytest.approx(f_input, abs=1e-6)
            assert got["f_baseline"][index][layer] == pytest.approx(f_base, abs=1e-6)


def test_igrad_is_complete_with_enough_steps():
    lm = tiny_model("llama", seed=2)
    prompts = PromptSet(random_ids([8], seed=4), answer_lengths=[2])
    data = analyze(
        lm, "igrad", prompts, settings=IGSettings(steps=2048, block=256, targets=("layer",))
    )
    change = [abs(data["f_input"][0] - base) for base in data["f_baseline"][0]]
    for gap, delta in zip(data["completeness_gap"][0], change, strict=True):
        assert delta > 1e-4
        assert gap <= 0.01 * delta


@pytest.mark.parametrize("steps, warned", [(1, True), (2048, False)])
def test_igrad_tells_the_user_when_steps_are_too_few(steps, warned):
    lm = tiny_model("llama", seed=2)
    prompts = PromptSet(random_ids([8], seed=4), answer_lengths=[2])
    progress = RecordingProgress()
    settings = IGSettings(steps=steps, block=256, targets=("layer",))
    analyze(lm, "igrad", prompts, settings=settings, options=RunOptions(progress=progress))
    assert bool(progress.notes) == warned
    if warned:
        assert progress.notes[0].startswith("igrad: prompt 0, target layer: completeness gap")
        assert "--set steps=4" in progress.notes[0]


def test_coarse_integral_warning_names_the_worst_layer():
    # layer 1: gap 0.2 of change 0.5 (40 %); layer 2: gap 0.3 of change 10 (3 %, fine); layer 0 tiny
    message = coarse_integral_warning([0.005, 0.2, 0.3], 1.0, [1.0, 0.5, -9.0], steps=256)
    assert message is not None and "at layer 1" in message and "--set steps=1024" in message
    assert coarse_integral_warning([0.005, 0.01], 1.0, [0.9, 0.5], steps=256) is None
    # relative to no change at all, 0.005 is large, but below the floor of 0.01 in probability
    assert coarse_integral_warning([0.005], 1.0, [1.0], steps=256) is None


def test_depth_score_from_hand_computed_matrix():
    effect = torch.tensor(
        [
            [0.0, 0.6, 0.3, 0.0],
            [0.0, 0.0, 0.4, 0.2],
            [0.0, 0.0, 0.0, 0.5],
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    importance = importance_from_effects(effect)
    assert_close(importance, [0.9 / 3, 0.6 / 2, 0.5 / 1, 0.0])
    expected = (0 * 0.3 + 1 * 0.3 + 2 * 0.5) / (0.3 + 0.3 + 0.5)
    assert depth_score(importance) == pytest.approx(expected)
    assert math.isnan(depth_score(torch.zeros(4)))


def test_answer_split_rules():
    short = DepthScoreSettings()
    assert answer_splits(20, 3, short, seed=0, prompt_id=0) == [17]
    long_splits = answer_splits(40, 17, short, seed=0, prompt_id=0)
    assert sorted(long_splits) == sorted(set(long_splits)) and len(long_splits) == 4
    assert all(23 <= t < 40 - 4 and (t - 23) % 4 == 0 for t in long_splits)
    forced = DepthScoreSettings(split_rule="answer-start")
    assert answer_splits(40, 17, forced, seed=0, prompt_id=0) == [23]


def test_depth_score_per_level(lm):
    ids = random_ids([14, 18, 16, 12], seed=9)
    prompts = PromptSet(ids, answer_lengths=[2, 1, 2, None], levels=[1, 2, 1, 2])
    data = analyze(lm, "depth-score", prompts, prompt_batch=2)
    assert set(data["levels"]) == {"1", "2"}
    assert data["levels"]["1"]["n_examples"] == 2 and data["levels"]["2"]["n_examples"] == 1
    assert data["skipped_prompts"] == [3]
    for entry in data["levels"].values():
        effect = torch.as_tensor(entry["effect_max"])
        assert torch.all(torch.tril(effect) == 0)  # future effects: nothing at or before s
        assert 0 <= entry["depth_score_layer"] <= lm.n_layers - 1
        assert 0.0 <= entry["accuracy"] <= 1.0
