"""Integrated gradients, residual erasure and depth score (E7–E9) against naive references."""

from __future__ import annotations

import math

import pytest
import torch
from naive import naive_erasure, naive_igrad, naive_mean_residuals, naive_path_terms
from recording_progress import RecordingProgress
from tiny_models import bpe_tokenizer, random_ids, tiny_model

import depthscope as ds
from depthscope.analyses import RunOptions
from depthscope.analyses import quadrature as quadrature_module
from depthscope.analyses.base import NOT_TAIL
from depthscope.analyses.depth_score import (
    DepthScore,
    DepthScoreSettings,
    answer_splits,
    chosen_split_rule,
    depth_score,
    importance_from_effects,
)
from depthscope.analyses.erasure import Erasure, ErasureSettings, baseline_means
from depthscope.analyses.igrad import (
    IGPath,
    IGSettings,
    IntegratedGradients,
    adaptive_ig,
    coarse_integral_warning,
    fixed_ig,
)
from depthscope.analyses.logit_lens import LogitLens
from depthscope.analyses.quadrature import quadrature
from depthscope.analyses.user_settings import build_settings
from depthscope.core.errors import DepthscopeError
from depthscope.data.example import Example
from depthscope.data.prompts import PromptSet
from depthscope.data.sources import load_examples
from depthscope.engine.batch import pad_batch
from depthscope.engine.trace import trace

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
    data = ds.analyze(lm, erasure, prompts, prompt_batch=3).data
    assert data["n_baseline_prompts"] == 2
    for index, ids in enumerate(prompts.sequences):
        expected = naive_erasure(lm, ids, ANSWERS[index], means)
        assert_close(data["effect"][index], expected)
        assert expected.abs().max() > 1e-3
        assert torch.all(expected[:, -1] == 0)  # the last token never influences answer predictions


@pytest.mark.parametrize("target", ["layer", "attention", "mlp"])
def test_igrad_matches_naive(lm, prompts, target):
    data = ds.analyze(
        lm, "igrad", prompts, steps=6, block=4, targets=(target,), prompt_batch=3
    ).data
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
    data = ds.analyze(lm, "igrad", prompts, steps=2048, block=256, targets=("layer",)).data
    change = [abs(data["f_input"][0] - base) for base in data["f_baseline"][0]]
    for gap, delta in zip(data["completeness_gap"][0], change, strict=True):
        assert delta > 1e-4
        assert gap <= 0.01 * delta


@pytest.mark.parametrize("steps, warned", [(1, True), (2048, False)])
def test_igrad_tells_the_user_when_steps_are_too_few(steps, warned):
    lm = tiny_model("llama", seed=2)
    prompts = PromptSet(random_ids([8], seed=4), answer_lengths=[2])
    progress = RecordingProgress()
    ds.analyze(lm, "igrad", prompts, steps=steps, block=256, targets=("layer",), progress=progress)
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
    # at the answer start: one before the first answer position (17), where it is predicted
    assert answer_splits(20, 3, short, seed=0, prompt_id=0) == [16]
    long_splits = answer_splits(40, 17, short, seed=0, prompt_id=0)
    assert sorted(long_splits) == sorted(set(long_splits)) and len(long_splits) == 4
    assert all(23 <= t < 40 - 4 and (t - 23) % 4 == 0 for t in long_splits)
    forced = DepthScoreSettings(split_rule="answer-start")
    assert answer_splits(40, 17, forced, seed=0, prompt_id=0) == [22]


def test_depth_score_per_level(lm):
    ids = random_ids([14, 18, 16, 12], seed=9)
    prompts = PromptSet(ids, answer_lengths=[2, 1, 2, None], levels=[1, 2, 1, 2])
    data = ds.analyze(lm, "depth-score", prompts, prompt_batch=2).data
    assert set(data["levels"]) == {"1", "2"}
    assert data["levels"]["1"]["n_examples"] == 2 and data["levels"]["2"]["n_examples"] == 1
    assert data["skipped_prompts"] == [3]
    for entry in data["levels"].values():
        effect = torch.as_tensor(entry["effect_max"])
        assert torch.all(torch.tril(effect) == 0)  # future effects: nothing at or before s
        assert 0 <= entry["depth_score_layer"] <= lm.n_layers - 1
        assert 0.0 <= entry["accuracy"] <= 1.0
        # the examples' own matrices (what the verdict's intervals resample) make the aggregates
        own = torch.stack([torch.as_tensor(e["effect"]).double() for e in entry["per_example"]])
        assert len(entry["per_example"]) == entry["n_examples"]
        assert torch.allclose(own.amax(dim=0), torch.as_tensor(entry["effect_max"]).double())
        assert torch.allclose(
            own.mean(dim=0), torch.as_tensor(entry["effect_mean"]).double(), atol=1e-6
        )


