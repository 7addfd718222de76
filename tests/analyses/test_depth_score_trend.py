"""The depth score's verdict (E9): each level's score from the mean over its examples, the trend
across the levels the model solves, equivalence vs inconclusive vs a direction, Holm over tasks,
the answer-start split that measures the first answer token's prediction, and results saved
before all of this. Statistics against naive loops over the resamples."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from naive import forward, knockout_edit, naive_effects, positions
from tiny_models import random_ids, tiny_model

import depthscope as ds
from depthscope.analyses.depth_score import (
    MIN_ACCURACY,
    depth_score,
    difficulty,
    difficulty_report,
    importance_from_effects,
    level_mean,
)
from depthscope.core.result import Result
from depthscope.data.prompts import PromptSet
from depthscope.verdict import bootstrap, differences

L = 10


def one_hot(layer: int, correct: bool = True) -> dict:
    """An example whose whole importance (and output change) sits at ``layer``."""
    effect = np.zeros((L, L))
    effect[layer, layer + 1 :] = 1.0
    output = np.zeros(L)
    output[layer] = 1.0
    return {
        "effect": effect.tolist(),
        "output_change": output.tolist(),
        "first_token_correct": correct,
    }


def entry_of(examples: list[dict]) -> dict:
    """A level as ``finish`` saves it (the paper's max aggregation chosen)."""
    effects = torch.tensor([e["effect"] for e in examples], dtype=torch.float64)
    outputs = torch.tensor([e["output_change"] for e in examples], dtype=torch.float64)
    entry = {
        "n_examples": len(examples),
        "accuracy": float(np.mean([e.get("first_token_correct", False) for e in examples])),
        "per_example": [{"prompt": i, **e} for i, e in enumerate(examples)],
    }
    for name, reduce in (("max", lambda t: t.amax(dim=0)), ("mean", lambda t: t.mean(dim=0))):
        entry[f"depth_score_layer_{name}"] = depth_score(importance_from_effects(reduce(effects)))
        entry[f"depth_score_output_{name}"] = depth_score(reduce(outputs))
    entry["depth_score_layer"] = entry["depth_score_layer_max"]
    entry["depth_score_output"] = entry["depth_score_output_max"]
    return entry


def level(layers: list[int], correct: bool | list[bool] = True) -> dict:
    flags = correct if isinstance(correct, list) else [correct] * len(layers)
    return entry_of([one_hot(layer, flag) for layer, flag in zip(layers, flags, strict=True)])


def result_of(levels: dict, **data) -> Result:
    return Result(
        analysis="depth-score",
        model={"name": "synthetic", "n_layers": L},
        settings={"aggregate": "max"},
        n_prompts=sum(e.get("n_examples", 1) for e in levels.values()),
        n_tokens=100,
        data={"levels": levels, "answer_start_offset": -1, **data},
    )


def random_examples(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "effect": np.triu(rng.random((L, L)) ** 3, k=1).tolist(),
            "output_change": (rng.random(L) ** 3).tolist(),
            "first_token_correct": True,
        }
        for _ in range(n)
    ]


def naive_mean_score(examples: list[dict], picks: np.ndarray) -> float:
    """The depth score of the mean effect matrix over the drawn examples, one at a time."""
    matrix = torch.tensor(np.mean([examples[i]["effect"] for i in picks], axis=0))
    return depth_score(importance_from_effects(matrix))


def naive_level_draws(examples: list[dict], seed: int) -> np.ndarray:
    counts = bootstrap.draws(len(examples), seed=seed)
    return np.array(
        [
            naive_mean_score(examples, np.repeat(np.arange(len(examples)), row.astype(int)))
            for row in counts
        ]
    )


def naive_slope(x: list[float], y: list[float]) -> float:
    """The least-squares slope, written out."""
    mx, my = sum(x) / len(x), sum(y) / len(y)
    num = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    return num / sum((a - mx) ** 2 for a in x)


def percentile_interval(samples: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - bootstrap.LEVEL) / 2
    low, high = np.percentile(samples, [tail, 100 - tail], method="nearest")
    return float(low), float(high)


# ------------------------------------------------------------------------------ statistics


def test_level_score_is_the_mean_matrix_and_its_interval_a_naive_bootstrap():
    examples = random_examples(6, seed=1)
    entry = entry_of(examples)
    found = level_mean(entry, seed=7)
    everything = naive_mean_score(examples, np.arange(6))
    assert found.layer.value == pytest.approx(everything)
    assert found.layer.value == pytest.approx(entry["depth_score_layer_mean"])  # the run's mean
    naive = naive_level_draws(examples, seed=7)
    assert np.allclose(found.layer_draws, naive)
    assert (found.layer.low, found.layer.high) == pytest.approx(percentile_interval(naive))
    assert found.n == 6 and found.layer.draws == bootstrap.RESAMPLES


