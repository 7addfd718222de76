"""The effective-depth verdict: each rule on synthetic profiles with a known answer, and the
verdict of a synthetic run directory (missing analyses, malformed results, rendering)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from depthscope.analyses import rules
from depthscope.analyses.effects import later_layer_effect
from depthscope.results.document import Result
from depthscope.results.summary import (
    SUMMARY_FILE,
    Summary,
    summarize,
    summary_card_html,
    summary_lines,
    write_summary,
)

L = 30


def step(n: int, at: int, before: float, after: float) -> np.ndarray:
    return np.where(np.arange(n) < at, before, after).astype(float)


# ------------------------------------------------------------------------------ rules


def test_change_point_finds_a_step():
    point = rules.change_point(step(L, 12, 1.0, 0.1), "down")
    assert point is not None and point.significant
    assert point.index == 12 and point.quality == pytest.approx(1.0)
    assert point.p_value == pytest.approx(1 / (1 + rules.PERMUTATIONS))  # no shuffle does as well
    assert point.left == 1.0 and point.right == pytest.approx(0.1)


def test_change_point_of_a_flat_profile_is_none():
    assert rules.change_point(np.full(L, 0.7), "down") is None
    assert rules.change_point([1.0, 0.5, 0.2], "down") is None  # too short to split


def test_change_point_survives_noise_and_a_spike_at_the_top():
    for seed in range(10):
        noisy = step(L, 17, 1.0, 0.2) + np.random.default_rng(seed).normal(0, 0.1, L)
        noisy[-2] = 1.5  # a "special layer at the very top"
        point = rules.change_point(noisy, "down")
        assert point.significant and abs(point.index - 17) <= 1, (seed, point)


def test_change_point_in_log_scale_ignores_outlying_first_layers():
    """Real future-effect profiles: layers 0-1 are several times larger than the rest."""
    for seed in range(10):
        noise = np.random.default_rng(seed).lognormal(0.0, 0.25, L)
        profile = step(L, 20, 0.5, 0.2) * noise
        profile[:2] = [4.0, 2.0]
        point = rules.change_point(profile, "down", log=True)
        assert point.significant and abs(point.index - 20) <= 1, (seed, point)
    flat = np.full(L, 0.5) * np.random.default_rng(0).lognormal(0.0, 0.25, L)
    flat[:2] = [4.0, 2.0]  # two outlying layers are no regime: segments span >= L/6 layers
    assert rules.min_segment(L) == 5
    assert not rules.change_point(flat, "down", log=True).significant


def test_pure_noise_is_no_transition():
    """The permutation test makes false transitions rare (1 % by construction)."""
    found = 0
    for seed in range(40):
        noise = np.random.default_rng(seed).normal(0.5, 0.2, L)
        found += rules.change_point(noise, "down").significant
        positive = np.random.default_rng(100 + seed).lognormal(0.0, 0.5, L)
        found += rules.change_point(positive, "down", log=True).significant
        centred = np.random.default_rng(200 + seed).normal(0.0, 1.0, L)
        found += rules.change_point(centred).significant
    assert found <= 2, found  # of 120 noise profiles


def test_change_point_rejects_the_wrong_direction_and_small_steps():
    rising = rules.change_point(step(L, 10, 0.1, 1.0), "down")
    assert rising.index == 10 and rising.direction == "up" and not rising.significant
    assert rules.change_point(step(L, 10, 0.1, 1.0), "up").significant
    small = rules.change_point(step(L, 10, 1.0, 0.9), "down")  # a clean but 10 % step
    assert small.quality == pytest.approx(1.0) and not small.significant


def test_change_point_ignores_nan_and_keeps_indices():
    values = step(L, 12, 1.0, 0.1)
    values[[3, 20]] = np.nan
    assert rules.change_point(values, "down").index == 12


def test_later_layer_effect_is_the_mean_over_later_layers():
    effect = np.triu(np.arange(16, dtype=float).reshape(4, 4), k=1)
    expected = [np.mean([1, 2, 3]), np.mean([6, 7]), 11.0]
    assert np.allclose(later_layer_effect(effect)[:3], expected)
    assert np.isnan(later_layer_effect(effect)[3])


def test_future_use_counts_layers_above_half_the_first_half_median():
    values = step(10, 6, 1.0, 0.1)
    values[4] = 0.4  # below 0.5 × median(1, 1, 1, 1, 0.4) = 0.5
    values[8] = 0.6  # a late layer that still matters
    use = rules.future_use(values)
    assert use.reference == 1.0 and use.threshold == 0.5
    assert use.layers == [0, 1, 2, 3, 5, 8]
    assert rules.future_use(np.zeros(10)) is None


def test_first_at_least_and_stays_below():
    assert rules.first_at_least([0.1, 0.3, 0.5, 0.2, 0.9], 0.5) == 2
    assert rules.first_at_least([0.1, 0.2], 0.5) is None
    assert rules.stays_below_from([5, 4, 1, 3, 1, 0.5], 2.0) == 4
    assert rules.stays_below_from([5, 1, 3], 2.0) is None
    assert rules.stays_below_from([1, 1], 2.0) == 0


def test_operand_columns_and_stop_mattering():
    tokens = ["<s>", "5", " +", " 7", " =", " 1", "2"]
    columns = rules.context_columns(len(tokens), answer_length=2)
    assert columns == [1, 2, 3]  # BOS and the positions that predict the answer are excluded
    operands, digits = rules.operand_columns(tokens, columns)
    assert operands == [1, 3] and digits
    assert rules.operand_columns(["<s>", "a", "b"], [1, 2]) == ([1, 2], False)
    matrix = np.zeros((L + 1, len(tokens)))
    matrix[:14, [1, 3]] = 1.0
    matrix[:25, 2] = 1.0  # the "+" matters longer, but it is no operand
    matrix[:, 4:] = 9.0  # predicting positions: huge at every depth, excluded
    assert rules.stop_mattering(matrix, operands) == 14
    assert rules.stop_mattering(matrix, columns) == 25
    assert rules.stop_mattering(np.zeros((5, 7)), operands) is None


def test_layer_ranges():
    assert rules.layer_ranges([7, 0, 1, 2, 5, 8]) == "0–2, 5, 7–8"
    assert rules.layer_ranges([]) == "none"


# ------------------------------------------------------------------------------ run directories

MODEL = {"name": "synthetic", "n_layers": L, "source": "folder:/models/synthetic"}


def save(run, analysis: str, data: dict, **settings) -> None:
    Result(
        analysis=analysis,
        model=MODEL,
        settings=settings,
        n_prompts=2,
        n_tokens=40,
        data=data,
        extra={"data_source": "builtin:arith-words"},
    ).save(run / "results" / f"{analysis}.json")


def future_effects(later: np.ndarray, output: np.ndarray) -> dict:
    effect = np.triu(np.repeat(later[:, None], L, axis=1), k=1)
    return {"effect": effect.tolist(), "output_change": output.tolist()}


P = 8  # prompts of the synthetic runs


def noisy(profile: np.ndarray, seed: int, sigma: float = 0.1) -> np.ndarray:
    """``P`` per-prompt profiles: ``profile`` times independent log-normal noise."""
    rng = np.random.default_rng(seed)
    return profile[None, :] * rng.lognormal(0.0, sigma, (P, profile.size))


def per_prompt_effects(later: np.ndarray, output: np.ndarray, seed: int) -> dict:
    """Future-effects data whose per-prompt entries scatter around ``later`` and ``output``."""
    laters, outputs = noisy(later, seed), noisy(output, seed + 1)
    entries = [{"prompt": i, **future_effects(laters[i], outputs[i])} for i in range(P)]
    data = future_effects(laters.max(0), outputs.max(0))
    data["per_prompt"] = entries
    return data


def per_prompt_contributions(rel_layer: np.ndarray, cos_layer: np.ndarray, seed: int) -> dict:
    rels = noisy(rel_layer, seed)
    coss = cos_layer[None, :] + np.random.default_rng(seed + 1).normal(0, 0.01, (P, L))
    entries = [
        {"prompt": i, "n_tokens": 20, "rel_layer": rels[i].tolist(), "cos_layer": coss[i].tolist()}
        for i in range(P)
    ]
    return {
        "rel_layer": rels.mean(0).tolist(),
        "cos_layer": coss.mean(0).tolist(),
        "per_prompt": entries,
    }


def per_prompt_lens(overlap: np.ndarray, kl: np.ndarray, seed: int) -> dict:
    overlaps = np.clip(
        overlap[None, :] + np.random.default_rng(seed).normal(0, 0.02, (P, L + 1)), 0, 1
    )
    kls = noisy(kl, seed + 1)
    entries = [
        {"prompt": i, "weight": 1, "kl": kls[i].tolist(), "topk_overlap": overlaps[i].tolist()}
        for i in range(P)
    ]
    return {
        "topk_overlap": overlaps.mean(0).tolist(),
        "kl": kls.mean(0).tolist(),
        "per_prompt": entries,
    }


@pytest.fixture
def run(tmp_path):
    """A run whose second regime starts at layer 12 in every profile, 8 noisy prompts."""
    run = tmp_path / "run"
    output = step(L, 12, 1.0, 0.05)
    output[28] = 0.9
    save(run, "future-effects", per_prompt_effects(step(L, 12, 0.8, 0.1), output, seed=1))
    save(
        run,
        "contributions",
        per_prompt_contributions(step(L, 12, 0.6, 0.1), step(L, 12, -0.1, 0.2), seed=3),
    )
    save(
        run,
        "logit-lens",
        per_prompt_lens(step(L + 1, 12, 0.1, 0.6), step(L + 1, 12, 5.0, 1.0), seed=5),
        k=5,
    )
    tokens = ["<s>", "5", " +", " 7", " =", " 1", "2"]
    erasure = np.zeros((L + 1, len(tokens)))
    erasure[:14, [1, 3]] = 1.0
    erasure[:, 4:] = 3.0
    save(
        run,
        "erasure",
        {"effect": [erasure.tolist()], "tokens": [tokens], "answer_tokens": [2], "prompts": [0]},
    )
    return run


def test_verdict_of_a_run_with_a_known_answer(run):
    summary = summarize(run)
    assert summary.model == "synthetic" and summary.n_layers == L
    transition = summary.finding("transition")
    assert transition.layer == 12 and transition.relative_depth == pytest.approx(0.4)
    assert transition.details["basis"] == "consensus"
    consensus = transition.details["consensus"]
    assert consensus["agreed"] and len(consensus["members"]) == 6
    assert consensus["interval"]["low"] <= 12 <= consensus["interval"]["high"]
    profiles = transition.details["profiles"]
    assert all(p["significant"] for p in profiles.values())
    assert {name: p["layer"] for name, p in profiles.items()} == {
        "future effect on later layers": 12,
        "future output change": 12,
        "relative contribution": 12,
        "cosine to the residual": 12,
        "logit-lens KL": 12,
        "logit-lens top-k overlap": 12,
    }
    for name, entry in profiles.items():  # every change point carries its interval
        assert entry["interval"]["low"] <= 12 <= entry["interval"]["high"], name
        assert entry["n_prompts"] == P
    assert profiles["cosine to the residual"]["direction"] == "up"
    assert "future-effects_effect_layer" in transition.figures
    assert "[" in transition.headline  # "layer 12 [12, 12] (relative depth 0.40 [...])"
    use = summary.finding("future_use")
    assert use.details["layers"] == [*range(12), 28] and use.layer == 28
    assert use.details["second_half_count"] == 1
    assert use.details["count_interval"]["low"] <= 13 <= use.details["count_interval"]["high"]
    lens = summary.finding("lens")
    assert lens.layer == 12 and lens.details["kl_boundary"] == 12
    assert lens.details["overlap_interval"]["low"] <= 12 <= lens.details["overlap_interval"]["high"]
    operands = summary.finding("operands")
    assert operands.layer == 14 and operands.relative_depth == pytest.approx(14 / L, abs=1e-3)
    assert operands.figures == ["erasure_prompt0"]
    missing = {m.key: m for m in summary.missing}
    assert set(missing) == {"transition", "difficulty"}  # current effects: another indicator
    assert "--analyses current-effects " in missing["transition"].command
    assert missing["difficulty"].command == (
        "depthscope analyze /models/synthetic --analyses depth-score --data builtin:hops "
        f"--out {run}"
    )


def test_indicators_that_disagree_are_said_to_disagree(tmp_path):
    """Future effects step at layer 9, the logit lens 6 layers later: no single transition."""
    run = tmp_path / "split"
    save(run, "future-effects", per_prompt_effects(step(L, 9, 0.8, 0.1), step(L, 9, 1.0, 0.1), 1))
    save(
        run,
        "logit-lens",
        per_prompt_lens(step(L + 1, 15, 0.1, 0.6), step(L + 1, 15, 5.0, 1.0), seed=5),
        k=5,
    )
    transition = summarize(run).finding("transition")
    consensus = transition.details["consensus"]
    assert not consensus["agreed"] and len(consensus["groups"]) == 2
    assert set(consensus["groups"][0]) == {"future effect on later layers", "future output change"}
    assert transition.headline.startswith("disputed: 9 [")
    assert " vs 15 [" in transition.headline
    assert transition.sentence.startswith("Indicators disagree:")


def test_a_noisy_flat_profile_has_no_transition_and_its_interval_says_so(tmp_path):
    run = tmp_path / "flat"
    flat = np.full(L, 0.5)
    data = per_prompt_effects(flat, flat, seed=7)
    for entry in data["per_prompt"]:  # large noise: each prompt's profile is a random walk
        entry["output_change"] = (
            np.random.default_rng(entry["prompt"]).lognormal(0, 0.6, L) * 0.5
        ).tolist()
    save(run, "future-effects", data)
    transition = summarize(run).finding("transition")
    assert transition.layer is None and transition.headline == "none"
    output = transition.details["profiles"]["future output change"]
    assert not output["significant"] and output["interval"]["none_share"] > 0.05


def current_effects(max_profile: np.ndarray, position_mean: np.ndarray | None) -> dict:
    """Current-effects data: per-prompt maxima near ``max_profile``, means near ``position_mean``."""
    maxima = noisy(max_profile, seed=11)
    entries = [{"prompt": i, "output_change": maxima[i].tolist()} for i in range(P)]
    data = {"effect": np.zeros((L, L)).tolist(), "output_change": maxima.max(0).tolist()}
    if position_mean is not None:
        means = noisy(position_mean, seed=12)
        for entry, mean in zip(entries, means, strict=True):
            entry["output_change_position_mean"] = mean.tolist()
        data["output_change_position_mean"] = means.mean(0).tolist()
    data["per_prompt"] = entries
    return data


def test_current_output_change_is_read_as_a_mean_over_positions(tmp_path):
    """The max over positions is saturated (flat); the mean over them steps at layer 14. The
    verdict reads the mean where the run has it and the paper's max where it does not."""
    flat, stepped = np.full(L, 1.2), step(L, 14, 0.6, 0.05)
    new, old = tmp_path / "new", tmp_path / "old"
    save(new, "current-effects", current_effects(flat, stepped))
    save(old, "current-effects", current_effects(flat, None))
    read = summarize(new).finding("transition").details["profiles"]["current output change"]
    assert read["significant"] and read["layer"] == 14
    assert read["figure"] == "current-effects_output_change_layer_position_mean"
    fallback = summarize(old).finding("transition").details["profiles"]["current output change"]
    assert not fallback["significant"]
    assert fallback["figure"] == "current-effects_output_change_layer"