def test_depth_score_split_rule_comes_from_the_data_source():
    assert chosen_split_rule("auto", "hf:math:3") == ("in-answer", "data source")
    assert chosen_split_rule("auto", "builtin:hops") == ("answer-start", "data source")
    assert chosen_split_rule("in-answer", "builtin:hops") == ("in-answer", "setting")
    assert chosen_split_rule("auto", "(python)") == ("auto", "answer length")
    # the rule is part of the run's fingerprint: a saved result of another rule is recomputed
    assert DepthScore.plan_key(DepthScoreSettings(), "hf:math") == {
        "split_rule": "in-answer",
        "answer_start_offset": -1,
    }
    assert IntegratedGradients.plan_key(IGSettings(), "builtin:paper") == {"answer_split": "paper"}
    assert LogitLens.plan_key(LogitLens.Settings(), "builtin:paper") == {}

    lm = tiny_model("llama")
    prompts = PromptSet(random_ids([24], seed=3), answer_lengths=[14], levels=[1])
    in_answer = [10, 14, 18]  # answer from position 10: offsets 0, 4, 8 into its 14 tokens

    def run(data: str, rule: str = "auto") -> dict:
        return ds.analyze(lm, "depth-score", prompts, split_rule=rule, data_source=data).data

    short = run("builtin:hops")  # a short-answer source: one split, predicting the answer's start
    assert short["split_points"] == {0: [9]} and short["answer_start_offset"] == -1
    assert (short["split_rule"], short["split_rule_from"]) == ("answer-start", "data source")
    forced = run("builtin:hops", "in-answer")  # the user's setting wins over the source
    assert sorted(forced["split_points"][0]) == in_answer
    assert (forced["split_rule"], forced["split_rule_from"]) == ("in-answer", "setting")
    assert run("hf:math")["split_points"] == forced["split_points"]  # MATH: inside the answer
    unknown = run("")  # prompts without a source: auto, by answer length as before
    assert unknown["split_points"] == forced["split_points"]
    assert (unknown["split_rule"], unknown["split_rule_from"]) == ("auto", "answer length")


@pytest.mark.parametrize(
    "merges, split, answer_tokens", [(False, "as-given", 2), (True, "shifted", 1)]
)
def test_igrad_and_erasure_use_and_record_the_paper_split(merges, split, answer_tokens):
    """builtin:paper's "… = " + "28": as given where the space is a token of its own (Llama 3),
    "… =" + " 28" where the tokenizer merges the space into the number (GPT-2)."""
    tokenizer = bpe_tokenizer(space_digit_merges=merges)
    lm = tiny_model("llama", tokenizer=tokenizer)
    prompts = PromptSet.from_examples(tokenizer, load_examples("builtin:paper"))
    assert (prompts.answer_lengths[0] is None) == merges  # the source's split alone fails there
    yoko = len(tokenizer.tokenize(" Yoko Ono"))
    runs = {
        "igrad": {"steps": 2, "targets": ("layer",)},
        "erasure": {"baseline_data": "builtin:e11-baseline", "baseline_n": 1},
    }
    for name, settings in runs.items():
        data = ds.analyze(lm, name, prompts, **settings).data
        assert data["prompts"] == [0, 1] and data["skipped_prompts"] == []
        assert data["splits"] == [split, "as-given"]
        assert data["answer_tokens"] == [answer_tokens, yoko]
    # a prompt whose answer merges into its prompt under either split is skipped, saying why
    stuck = PromptSet.from_examples(
        tokenizer, [*load_examples("builtin:paper"), Example(prompt="xa", answer="b")]
    )
    result = ds.analyze(lm, "igrad", stuck, **runs["igrad"])
    assert result.extra["skipped"] == {2: NOT_TAIL}
    assert result.data["splits"] == [split, "as-given"]


# --- integrated gradients: quadrature rules and adaptive step counts -----------------------