def test_trend_slope_change_and_p_value_match_a_naive_loop():
    # uneven levels (2, 3, 5): the slope is against the level's number, not its rank
    names, sizes = ["2", "3", "5"], [5, 7, 6]
    per_level = [random_examples(n, seed=10 + i) for i, n in enumerate(sizes)]
    result = result_of({name: entry_of(ex) for name, ex in zip(names, per_level, strict=True)})
    finding = difficulty(result, L)
    trend = finding.details["trend"]
    assert trend["levels"] == names and trend["x"] == [2.0, 3.0, 5.0]

    x = [2.0, 3.0, 5.0]
    point = [naive_mean_score(ex, np.arange(len(ex))) / L for ex in per_level]
    # each level's draws with its own seed (levels are other examples: independent draws)
    draws = [naive_level_draws(ex, seed=bootstrap.SEED + i) / L for i, ex in enumerate(per_level)]
    slopes = np.array([naive_slope(x, [d[k] for d in draws]) for k in range(len(draws[0]))])
    slope = np.polyfit(x, point, 1)[0]
    assert trend["slope"]["value"] == pytest.approx(slope)
    low, high = percentile_interval(slopes)
    assert (trend["slope"]["low"], trend["slope"]["high"]) == pytest.approx((low, high))
    change = trend["change"]
    assert change["difference"] == pytest.approx(3 * slope)  # from level 2 to level 5
    changes = 3 * slopes
    assert (change["interval"]["low"], change["interval"]["high"]) == pytest.approx(
        percentile_interval(changes)
    )
    p = min(1.0, 2 * min(np.mean(changes <= 0), np.mean(changes >= 0)))
    assert change["p_value"] == pytest.approx(p, abs=1e-4)
    assert change["p_adjusted"] == change["p_value"]  # one task: nothing to correct
    assert change["margin"] == differences.DEPTH_MARGIN and change["unit"] == "relative depth"


# ------------------------------------------------------------------------------ outcomes


def test_a_clear_rise_is_more_depth_and_a_clear_fall_less():
    rising = difficulty(
        result_of({"1": level([2, 3] * 4), "2": level([4, 5] * 4), "3": level([6, 7] * 4)}), L
    )
    assert rising.details["outcome"] == "more" and rising.details["grows"] is True
    assert "harder problems use more depth" in rising.sentence
    # scores 2.5, 4.5, 6.5 of 10 layers: 0.2 relative depth per level, +0.4 from level 1 to 3
    assert rising.details["trend"]["slope"]["value"] == pytest.approx(0.2)
    assert rising.details["change"]["difference"] == pytest.approx(0.4)
    assert rising.details["change"]["interval"]["low"] > 0
    assert "[" in rising.headline and rising.headline.startswith("more depth")

    falling = difficulty(
        result_of({"1": level([6, 7] * 4), "2": level([4, 5] * 4), "3": level([2, 3] * 4)}), L
    )
    assert falling.details["outcome"] == "less" and falling.details["grows"] is False
    assert "harder problems use less depth" in falling.sentence
    assert falling.details["change"]["interval"]["high"] < 0


def test_no_more_depth_needs_the_change_inside_the_margin():
    same = {str(k): level([4, 5] * 20) for k in (1, 2, 3)}  # 40 examples, the same at each level
    flat = difficulty(result_of(same), L)
    change = flat.details["change"]["interval"]
    margin = differences.DEPTH_MARGIN
    assert -margin <= change["low"] and change["high"] <= margin
    assert flat.details["outcome"] == "equivalent" and flat.details["grows"] is None
    assert "harder problems do not use more depth" in flat.sentence

    # the same means but spread examples, 8 per level: the change's interval exceeds the margin,
    # so the absence of a change is not shown either
    spread = {str(k): level([1, 8] * 4) for k in (1, 2, 3)}
    noisy = difficulty(result_of(spread), L)
    interval = noisy.details["change"]["interval"]
    assert interval["low"] < -margin and interval["high"] > margin
    assert noisy.details["outcome"] == "inconclusive" and noisy.details["grows"] is None
    assert "inconclusive at 8 examples per level" in noisy.sentence
    assert "do not use more depth" not in noisy.sentence
    assert noisy.headline.startswith("inconclusive")