def test_bootstrap_interval_of_a_case_computable_by_hand():
    """Two prompts with values 0 and 1: a draw's mean is 0, 1/2 or 1 with chances 1/4, 1/2, 1/4,
    so the 90 % interval is [0, 1]; a statistic that exists only above 1/4 is missing in about a
    quarter of the draws."""
    from depthscope.analyses import bootstrap

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


def test_noise_profile_reports_no_transition(tmp_path):
    run = tmp_path / "noise"
    noise = np.random.default_rng(0).uniform(0.4, 0.6, L)
    save(run, "future-effects", future_effects(noise, noise))
    transition = summarize(run).finding("transition")
    assert transition.layer is None and transition.headline == "none"
    assert transition.sentence.startswith("No transition")


def test_missing_analyses_become_commands_and_never_raise(tmp_path):
    run = tmp_path / "partial"
    save(run, "contributions", {"rel_layer": step(L, 9, 0.6, 0.1).tolist(), "cos_layer": [0.0] * L})
    (run / "results" / "logit-lens.json").write_text("{not json")
    save(run, "depth-score", {"levels": {"2": {"depth_score_layer": "oops"}}})
    summary = summarize(run)
    transition = summary.finding("transition")  # the relative contribution alone (no interval:
    assert transition.layer == 9 and transition.details["basis"] == "consensus"  # no per-prompt)
    assert transition.details["consensus"]["members"] == ["relative contribution"]
    assert transition.details["profiles"]["relative contribution"]["interval"] is None
    missing = {m.key: m.command for m in summary.missing}
    assert set(missing) == {"transition", "future_use", "lens", "operands", "difficulty"}
    assert "--analyses current-effects,future-effects,logit-lens " in missing["transition"]
    assert "--analyses erasure " in missing["operands"]
    assert any("logit-lens.json" in note for note in summary.notes)
    lines = summary_lines(summary)
    assert any("not measured; run: depthscope analyze" in line for line in lines)
    maps = tmp_path / "map"
    save(maps, "linear-map", {"rel_err": [[0.5]]})
    assert summarize(maps).missing == [] and "feeds the verdict" in summarize(maps).notes[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(summarize(empty).missing) == 5 and summarize(empty).findings == []


def test_malformed_result_is_a_note_not_an_error(tmp_path):
    run = tmp_path / "bad"
    save(run, "future-effects", {"output_change": [1.0] * L})  # no "effect"
    summary = summarize(run)
    assert any("Transition: result malformed" in note for note in summary.notes)
    assert summary.finding("future_use") is not None


def test_write_summary_and_rendering(run):
    summary = write_summary(run)
    doc = json.loads((run / SUMMARY_FILE).read_text())
    assert Summary.from_json(doc).finding("transition").layer == 12
    assert doc["rules"]["change_point"]["max_p_value"] == rules.MAX_P_VALUE
    card = summary_card_html(summary)
    assert "layer 12 [12, 12] (relative depth 0.40 [0.40, 0.40])" in card
    assert "figures/future-effects_effect_layer.png" in card
    assert "depthscope analyze /models/synthetic --analyses depth-score" in card
    assert "<script" not in card
    lines = summary_lines(summary)
    assert lines[0].startswith("verdict for synthetic (30 layers")
    assert any("The second regime starts at layer 12 [12, 12]" in line for line in lines)


def test_not_a_directory_is_one_clear_error(tmp_path):
    from depthscope.core.errors import DepthscopeError

    with pytest.raises(DepthscopeError, match="does not exist"):
        summarize(tmp_path / "nope")


def test_igrad_rows_are_layer_outputs_and_depth_score_levels(tmp_path):
    run = tmp_path / "attribution"
    tokens = ["<s>", "3", " +", " 4", " =", " 7"]
    attribution = np.zeros((L, len(tokens)))
    attribution[:13, [1, 3]] = -2.0  # signed (magnitudes count); rows 0-12 = boundaries 1-13
    save(
        run,
        "igrad",
        {"attribution": [attribution.tolist()], "tokens": [tokens], "answer_tokens": [1]},
    )
    levels = {str(k): {"depth_score_layer": v} for k, v in ((1, 9.0), (2, 10.5), (3, 12.0))}
    save(run, "depth-score", {"levels": levels}, aggregate="max")
    summary = summarize(run)
    operands = summary.finding("operands")
    assert operands.layer == 14 and operands.details["basis"] == "igrad"  # first quiet boundary
    assert operands.figures == ["igrad_layer_prompt0"]
    difficulty = summary.finding("difficulty")
    assert difficulty.details["grows"] is True and "use more depth" in difficulty.sentence
    assert difficulty.figures == ["depth-score_summary_max"]
    assert {m.key for m in summary.missing} == {"transition", "future_use", "lens"}
