"""The numbers the docs state are those of the reference runs: docs/make_findings.py --check."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def findings_script():
    spec = importlib.util.spec_from_file_location(
        "make_findings", ROOT / "docs" / "make_findings.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_generated_doc_part_matches_the_reference_runs(capsys):
    script = findings_script()
    for model in script.MODELS:
        summary = json.loads((script.REFERENCE / model / "summary.json").read_text())
        assert summary["model"] == model and summary["findings"]
    assert script.main(["--check"]) == 0, capsys.readouterr().out


def test_every_marker_has_a_generator_and_the_verdicts_carry_intervals():
    script = findings_script()
    keys = {
        m.group("key")
        for path in script.docs_files()
        for m in script.MARKER.finditer(path.read_text())
    }
    assert keys and keys <= set(script.GENERATORS)
    for model in script.MODELS:
        block = script.verdict_block(model)
        lines = block.splitlines()
        transition = next(line for line in lines if line.strip().startswith("Transition"))
        if "none (no step" not in transition:
            assert "[" in transition, transition  # a named transition carries its interval
        depth = next(line for line in lines if line.strip().startswith("Effective depth"))
        assert re.search(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\]", depth), depth  # and the depth


def findings_runs():
    findings_script()  # puts docs/ on the path
    import findings_runs

    return findings_runs


def test_accuracy_interval_is_the_binomial_spread_and_collapses_at_the_ends():
    runs = findings_runs()
    half = runs.accuracy_interval(0.5, 40)
    assert half.low < 0.5 < half.high
    # normal approximation: 90 % half-width 1.645 * sqrt(0.25 / 40) = 0.13
    assert 0.2 <= half.high - half.low <= 0.32
    perfect = runs.accuracy_interval(1.0, 10)
    assert perfect.low == perfect.high == 1.0


def test_erasure_sentence_names_the_last_boundary_a_question_token_is_used():
    runs = findings_runs()
    prompt = {"text": "1 + 2 = ", "f_input": 0.9, "question_max": [0.3, 0.2, 0.15, 0.05, 0.005, 0]}
    sentence = runs.erasure_sentence(prompt, n_layers=5)
    assert "0.15–0.30 at boundaries 0–2, below 0.1 from boundary 3" in sentence
    assert "below 0.01 from boundary 4 of 5" in sentence
    quiet = dict(prompt, question_max=[0.05] * 6)
    assert "no question token reaches" in runs.erasure_sentence(quiet, n_layers=5)


def _map_reference(best: list[int], n_tgt: int) -> dict:
    n_src = len(best) - 1
    rel = [[0.5] * (n_tgt + 1) for _ in range(n_src + 1)]
    for m, b in enumerate(best):
        rel[m][b] = 0.2
    return {
        "rel_err": rel,
        "r2": [[0.7] * (n_tgt + 1) for _ in range(n_src + 1)],
        "best_target": best,
        "best_source": list(range(n_tgt + 1)),
        "rel_err_mean_baseline": [0.9] * (n_tgt + 1),
        "n_train_tokens": 100,
        "n_val_tokens": 20,
        "n_train_texts": 5,
        "n_val_texts": 2,
        "aligned_fraction": 1.0,
        "source_layers": n_src,
        "target_layers": n_tgt,
        "source_model": "a",
        "target_model": "b",
        "ridge": 1e-4,
        "seconds": {"statistics": 1.0},
        "statistics_tokens_per_s": 100.0,
    }


def test_linear_map_rule_tells_a_diagonal_from_a_reversed_match(tmp_path, monkeypatch):
    runs = findings_runs()
    monkeypatch.setattr(runs, "MAP_REFERENCE", tmp_path / "map.json")
    runs.MAP_REFERENCE.write_text(json.dumps(_map_reference([0, 2, 4, 6, 8], 8)))
    block = runs.linear_map_block()
    assert "**1.000**" in block and "**it follows relative depth**" in block
    runs.MAP_REFERENCE.write_text(json.dumps(_map_reference([0, 8, 6, 4, 2], 8)))
    assert "**it does not**" in runs.linear_map_block()


def test_ridge_sweep_table_marks_the_lowest_error_and_counts_moved_targets(tmp_path, monkeypatch):
    runs = findings_runs()
    monkeypatch.setattr(runs, "RIDGE_REFERENCE", tmp_path / "sweep.json")
    doc = _map_reference([0, 2, 4, 6, 8], 8)
    doc["ridge_sweep"] = [
        {"ridge": 0.0, "rel_err_mean": 0.41, "best_target": [0, 2, 4, 6, 8]},
        {"ridge": 1e-4, "rel_err_mean": 0.40, "best_target": [0, 2, 4, 6, 8]},
        {"ridge": 0.1, "rel_err_mean": 0.45, "best_target": [0, 3, 5, 6, 8]},
    ]
    runs.RIDGE_REFERENCE.write_text(json.dumps(doc))
    table = runs.ridge_sweep_table()
    assert "| mean rel_err | 0.4100 | **0.4000** | 0.4500 |" in table
    assert "| no | — | 2 of 5 |" in table


def _training_run(interp: float, count: tuple, operands: tuple) -> dict:
    """A kept E11 run: its last evaluation and the two depth measures with their intervals."""
    low, value, high = count
    return {
        "training": {"evaluations": [{"step": 3000, "mean_accuracy": {"interpolate": interp}}]},
        "verdict": {
            "future_use": {"count": value, "count_interval": {"low": low, "high": high}},
            "operands": {
                "layer": operands[1],
                "interval": {"low": operands[0], "high": operands[2]},
            },
        },
    }


def test_e11_rule_needs_separated_intervals_and_a_trained_answer_only_model(monkeypatch):
    findings_script()  # puts docs/ on the path
    import findings_training as training

    e11 = {
        # transformer: answer-only uses more layers beyond the intervals and learned enough
        "transformer-all": _training_run(0.6, (3, 4, 4), (5, 5, 6)),
        "transformer-answer": _training_run(0.5, (6, 7, 7), (5, 6, 6)),
        # shared: overlapping intervals, and the answer-only model learned too little
        "shared-all": _training_run(0.6, (3, 4, 5), (5, 6, 7)),
        "shared-answer": _training_run(0.1, (4, 5, 6), (5, 6, 7)),
    }
    monkeypatch.setattr(training, "_reference", lambda: {"e11": e11})
    transformer, shared = training.e11_reading().splitlines()[:2]
    assert "**uses more depth**" in transformer and "no test" not in transformer
    assert (
        "inconclusive at these prompt counts" in shared
        and "**is not shown to use more or less depth** (inconclusive)" in shared
    )
    assert "no test of the paper's claim" in shared