def test_tasks_compared_together_are_holm_corrected():
    easy = [3, 4, 5, 6] * 4
    hard = [3, 4, 6, 7] + [4, 5, 6, 7] * 3  # a small rise: p about 0.046 on its own
    borderline = result_of({"1": level(easy), "2": level(hard)})
    flat = result_of({"1": level(easy), "2": level(easy)})
    alone = difficulty(borderline, L).details["change"]
    assert 0.025 < alone["p_value"] <= differences.ALPHA  # precondition: a rise on its own
    assert difficulty(borderline, L).details["outcome"] == "more"

    report = difficulty_report({"rising": borderline, "flat": flat}, L)
    together = report["rising"].details["change"]
    assert together["p_value"] == alone["p_value"]
    assert together["p_adjusted"] == pytest.approx(min(1.0, 2 * alone["p_value"]), abs=1e-4)
    assert report["rising"].details["outcome"] == "inconclusive"  # not after Holm over 2 tasks
    assert "Holm-corrected over 2 tasks" in report["rising"].sentence
    assert report["flat"].details["change"]["p_adjusted"] == 1.0


# ------------------------------------------------------------------------------ solved levels


def test_only_solved_levels_enter_the_trend_and_the_rest_are_named():
    failing = [True, False, False, True, False, False, False, False]  # 25 % first token right
    levels = {
        "1": level([2, 3] * 4),
        "2": level([3, 4] * 4, [True, False] * 4),  # exactly 50 %: solved
        "3": level([9, 8] * 4, failing),  # a failing level far off the line
        "4": level([5, 6] * 4),
    }
    finding = difficulty(result_of(levels), L)
    trend = finding.details["trend"]
    assert finding.details["first_token_accuracy"] == {"1": 1.0, "2": 0.5, "3": 0.25, "4": 1.0}
    assert finding.details["min_accuracy"] == MIN_ACCURACY
    assert trend["levels"] == ["1", "2", "4"] and trend["left_out"] == ["3"]
    assert trend["x"] == [1.0, 2.0, 4.0]
    expected = np.polyfit([1.0, 2.0, 4.0], [0.25, 0.35, 0.55], 1)[0]
    assert trend["slope"]["value"] == pytest.approx(expected)
    assert "left out: level 3" in finding.sentence
    assert finding.details["outcome"] == "more"

    # a single solved level: no trend, and the finding says so
    levels["2"] = level([3, 4] * 4, failing)
    levels["4"] = level([5, 6] * 4, False)
    alone = difficulty(result_of(levels), L)
    assert alone.details["outcome"] == "no-trend" and alone.details["trend"] is None
    assert alone.details["grows"] is None
    assert "no trend is tested: fewer than two levels are solved" in alone.sentence
    assert "left out: levels 2, 3, 4" in alone.sentence


# ------------------------------------------------------------------------------ the split


def test_answer_start_split_measures_the_first_answer_tokens_prediction():
    lm = tiny_model("llama", seed=3)
    ids = random_ids([12], seed=5)[0]
    length, start = len(ids), len(ids) - 1  # a one-token answer at position 11
    prompts = PromptSet([ids], answer_lengths=[1], levels=[1])
    data = ds.analyze(lm, "depth-score", prompts, data_source="builtin:hops").data
    split = start - 1  # the position that predicts the first answer token
    assert data["split_points"] == {0: [split]}
    assert data["answer_start_offset"] == -1 and data["split_rule"] == "answer-start"

    # the sweep intervenes on [1, split) and measures [split, T), as a naive skip does
    example = data["levels"]["1"]["per_example"][0]
    effect, output = naive_effects(lm, ids, "layer", 1, split)
    assert torch.allclose(torch.as_tensor(example["effect"]).double(), effect.double(), atol=1e-5)
    assert torch.allclose(
        torch.as_tensor(example["output_change"]).double(), output.double(), atol=1e-5
    )

    # at the predicting position itself, skipping a layer on the question changes the later
    # layers' contributions and the prediction: the paper's split (at the answer) missed this
    ins, outs, logits = forward(lm, ids)
    clean = [o - i for i, o in zip(ins, outs, strict=True)]
    skipped = positions(length, 1, split)
    future, prediction = [], []
    for layer in range(lm.n_layers):
        v_ins, v_outs, v_logits = forward(lm, ids, [knockout_edit(lm, "layer", layer, skipped)])
        later = [
            float((clean[k][split] - (v_outs[k] - v_ins[k])[split]).norm() / clean[k][split].norm())
            for k in range(layer + 1, lm.n_layers)
        ]
        future.append(max(later, default=0.0))
        prediction.append(float((v_logits[split].softmax(-1) - logits[split].softmax(-1)).norm()))
    assert max(future) > 1e-3 and max(prediction) > 1e-4
    assert np.all(np.asarray(example["output_change"]) >= np.asarray(prediction) - 1e-5)

    # the first answer token's top-1 at that position, from the clean trace
    assert example["first_token_correct"] == bool(logits[split].argmax() == ids[start])
    assert data["levels"]["1"]["first_token_accuracy"] == float(example["first_token_correct"])