def one_path(lm, ids, alen, target, layer):
    batch = pad_batch([ids], pad_id=0)
    with torch.no_grad():
        traced = trace(lm.adapter, batch)
    return IGPath(lm.adapter, traced, 0, len(ids), alen, target, layer)


@pytest.mark.parametrize(
    "rule, steps", [("gauss", 3), ("trapezoid", 4), ("simpson", 4), ("riemann", 5)]
)
@pytest.mark.parametrize("target", ["layer", "mlp"])
def test_quadrature_ig_matches_naive(rule, steps, target):
    lm = tiny_model("llama", seed=1)
    ids, alen = random_ids([9], seed=3)[0], 2
    quad = quadrature(rule, steps)
    weights = torch.ones(len(quad.nodes)) if quad.weights is None else quad.weights
    for layer in range(lm.n_layers):
        values, terms = naive_path_terms(lm, ids, alen, target, layer, quad.nodes.tolist())
        expected = (weights[:, None] * terms).sum(0) / quad.divisor
        path = one_path(lm, ids, alen, target, layer)
        result = fixed_ig(path, rule, steps, block=2)
        assert_close(result.attribution, expected)
        f_base = naive_path_terms(lm, ids, alen, target, layer, [0.0])[0][0]
        assert result.f_baseline == pytest.approx(f_base, abs=1e-6)
        assert result.evaluations == len(quad.nodes) + (rule == "gauss")  # + F(x') for Gauss
        got_values, got_terms = path.evaluate(quad.nodes.tolist(), True, block=3)
        assert_close(got_terms, terms)
        assert_close(got_values, values, atol=1e-6)


@pytest.mark.parametrize(
    "rule, evaluations",
    [("riemann", 32), ("trapezoid", 33), ("simpson", 33)],  # doubling / uniform halving
)
def test_adaptive_refinement_equals_the_fixed_rule_it_stops_at(rule, evaluations, monkeypatch):
    """With tolerance 0 and no preference for the worst panels, every panel is halved while the
    budget allows: the uniform rule, with every earlier node reused (none evaluated twice)."""
    monkeypatch.setattr(quadrature_module, "SPLIT_SHARE", 0.0)
    lm = tiny_model("llama", seed=2)
    path = one_path(lm, random_ids([8], seed=4)[0], 2, "layer", 1)
    refined = adaptive_ig(path, rule, tolerance=0.0, max_steps=evaluations, block=16)
    direct = fixed_ig(path, rule, 32, block=16)
    assert refined.evaluations == evaluations
    assert_close(refined.attribution, direct.attribution, atol=1e-6)
    assert refined.gap == pytest.approx(direct.gap, abs=1e-6)


def test_adaptive_riemann_stops_as_soon_as_the_gap_is_small_enough():
    lm = tiny_model("llama", seed=2)
    path = one_path(lm, random_ids([8], seed=4)[0], 2, "layer", 1)
    gaps = {n: fixed_ig(path, "riemann", n, block=16).gap for n in (8, 16, 32)}
    assert gaps[16] < gaps[8]
    tolerance = (gaps[16] + gaps[8]) / 2
    result = adaptive_ig(path, "riemann", tolerance, max_steps=256, block=16)
    assert result.steps == result.evaluations == 16
    capped = adaptive_ig(path, "riemann", 0.0, max_steps=16, block=16)
    assert capped.steps == 16  # never beyond max_steps, even when the gap is not met


@pytest.mark.parametrize("rule", ["simpson", "gauss", "trapezoid"])
def test_adaptive_panels_meet_the_tolerance_within_the_budget(rule):
    lm = tiny_model("llama", seed=2)
    ids = random_ids([8], seed=4)[0]
    for layer in range(lm.n_layers):
        path = one_path(lm, ids, 2, "layer", layer)
        result = adaptive_ig(path, rule, tolerance=1e-5, max_steps=200, block=16)
        assert result.gap <= 1e-5 and result.evaluations <= 200


