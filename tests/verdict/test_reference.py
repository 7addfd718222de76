"""`analyze --reference random-init`: the same analyses on the architecture with fresh weights,
and a verdict that says what the trained model shows beyond it."""

from __future__ import annotations

import json

import pytest
from tiny_models import save_llama_dir

from depthscope.cli import main
from depthscope.core.run_folder import REFERENCE as RANDOM_REFERENCE
from depthscope.verdict.summary import summarize

ARGS = [
    "-n", "4", "--no-plots", "--data", "builtin:arith-chain:3+builtin:nested:2",
    "--analyses", "contributions,future-effects,logit-lens",
    "--set", "n_splits=2", "--set", "split_stride=2",
]  # fmt: skip


@pytest.fixture(scope="module")
def deep_model(tmp_path_factory):
    return save_llama_dir(tmp_path_factory.mktemp("deep") / "llama24", 24)


def test_random_weights_name_no_transition(deep_model, tmp_path):
    """Freshly initialised weights (two seeds): every indicator is judged, none steps."""
    for seed in (3, 4):
        out = tmp_path / f"random{seed}"
        assert main(["analyze", f"random-init:{seed}:{deep_model}", "--out", str(out), *ARGS]) == 0
        transition = summarize(out).finding("transition")
        assert transition.layer is None, transition.sentence
        profiles = transition.details["profiles"]
        assert len(profiles) == 6 and all(p["step_vs_trend"] for p in profiles.values())


def test_reference_run_and_its_verdict(deep_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["analyze", str(deep_model), "--out", str(out), "--reference", "random-init",
                 *ARGS]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    reference = out / RANDOM_REFERENCE
    run = json.loads((reference / "run.json").read_text())
    assert run["model"]["init_seed"] == 0 and run["model"]["name"].endswith("-random-init")
    assert sorted(p.name for p in (reference / "results").glob("*.json")) == [
        "contributions.json", "future-effects.json", "logit-lens.json"
    ]  # fmt: skip
    beyond = summarize(out).finding("reference")
    assert beyond is not None and "random init: no transition" in beyond.headline
    rows = beyond.details["differences"]
    assert {r["measure"] for r in rows} == {"effective depth", "change point"}
    assert "Beyond random weights" in printed
    code = main(["analyze", f"random-init:{deep_model}", "--out", str(tmp_path / "x"),
                 "--reference", "random-init", *ARGS])  # fmt: skip
    assert code == 2
    assert "already has random weights" in capsys.readouterr().err
