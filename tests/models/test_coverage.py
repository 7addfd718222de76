"""Coverage of the installed transformers' decoder-only causal LMs (benchmarks/arch_coverage.py).

The suite checks a few types of each kind (table, discovered, refused, not decoder-only) and that
the reference sweep (docs/reference/coverage.json, from which docs/architectures.md's table is
generated) is consistent and holds the floor below. The whole sweep (every type; about ten
minutes on two CPU cores) runs as its own CI step: ``DEPTHSCOPE_COVERAGE_SWEEP=1 python -m
pytest -m coverage_sweep tests/models/test_coverage.py`` (.ci/run).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import transformers

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference" / "coverage.json"
# The proven share of the types that build, as the sweep reaches it (transformers 5.25, 4 layers:
# 115 of 146, 78.8 %). The issue asks for 90 %; the rest are single-mixer and three-branch
# layers, residuals added inside sublayers, flattened tokens, scaled residuals, heads that
# transform the logits (docs/architectures.md#coverage), each refused in one line.
PROVEN_FLOOR = 0.78


def _assert_one_line(entry: dict) -> None:
    assert entry["status"] != "crashed", entry  # a traceback escaped: a bug
    if entry["status"] == "refused":
        assert "\n" not in entry["refusal"], entry
        assert "register_adapter (docs/extending.md)" in entry["refusal"] or entry[
            "refusal"
        ].startswith("the "), entry


EXPECTED = {
    "mixtral": ("proven", "discovered"),
    "cohere": ("proven", "discovered"),  # parallel block, shared input norm
    "exaone": ("proven", "table"),  # a LlamaForCausalLM under its own model type
    "qwen2": ("proven", "table"),
    "bloom": ("refused", None),  # the residual is added inside the sublayers
    "mamba": ("refused", None),  # one mixer, no two branches
    "bart": ("not decoder-only", None),
}


@pytest.mark.parametrize("model_type", sorted(EXPECTED))
def test_a_few_types_of_each_kind(coverage, model_type):
    if model_type not in coverage_types():
        pytest.skip(f"{model_type} is not in this transformers")
    entry = coverage.check(model_type)
    _assert_one_line(entry)
    status, source = EXPECTED[model_type]
    assert entry["status"] == status, entry
    assert entry.get("source") == source, entry


def coverage_types() -> set:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def test_the_reference_sweep_is_consistent_and_holds_the_floor(coverage):
    doc = json.loads(REFERENCE.read_text())
    assert doc["summary"] == coverage.summarize(doc["types"])
    for entry in doc["types"]:
        _assert_one_line(entry)
        if entry.get("decoder_only") and not entry.get("built"):
            assert entry["reason"], entry  # every type not built says why
    summary = doc["summary"]
    assert summary["crashed"] == 0
    assert summary["proven"] == summary["proven_table"] + summary["proven_discovered"]
    assert summary["proven_fraction"] >= PROVEN_FLOOR


@pytest.mark.coverage_sweep
@pytest.mark.skipif(
    not os.environ.get("DEPTHSCOPE_COVERAGE_SWEEP"),
    reason="the whole sweep is its own CI step (DEPTHSCOPE_COVERAGE_SWEEP=1)",
)
def test_every_decoder_only_type_is_proven_or_refused_in_one_line(coverage, capsys):
    doc = coverage.sweep(progress=False)
    not_built = [e for e in doc["types"] if e.get("decoder_only") and not e.get("built")]
    with capsys.disabled():
        print(f"\n{json.dumps(doc['summary'])}")
        for entry in not_built:
            print(f"not built offline: {entry['model_type']}: {entry['reason']}")
    for entry in doc["types"]:
        _assert_one_line(entry)
    assert doc["summary"]["crashed"] == 0
    assert doc["summary"]["proven_fraction"] >= PROVEN_FLOOR
    reference = json.loads(REFERENCE.read_text())
    if reference["transformers"] == transformers.__version__:  # the docs' table is current
        assert {e["model_type"]: e["status"] for e in reference["types"]} == {
            e["model_type"]: e["status"] for e in doc["types"]
        }
