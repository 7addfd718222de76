"""Each analysis equals a naive one-forward-per-intervention implementation (fp32, 1e-5).

Runs on tiny random models of three families (sequential pre-norm, post-sublayer-norm with
sliding-window attention, parallel residual) and on padded batches of prompts of different lengths.
"""

from __future__ import annotations

import pytest
import torch
from naive import (
    naive_contribution_tokens,
    naive_effects,
    naive_local,
    naive_logit_lens,
    naive_position_sums,
)
from tiny_models import random_ids, tiny_model

import depthscope as ds
from depthscope.analyses.splits import split_points

FAMILIES = ("llama", "gemma3", "gpt_neox")
LENGTHS = [22, 14, 30]  # padded batches: prompts of different lengths share a trace
ATOL = 1e-5


@pytest.fixture(scope="module", params=FAMILIES)
def lm(request):
    return tiny_model(request.param)


@pytest.fixture(scope="module")
def prompts():
    return random_ids(LENGTHS, seed=7)


def assert_close(actual, expected, atol=ATOL):
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, atol=atol, rtol=1e-4), (actual - expected).abs().max()


@pytest.mark.parametrize("part", ["layer", "attention", "mlp"])
def test_current_effects_match_naive(lm, prompts, part):
    data = ds.analyze(lm, "current-effects", prompts, parts=(part,), batch_size=3).data
    got = data if part == "layer" else data[part]
    naive = [naive_effects(lm, ids, part, front=1, split=None) for ids in prompts]
    assert_close(got["effect"], torch.stack([e for e, _ in naive]).amax(0))
    assert_close(got["output_change"], torch.stack([o for _, o in naive]).amax(0))
    assert_close(got["effect_mean"], torch.stack([e for e, _ in naive]).mean(0))
    assert torch.as_tensor(got["effect"]).max() > 1e-3  # the interventions do something


@pytest.mark.parametrize("part", ["layer", "attention"])
def test_future_effects_match_naive(lm, prompts, part):
    seed = 3
    data = ds.analyze(lm, "future-effects", prompts, parts=(part,), seed=seed, batch_size=5).data
    got = data if part == "layer" else data[part]
    effects, outputs = [], []
    for prompt_id, ids in enumerate(prompts):
        splits = split_points(len(ids), seed=seed, prompt_id=prompt_id)
        assert data["split_points"][prompt_id] == splits
        per_split = [naive_effects(lm, ids, part, front=1, split=t) for t in splits]
        effects.append(torch.stack([e for e, _ in per_split]).amax(0))
        outputs.append(torch.stack([o for _, o in per_split]).amax(0))
    assert_close(got["effect"], torch.stack(effects).amax(0))
    assert_close(got["output_change"], torch.stack(outputs).amax(0))


@pytest.mark.parametrize("analysis", ["current-effects", "future-effects"])
def test_position_means_match_naive(lm, prompts, analysis):
    """Each prompt's mean over its measured (position, split point) pairs, then over prompts."""
    seed = 3
    data = ds.analyze(lm, analysis, prompts, parts=("layer", "mlp"), seed=seed, batch_size=4).data
    for part in ("layer", "mlp"):
        got = data if part == "layer" else data[part]
        effects, outputs = [], []
        for prompt_id, ids in enumerate(prompts):
            splits = (
                split_points(len(ids), seed=seed, prompt_id=prompt_id)
                if analysis == "future-effects"
                else [None]
            )
            sums = [naive_position_sums(lm, ids, part, front=1, split=t) for t in splits]
            count = sum(c for _, _, c in sums)
            effects.append(sum(e for e, _, _ in sums) / count)
            outputs.append(sum(o for _, o, _ in sums) / count)
        assert_close(got["effect_position_mean"], torch.stack(effects).mean(0))
        assert_close(got["output_change_position_mean"], torch.stack(outputs).mean(0))
        # a mean over positions is no larger than their max
        assert (
            torch.as_tensor(got["effect_position_mean"])
            <= torch.as_tensor(got["effect_mean"]) + 1e-6
        ).all()


def test_local_effects_match_naive(lm, prompts):
    data = ds.analyze(lm, "local-effects", prompts, seed=1, batch_size=4).data
    current = torch.stack([naive_local(lm, ids, front=1, split=None) for ids in prompts]).amax(0)
    assert_close(data["current"], current)
    future = []
    for prompt_id, ids in enumerate(prompts):
        splits = split_points(len(ids), seed=1, prompt_id=prompt_id)
        future.append(torch.stack([naive_local(lm, ids, front=1, split=t) for t in splits]).amax(0))
    assert_close(data["future"], torch.stack(future).amax(0))


def test_contributions_match_naive(lm, prompts):
    data = ds.analyze(lm, "contributions", prompts, prompt_batch=3).data
    per_prompt = [naive_contribution_tokens(lm, ids) for ids in prompts]
    for key in ("rel_att", "rel_mlp", "rel_layer", "cos_att", "cos_mlp", "cos_layer", "cos_io"):
        tokens = torch.cat([p[key] for p in per_prompt], dim=1)  # [L, all tokens]
        assert_close(data[key], tokens.mean(1))
        if key.startswith("rel"):
            assert_close(data["max_" + key], tokens.amax(1))
    for key in ("norm_att", "norm_mlp", "norm_resid"):
        tokens = torch.cat([p[key] for p in per_prompt], dim=1)
        assert_close(data["mean_" + key], tokens.mean(1), atol=1e-4)


def test_logit_lens_matches_naive(lm, prompts):
    data = ds.analyze(lm, "logit-lens", prompts, prompt_batch=2).data
    naive = [naive_logit_lens(lm, ids) for ids in prompts]
    assert_close(data["kl"], torch.stack([kl for kl, _ in naive]).mean(0), atol=1e-4)
    assert_close(data["topk_overlap"], torch.stack([o for _, o in naive]).mean(0))


def test_structural_facts(lm, prompts):
    n = lm.n_layers
    lower = torch.tril(torch.ones(n, n, dtype=torch.bool), diagonal=-1)
    current = ds.analyze(lm, "current-effects", prompts, parts=("layer",)).data
    effect = torch.as_tensor(current["effect"])
    assert torch.all(effect[lower] == 0)  # nothing changes before the skipped layer
    assert_close(torch.diagonal(effect), torch.ones(n))  # a skipped layer contributes nothing
    future = ds.analyze(lm, "future-effects", prompts, parts=("layer",)).data
    effect = torch.as_tensor(future["effect"])
    assert torch.all(effect[lower] == 0)
    assert_close(torch.diagonal(effect), torch.zeros(n))  # its future input is unchanged
    local = ds.analyze(lm, "local-effects", prompts).data
    for variant in ("current", "future"):
        assert_close(torch.diagonal(torch.as_tensor(local[variant])), torch.zeros(n))


def test_split_rules_of_the_paper():
    from depthscope.analyses.splits import split_points

    # paper §3.2 (code): multiples of 8 in [8, T - 4), shuffled, 4 of them
    chosen = split_points(45, seed=0, prompt_id=3)
    assert sorted(chosen) == [8, 16, 24, 32] or set(chosen) <= {8, 16, 24, 32, 40}
    assert len(chosen) == 4 and all(t % 8 == 0 and 8 <= t < 41 for t in chosen)
    # App. D.5: every position in [3, T - 1)
    every = split_points(12, seed=0, prompt_id=0, count=100, stride=1, margin=1, minimum=3)
    assert sorted(every) == list(range(3, 11))
    # the same prompt gets the same points however the run is split
    assert split_points(45, seed=0, prompt_id=3) == chosen
