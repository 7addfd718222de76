"""The numbers the docs state are those of the reference runs: docs/make_findings.py --check."""

from __future__ import annotations

import importlib.util
import json
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
        transition = next(line for line in block.splitlines() if "Transition" in line)
        assert "[" in transition, transition  # the headline carries its interval
