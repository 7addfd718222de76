"""`depthscope compare`: two tiny runs of different depth overlaid by relative depth, conventions
checked, and one clear line for bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from tiny_models import save_llama_dir

from depthscope.analyses.effects import later_layer_effect
from depthscope.cli import main
from depthscope.core.result import Result
from depthscope.results.compare import GRID

ANALYSES = "contributions,future-effects,logit-lens"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs of a 3-layer and a 5-layer tiny Llama (same data and settings)."""
    root = tmp_path_factory.mktemp("compare")
    dirs = []
    for n_layers in (3, 5):
        model = save_llama_dir(root / f"llama{n_layers}", n_layers, n_layers, 0.2)
        out = root / f"run{n_layers}"
        args = ["analyze", str(model), "-n", "1", "--analyses", ANALYSES, "--out", str(out)]
        code = main([*args, "--set", "n_splits=2", "--no-plots"])
        assert code == 0
        dirs.append(out)
    return dirs


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("depthscope: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_compare_overlays_runs_by_relative_depth(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, stdout, err = run_cli(capsys, "compare", *runs, "--out", out)
    assert code == 0, err
    doc = json.loads((out / "compare.json").read_text())
    assert [r["n_layers"] for r in doc["runs"]] == [3, 5]
    assert set(doc["quantities"]) == {
        "relative-contribution",
        "cosine",
        "future-effect",
        "future-output-change",
        "lens-kl",
        "lens-overlap",
    }
    assert "current-output-change" not in doc["quantities"]  # neither run has current-effects
    grid = np.asarray(doc["grid"])
    assert np.allclose(grid, GRID)
    for run, entry in zip(runs, doc["runs"], strict=True):
        n = entry["n_layers"]
        result = Result.load(run / "results" / "contributions.json")
        points = doc["quantities"]["relative-contribution"]["points"][entry["label"]]
        assert np.allclose(points["x"], np.arange(n) / n)
        assert np.allclose(points["y"], result.data["rel_layer"])
        profile = np.array(doc["quantities"]["relative-contribution"]["profiles"][entry["label"]])
        x, y = np.arange(n) / n, np.asarray(result.data["rel_layer"])
        inside = grid <= x[-1] + 1e-9
        assert np.isnan(profile[~inside].astype(float)).all()  # beyond the last layer: no data
        assert np.allclose(profile[inside].astype(float), np.interp(grid[inside], x, y))
        if n == 5:  # every l/5 is a grid point: the profile passes through the layers' values
            assert np.allclose(profile[np.searchsorted(grid, x - 1e-9)], y)
        effect = Result.load(run / "results" / "future-effects.json").data["effect"]
        future = doc["quantities"]["future-effect"]["points"][entry["label"]]
        assert np.allclose(future["y"], later_layer_effect(effect)[: n - 1])  # last layer: none
        assert entry["verdict"]["n_layers"] == n
    for name in doc["quantities"]:
        assert (out / "figures" / f"compare_{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / "figures" / f"compare_{name}.pdf").exists()
    page = (out / "compare.html").read_text()
    assert page.count("class='verdict'") == 2 and "data:image/png;base64" in page
    assert "llama3" in stdout and "llama5" in stdout
    assert "warning" not in err


def test_compare_refuses_different_conventions(runs, tmp_path, capsys):
    other = tmp_path / "mean"
    shutil.copytree(runs[1], other)
    path = other / "results" / "future-effects.json"
    doc = json.loads(path.read_text())
    doc["settings"]["aggregate"] = "mean"
    path.write_text(json.dumps(doc))
    code, _, err = run_cli(capsys, "compare", runs[0], other, "--out", tmp_path / "x")
    assert code == 2
    line = one_error_line(err)
    assert "future-effects setting aggregate" in line and "'max' vs 'mean'" in line
    assert not (tmp_path / "x" / "compare.json").exists()


def test_compare_warns_when_data_sources_differ(runs, tmp_path, capsys):
    other = tmp_path / "text"
    shutil.copytree(runs[1], other)
    for path in (other / "results").glob("*.json"):
        doc = json.loads(path.read_text())
        doc["data_source"] = "builtin:text"
        path.write_text(json.dumps(doc))
    code, _, err = run_cli(capsys, "compare", runs[0], other, "--out", tmp_path / "y", "--no-plots")
    assert code == 0
    assert "depthscope: warning: contributions was run with different data source" in err
    assert "builtin:text" in err


def test_compare_bad_input(runs, tmp_path, capsys):
    code, _, err = run_cli(capsys, "compare", runs[0], tmp_path, "--out", tmp_path / "z")
    assert code == 2 and "is not a run directory" in one_error_line(err)
    code, _, err = run_cli(
        capsys, "compare", runs[0], tmp_path / "missing", "--out", tmp_path / "z"
    )
    assert code == 2 and "does not exist" in one_error_line(err)
    code, _, err = run_cli(capsys, "compare", runs[0], "--out", tmp_path / "z")
    assert code == 2 and "at least two run directories" in one_error_line(err)
    code, _, err = run_cli(
        capsys, "compare", *runs, "--quantities", "current-output-change", "--out", tmp_path / "z"
    )
    line = one_error_line(err)
    assert (
        code == 2
        and "has no current-effects result" in line
        and "--analyses current-effects" in line
    )
    code, _, err = run_cli(
        capsys, "compare", *runs, "--quantities", "depth", "--out", tmp_path / "z"
    )
    assert code == 2 and "unknown quantity depth" in one_error_line(err)


def _summary(n_layers: int, depth: float, shift: float, split: int | None, seed: int):
    """A verdict with one indicator: effective depth ``depth`` and change point ``split``, with
    bootstrap draws scattered around them."""
    from depthscope.analyses.card import Finding
    from depthscope.verdict.summary import Summary

    rng = np.random.default_rng(seed)
    depths = (depth + shift + rng.normal(0, 0.01, 1000)).round(4).tolist()
    splits = None if split is None else [float(split + rng.integers(-1, 2)) for _ in range(1000)]
    entry = {
        "layer": split,
        "effective_depth": {"value": depth},
        "draws": {"effective_depth": depths, "split": splits},
    }
    details = {
        "profiles": {"future output change": entry},
        "consensus": {"layer": split, "draws": splits, "agreed": True},
    }
    finding = Finding("transition", "Transition", "", "", details=details)
    return Summary("m", n_layers, "run", findings=[finding])


def test_verdicts_are_compared_with_paired_draws_holm_and_a_margin():
    from depthscope.verdict.comparison import compare_summaries, row_line

    a = _summary(30, 0.30, 0.0, 12, seed=0)
    later = _summary(20, 0.40, 0.0, 14, seed=1)  # 0.40 vs 0.30 in effective depth
    same = _summary(20, 0.305, 0.0, 8, seed=2)  # 0.305 vs 0.30: within ±0.05
    rows = {(r["quantity"], r["measure"]): r for r in compare_summaries(a, later, ("A", "B"))}
    depth = rows[("future output change", "effective depth")]
    assert depth["verdict"] == "later in B" and depth["difference"]["outcome"] == "differ"
    assert depth["difference"]["difference"] == pytest.approx(0.10)
    assert depth["difference"]["p_adjusted"] <= 0.05
    change = rows[("consensus transition", "change point")]  # 14/20 = 0.70 vs 12/30 = 0.40
    assert change["verdict"] == "later in B"
    assert row_line(depth).startswith("future output change, effective depth: A 0.30 [")
    rows = {(r["quantity"], r["measure"]): r for r in compare_summaries(a, same, ("A", "B"))}
    assert rows[("future output change", "effective depth")]["verdict"] == "the same within ±0.05"
    none = _summary(20, 0.30, 0.0, None, seed=3)
    rows = {(r["quantity"], r["measure"]): r for r in compare_summaries(a, none, ("A", "B"))}
    assert rows[("consensus transition", "change point")]["verdict"] == "no change point in B"
