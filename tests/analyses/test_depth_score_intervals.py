"""The depth score's bootstrap intervals (E9 verdict line): hand-computable cases and the naive
per-draw recomputation."""

from __future__ import annotations

import numpy as np
import torch

from depthscope.analyses.depth_score import (
    depth_score,
    difficulty,
    importance_from_effects,
    resampled_depth_scores,
)
from depthscope.core.result import Result
from depthscope.verdict import bootstrap

L = 10


def one_hot_example(layer: int) -> dict:
    """An example whose whole importance (and output change) sits at ``layer``."""
    effect = np.zeros((L, L))
    effect[layer, layer + 1 :] = 1.0
    output = np.zeros(L)
    output[layer] = 1.0
    return {"effect": effect, "output_change": output}


def stacked(examples: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.stack([e["effect"] for e in examples]),
        np.stack([e["output_change"] for e in examples]),
    )


def test_two_examples_give_the_hand_computed_interval():
    # draws of 2 examples: both the first (score 2, p = 1/4), both the second (8, 1/4) or one
    # each (5, 1/2): the central 90 % spans [2, 8] and the all-example score is 5
    effects, outputs = stacked([one_hot_example(2), one_hot_example(8)])
    counts = bootstrap.draws(2)
    layer, output = resampled_depth_scores(effects, outputs, "mean", counts)
    assert set(np.round(layer, 9)) == {2.0, 5.0, 8.0}
    assert np.allclose(layer, output)
    interval = bootstrap.interval_of(5.0, layer)
    assert (interval.low, interval.high) == (2.0, 8.0)
    share_both_first = np.mean(layer == 2.0)
    assert 0.2 < share_both_first < 0.3  # about 1/4


def test_max_draws_match_a_naive_recomputation():
    rng = np.random.default_rng(3)
    effects = np.triu(rng.random((5, L, L)), k=1)
    outputs = rng.random((5, L))
    counts = bootstrap.draws(5, resamples=40)
    layer, output = resampled_depth_scores(effects, outputs, "max", counts)
    for d, row in enumerate(counts):
        chosen = [i for i in range(5) if row[i] > 0]
        maxed = torch.tensor(effects[chosen]).amax(dim=0)
        assert np.isclose(layer[d], depth_score(importance_from_effects(maxed)))
        assert np.isclose(output[d], depth_score(torch.tensor(outputs[chosen]).amax(dim=0)))


def level(examples: list[dict]) -> dict:
    effects, outputs = stacked(examples)
    return {
        "depth_score_layer": depth_score(importance_from_effects(torch.tensor(effects.mean(0)))),
        "depth_score_output": depth_score(torch.tensor(outputs.mean(0))),
        "per_example": [
            {
                "prompt": i,
                "effect": e["effect"].tolist(),
                "output_change": e["output_change"].tolist(),
                "first_token_correct": True,
            }
            for i, e in enumerate(examples)
        ],
    }


def result_of(levels: dict) -> Result:
    return Result(
        analysis="depth-score",
        model={"name": "synthetic"},
        settings={"aggregate": "mean"},
        n_prompts=8,
        n_tokens=80,
        data={"levels": levels},
    )


def test_a_clear_rise_is_called_and_a_noisy_one_is_not():
    easy = level([one_hot_example(layer) for layer in (2, 3, 2, 3, 2, 3, 2, 3)])
    hard = level([one_hot_example(layer) for layer in (6, 7, 6, 7, 6, 7, 6, 7)])
    rising = difficulty(result_of({"1": easy, "2": hard}), L)
    assert rising.details["grows"] is True and "use more depth" in rising.sentence
    change = rising.details["change"]  # in relative depth: 4 layers of 10
    assert change["interval"]["low"] > 0 and np.isclose(change["difference"], 0.4)
    assert "[" in rising.headline  # the change is shown with its interval

    spread = level([one_hot_example(layer) for layer in (1, 8, 1, 8, 1, 8, 1, 8)])
    shifted = level([one_hot_example(layer) for layer in (1, 8, 2, 8, 1, 8, 1, 8)])
    flat = difficulty(result_of({"1": spread, "2": shifted}), L)
    assert flat.details["grows"] is None and flat.details["outcome"] == "inconclusive"
    interval = flat.details["change"]["interval"]
    assert interval["low"] < 0 < interval["high"]
    assert "inconclusive at 8 examples per level" in flat.sentence
    assert "do not use more depth" not in flat.sentence  # a null result is not a finding
