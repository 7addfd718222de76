"""The effective-depth verdict: each rule on synthetic profiles with a known answer, and the
verdict of a synthetic run directory (missing analyses, malformed results, rendering)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from depthscope.analyses.effects import later_layer_effect
from depthscope.core.result import Result
from depthscope.verdict import regime, rules, words
from depthscope.verdict.card import summary_card_html, summary_lines
from depthscope.verdict.summary import (
    SUMMARY_FILE,
    Summary,
    summarize,
    write_summary,
)

L = 30


def step(n: int, at: int, before: float, after: float) -> np.ndarray:
    return np.where(np.arange(n) < at, before, after).astype(float)


# ------------------------------------------------------------------------------ rules


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
    assert words.layer_ranges([7, 0, 1, 2, 5, 8]) == "0–2, 5, 7–8"
    assert words.layer_ranges([]) == "none"


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
    for name, entry in profiles.items():  # the step beat every step-free fit (Holm-corrected)
        assert entry["decision"] == "step", name
        assert entry["step_vs_trend"]["p_adjusted"] <= 0.05, name
        assert set(entry["step_vs_trend"]["fits"]) == {
            "constant",
            "linear",
            "smooth",
            "two-level",
            "step+trend",
        }
        depth = entry["effective_depth"]  # threshold-free, with its interval
        assert depth["low"] <= depth["value"] <= depth["high"], name
    assert profiles["cosine to the residual"]["step_vs_trend"]["direction"] == "up"
    pairs = consensus["pairs"]  # paired tests of every two indicators: none differs
    assert len(pairs) == 15 and all(p["outcome"] != "differ" for p in pairs.values())
    sweeps = {s["constant"]: s for s in transition.details["sensitivity"]}
    assert set(sweeps) == {"alpha", "min_step", "smooth_span", "penalty", "rho_quantile"}
    assert all(result == 12 for result in sweeps["alpha"]["results"])
    assert "future-effects_effect_layer" in transition.figures
    assert "[" in transition.headline  # "layer 12 [12, 12] (relative depth 0.40 [...])"
    use = summary.finding("future_use")
    assert use.details["layers"] == [*range(12), 28] and use.layer == 28
    assert use.details["second_half_count"] == 1
    assert use.details["count_interval"]["low"] <= 13 <= use.details["count_interval"]["high"]
    fractions = use.details["sensitivity"][0]
    assert fractions["constant"] == "future_fraction" and fractions["default"] == 0.5
    assert fractions["results"][fractions["values"].index(0.5)] == 13
    depth = summary.finding("effective_depth")  # importance-weighted mean depth, per indicator
    assert set(depth.details["indicators"]) == set(profiles)
    assert depth.details["indicators"]["future output change"]["value"] < 0.5
    lens = summary.finding("lens")
    assert lens.layer == 12 and lens.details["kl_boundary"] == 12
    assert lens.details["overlap_interval"]["low"] <= 12 <= lens.details["overlap_interval"]["high"]
    operands = summary.finding("operands")
    assert operands.layer == 14 and operands.relative_depth == pytest.approx(14 / L, abs=1e-3)
    assert operands.figures == ["erasure_prompt0"]
    missing = {m.key: m for m in summary.missing}
    assert set(missing) == {"current_use", "difficulty"}
    assert "--analyses current-effects " in missing["current_use"].command
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
    apart = consensus["pairs"]["future output change | logit-lens KL"]  # paired draws: 15 − 9
    assert apart["outcome"] == "differ" and apart["difference"] == 6
    assert apart["interval"]["low"] > 0 and apart["p_adjusted"] <= 0.05
    same = consensus["pairs"]["future effect on later layers | future output change"]
    assert same["outcome"] == "equivalent"  # within ±1 layer in 90 % of the draws
    assert "+6 [" in transition.sentence


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
    assert transition.layer is None and transition.headline.startswith("none")
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


def test_current_output_change_is_its_own_finding_read_as_a_mean_over_positions(tmp_path):
    """The current output change is no transition indicator (paper Fig. 17a: second-half layers
    matter for the current token). Its finding is the second/first-half ratio, read on the mean
    over positions where the run has it (the max is saturated), as an equivalence test."""
    flat, stepped = np.full(L, 1.2), step(L, 14, 0.6, 0.05)
    new, old, same = tmp_path / "new", tmp_path / "old", tmp_path / "same"
    save(new, "current-effects", current_effects(flat, stepped))
    save(old, "current-effects", current_effects(flat, None))
    save(same, "current-effects", current_effects(flat, np.full(L, 0.6)))
    assert summarize(new).finding("transition") is None  # no indicator in a current-only run
    less = summarize(new).finding("current_use")
    assert less.details["ratio"]["high"] < 0.2 and "less than first-half" in less.sentence
    assert less.figures == ["current-effects_output_change_layer_position_mean"]
    saturated = summarize(old).finding("current_use")  # the max over positions: flat
    assert "as much as first-half ones" in saturated.sentence
    assert "each prompt's max over positions" in saturated.sentence
    assert "each prompt's mean over positions" in less.sentence
    assert saturated.figures == ["current-effects_output_change_layer"]
    equal = summarize(same).finding("current_use")
    assert equal.details["ratio"]["low"] >= 0.8 and equal.details["ratio"]["high"] <= 1.25


def test_noise_profile_reports_no_transition(tmp_path):
    run = tmp_path / "noise"
    noise = np.random.default_rng(0).uniform(0.4, 0.6, L)
    save(run, "future-effects", future_effects(noise, noise))
    transition = summarize(run).finding("transition")
    assert transition.layer is None and transition.headline.startswith("none")
    assert transition.sentence.startswith("No discrete transition")


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
    assert set(missing) == {
        "transition",
        "future_use",
        "current_use",
        "lens",
        "operands",
        "difficulty",
    }
    assert "--analyses future-effects,logit-lens " in missing["transition"]
    assert "--analyses erasure " in missing["operands"]
    assert any("logit-lens.json" in note for note in summary.notes)
    lines = summary_lines(summary)
    assert any("not measured; run: depthscope analyze" in line for line in lines)
    maps = tmp_path / "map"
    save(maps, "linear-map", {"rel_err": [[0.5]]})
    assert summarize(maps).missing == [] and "feeds the verdict" in summarize(maps).notes[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(summarize(empty).missing) == 6 and summarize(empty).findings == []


def test_malformed_result_is_a_note_not_an_error(tmp_path):
    run = tmp_path / "bad"
    save(run, "future-effects", {"output_change": [1.0] * L})  # no "effect"
    summary = summarize(run)
    assert any("transition indicators: result malformed" in note for note in summary.notes)
    assert summary.finding("future_use") is not None


def test_write_summary_and_rendering(run):
    summary = write_summary(run)
    doc = json.loads((run / SUMMARY_FILE).read_text())
    assert Summary.from_json(doc).finding("transition").layer == 12
    assert doc["rules"]["step_vs_trend"]["alpha"] == regime.ALPHA
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
    assert {m.key for m in summary.missing} == {"transition", "future_use", "current_use", "lens"}


def test_a_mixture_gets_a_verdict_per_source_and_their_comparison(tmp_path):
    """Prompts of two sources: the verdict on each source's prompts alone, and whether they
    agree (independent draws, Holm, equivalence margin)."""

    def mixed(run, early: int, late: int) -> None:
        a = per_prompt_effects(step(L, early, 0.8, 0.1), step(L, early, 1.0, 0.1), seed=1)
        b = per_prompt_effects(step(L, late, 0.8, 0.1), step(L, late, 1.0, 0.1), seed=2)
        entries = []
        for i in range(P):
            entry = dict((a if i % 2 == 0 else b)["per_prompt"][i])
            entries.append({**entry, "prompt": i})
        data = {**a, "per_prompt": entries}
        sources = ["builtin:arith-words", "builtin:prose"] * (P // 2)
        Result(
            analysis="future-effects",
            model=MODEL,
            settings={},
            n_prompts=P,
            n_tokens=40,
            data=data,
            extra={"data_source": "builtin:arith-words+builtin:prose", "prompt_sources": sources},
        ).save(run / "results" / "future-effects.json")

    mixed(tmp_path / "apart", 8, 20)
    across = summarize(tmp_path / "apart").finding("distributions")
    assert across.details["sources"] == ["builtin:arith-words", "builtin:prose"]
    verdicts = across.details["verdicts"]
    steps = {
        source: next(f for f in v["findings"] if f["key"] == "transition")["layer"]
        for source, v in verdicts.items()
    }
    assert steps == {"builtin:arith-words": 8, "builtin:prose": 20}
    assert across.headline.startswith("they differ in")
    assert "(4 prompts)" in across.sentence
    mixed(tmp_path / "same", 12, 12)
    same = summarize(tmp_path / "same").finding("distributions")
    assert same.headline.startswith("they agree")
    plain = summarize(tmp_path / "apart").finding("transition")  # the pooled verdict stays
    assert plain.details["profiles"]["future output change"]["n_prompts"] == P
