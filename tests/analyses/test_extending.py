"""docs/extending.md works as written: an analysis from outside the package runs end to end."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest

import depthscope as ds
from depthscope.analyses import load_plugins
from depthscope.cli import main
from depthscope.core.registry import CARDS
from depthscope.core.result import Result

DOC = Path(__file__).resolve().parents[2] / "docs" / "extending.md"


def doc_module_source() -> str:
    """The first Python block of docs/extending.md: the complete toy analysis."""
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)[0]


@pytest.fixture
def toy(tmp_path, monkeypatch):
    (tmp_path / "cos_to_final.py").write_text(doc_module_source())
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("cos_to_final", None)
    module = importlib.import_module("cos_to_final")
    yield module
    CARDS.pop("cos-to-final", None)
    sys.modules.pop("cos_to_final", None)


def test_an_analysis_from_outside_gets_results_figures_and_a_report_section(
    toy, tiny_model_dir, tmp_path, capsys
):
    out = tmp_path / "run"
    code = main(
        [
            "analyze",
            str(tiny_model_dir),
            "--analyses",
            "cos-to-final,contributions",
            "--data",  # the default mixture's prose is longer than the tiny model's context
            "builtin:arith-words",
            "-n",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    result = Result.load(out / "results" / "cos-to-final.json")
    cos = result.data["cos"]
    assert len(cos) == 3 + 1 and cos[-1] == pytest.approx(1.0)  # h_L with itself
    assert (
        result.n_prompts == 2
        and "cos-to-final" in json.loads((out / "run.json").read_text())["analyses"]
    )
    assert (out / "figures" / "cos-to-final_cos.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()
    assert "id='cos-to-final'" in page and "cosine with the final residual exceeds 0.9" in page
    assert "where it nears 1 the residual has settled" in page  # its caption
    # its declared profile is evidence in the verdict, named nowhere but in its own module
    summary = json.loads((out / "summary.json").read_text())
    transition = next(f for f in summary["findings"] if f["key"] == "transition")
    assert "cosine to the final residual" in transition["details"]["profiles"]
    assert "cos-to-final_cos" in transition["figures"]
    other = tmp_path / "other"
    assert (
        main(
            [
                "analyze",
                str(tiny_model_dir),
                "--analyses",
                "cos-to-final",
                "-n",
                "3",
                "--out",
                str(other),
                "--no-plots",
            ]
        )
        == 0
    )
    assert (
        main(["compare", str(out), str(other), "--out", str(tmp_path / "cmp"), "--no-plots"]) == 0
    )
    compared = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert "cos-to-final" in compared["quantities"]
    lm = ds.load_model(str(tiny_model_dir), progress=False)
    api = ds.analyze(lm, "cos-to-final", "The neighbour of Brelo is Quist.", skip_first=0)
    assert api.data["cos"][-1] == pytest.approx(1.0) and api.numbers()


def test_help_lists_a_registered_analysis_with_its_settings(toy, capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    text = capsys.readouterr().out
    assert "cos-to-final" in text and "--set cos-to-final.skip_first=1" in text


def test_plugins_declared_by_entry_points_are_loaded(tmp_path, monkeypatch):
    (tmp_path / "cos_to_final.py").write_text(doc_module_source())
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("cos_to_final", None)

    class Entry:
        name, value = "cos-to-final", "cos_to_final"

        def load(self):
            return importlib.import_module(self.value)

    class Broken(Entry):
        name, value = "broken", "no_such_module_anywhere"

    monkeypatch.setattr(
        "importlib.metadata.entry_points", lambda group: [Entry(), Broken()] if group else []
    )
    try:
        assert load_plugins() == ["cos-to-final"]
        assert "cos-to-final" in CARDS
    finally:
        CARDS.pop("cos-to-final", None)
        sys.modules.pop("cos_to_final", None)