# ------------------------------------------------------------------------------ old results


def test_results_saved_before_still_give_a_verdict_line(tmp_path):
    from depthscope.verdict.summary import summarize_results

    # saved before the first-token record and the split offset: per-example matrices only
    old_examples = [
        {k: v for k, v in one_hot(layer).items() if k != "first_token_correct"}
        for layer in (2, 3, 2, 3)
    ]
    rising = {"1": entry_of(old_examples), "2": level([6, 7, 6, 7])}
    for e in rising["2"]["per_example"]:
        del e["first_token_correct"]
    old = result_of(rising)
    del old.data["answer_start_offset"]
    finding = difficulty(old, L)
    assert finding.details["outcome"] == "untested" and finding.details["trend"] is None
    assert finding.details["answer_start_offset"] == 0
    assert finding.details["intervals"]["1"]["layer"]["low"] is not None  # the levels' intervals
    assert "saved before the first answer token's accuracy was recorded" in finding.sentence
    assert "not tested" in finding.sentence

    # saved before per-example matrices: the saved scores alone, no interval, no test
    bare = result_of({str(k): {"depth_score_layer": v} for k, v in ((1, 9.0), (2, 8.0))})
    plain = difficulty(bare, 30)
    assert plain.details["outcome"] == "untested" and plain.details["intervals"] == {}
    assert "holds no per-example data" in plain.sentence
    assert plain.headline == "depth score 9.0 → 8.0"

    # the verdict reads both without a note
    for result in (old, bare, result_of({"1": level([2, 3] * 4), "2": level([6, 7] * 4)})):
        summary = summarize_results({"depth-score": result}, tmp_path)
        assert summary.finding("difficulty") is not None and not summary.notes


# ------------------------------------------------------------------------------ the docs' tables


def findings_script():
    path = Path(__file__).resolve().parents[2] / "docs" / "make_findings.py"
    spec = importlib.util.spec_from_file_location("make_findings_depth_score", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_findings_take_new_runs_and_still_render_old_references(tmp_path, monkeypatch):
    script = findings_script()
    for model in script.MODELS:  # a kept reference renders in its own format, old or new
        kept = json.loads((script.REFERENCE / model / "depth-score.json").read_text())
        table = script.depth_score_table(model)
        if kept.get("format") == 2:
            assert "Trend (least-squares slope" in table, model
        else:
            assert "before the verdict's trend test" in table, model
    tasks = {
        "hops": {"1": level([2, 3] * 4), "2": level([4, 5] * 4), "3": level([6, 7] * 4)},
        "nested": {"1": level([4, 5] * 4), "2": level([4, 5] * 4, False)},
    }
    runs = []
    for task, levels in tasks.items():
        result = result_of(levels, split_rule="answer-start")
        result.extra.update(data_source=f"builtin:{task}", seconds=3.0)
        result.save(tmp_path / task, figures=False)
        runs.append(tmp_path / task)
    monkeypatch.setattr(script, "REFERENCE", tmp_path / "reference")
    (tmp_path / "reference" / "synthetic").mkdir(parents=True)
    script.take_depth_score(runs)
    doc = json.loads((tmp_path / "reference" / "synthetic" / "depth-score.json").read_text())
    assert doc["format"] == 2 and doc["tasks"]["hops"]["answer_start_offset"] == -1
    assert doc["tasks"]["hops"]["outcome"] == "more" and doc["tasks"]["nested"]["trend"] is None
    table = script.depth_score_table("synthetic")
    assert "| hops | 1 | 8 | 2.50 [2.25, 2.75] |" in table
    assert "| nested | 2 | 8 |" in table and "| 0% (0%) | no |" in table
    assert "Holm-corrected over the 1 tasks tested" in table
    assert "- hops: levels 1, 2, 3 in the trend; change from level 1 to level 3: +0.400" in table
    assert "harder problems use more depth." in table
    assert "- nested: no trend tested: fewer than two levels solved (solved: 1" in table