def test_simpson_panels_reach_the_paper_riemann_gap_with_far_fewer_evaluations():
    """The claim of benchmarks/bench_igrad.py, on a tiny model: adaptive Simpson panels meet the
    completeness gap of the paper's 256-step left Riemann sum with at most a quarter of its
    model evaluations, at every layer."""
    lm = tiny_model("llama", seed=2)
    ids = random_ids([8], seed=4)[0]
    for layer in range(lm.n_layers):
        path = one_path(lm, ids, 2, "layer", layer)
        paper = fixed_ig(path, "riemann", 256, block=64)
        fast = adaptive_ig(path, "simpson", paper.gap, max_steps=256, block=64)
        assert fast.gap <= paper.gap and 4 * fast.evaluations <= paper.evaluations


def test_igrad_settings_default_to_adaptive_simpson_and_keep_the_paper_rule():
    default = IGSettings()
    assert default.adaptive and default.quadrature_rule == "simpson"
    assert IGSettings(steps=6).quadrature_rule == "riemann"  # steps alone: the paper's rule
    paper = build_settings(IntegratedGradients, {"rule": "riemann", "steps": "256"})
    assert (paper.quadrature_rule, paper.steps, paper.adaptive) == ("riemann", 256, False)
    assert build_settings(IntegratedGradients, {"rule": "gauss"}).quadrature_rule == "gauss"
    assert build_settings(IntegratedGradients, {"stop": "gap"}).stop == "gap"
    bads = ({"rule": "boole"}, {"steps": "-1"}, {"tolerance": "-0.1"}, {"max_steps": "0"})
    for bad in (*bads, {"stop": "never"}):
        with pytest.raises(DepthscopeError, match="bad setting for igrad"):
            build_settings(IntegratedGradients, bad)


def test_igrad_result_records_rule_steps_and_evaluations(lm, prompts):
    settings = {"tolerance": 1e-4, "max_steps": 64, "targets": ("layer", "mlp")}
    data = ds.analyze(lm, "igrad", prompts, **settings, prompt_batch=3).data
    assert data["rule"] == "simpson" and data["adaptive"] is True
    for block in (data, data["mlp"]):
        for steps, evaluations, gaps in zip(
            block["steps"], block["evaluations"], block["completeness_gap"], strict=True
        ):
            assert len(steps) == len(evaluations) == len(gaps) == lm.n_layers
            for nodes, spent, gap in zip(steps, evaluations, gaps, strict=True):
                assert nodes == spent and 9 <= spent <= 64  # Simpson: every node has a gradient
                assert gap <= 1e-4 or spent > 62
    fixed = ds.analyze(lm, "igrad", prompts, steps=4, targets=("layer",)).data
    assert fixed["rule"] == "riemann" and fixed["adaptive"] is False
    assert all(s == [4] * lm.n_layers for s in fixed["steps"])
    assert all(e == [4] * lm.n_layers for e in fixed["evaluations"])


def test_adaptive_igrad_names_max_steps_when_it_cannot_meet_the_gap():
    lm = tiny_model("llama", seed=2)
    prompts = PromptSet(random_ids([8], seed=4), answer_lengths=[2])
    progress = RecordingProgress()
    ds.analyze(
        lm, "igrad", prompts, rule="riemann", max_steps=1, targets=("layer",), progress=progress
    )
    assert progress.notes and "--set max_steps=4" in progress.notes[0]


@pytest.mark.parametrize("steps", [6, 0])  # fixed and adaptive steps share the halving
def test_igrad_out_of_memory_halves_the_step_block_and_keeps_the_result(
    lm, prompts, steps, monkeypatch
):
    settings = {"steps": steps, "block": 8, "max_steps": 32, "targets": ("layer", "mlp")}
    expected = ds.analyze(lm, "igrad", prompts, **settings, prompt_batch=3).data
    objective = IGPath._objective

    def small_device(self, ratios):  # a device that fits at most 3 interpolation rows
        if ratios.numel() > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return objective(self, ratios)

    monkeypatch.setattr(IGPath, "_objective", small_device)
    progress = RecordingProgress()
    got = ds.analyze(lm, "igrad", prompts, **settings, progress=progress, prompt_batch=3).data
    for target in ("layer", "mlp"):
        want, have = (expected, got) if target == "layer" else (expected[target], got[target])
        for a, b in zip(have["attribution"], want["attribution"], strict=True):
            assert_close(a, b)
    notes = [note for note in progress.notes if "out of memory" in note]
    assert notes and all(n.startswith("out of memory with --set igrad.block=") for n in notes)
    assert len(notes) <= 2  # halved until at most 3 rows fit (8 → 4 → 2, or 6 → 3), then kept
