"""Bad-input catalogue, part 3: options, settings, devices, and commands on things that are not runs.

Every option is checked before the model loads where it can be (nothing is written then), and
every setting is checked to be in range, so no bad value reaches an analysis as a traceback or as
a result computed from nonsense.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from bad_input_support import (
    CHEAP,
    assert_error,
    assert_ok,
    assert_usage_error,
    run_cli,
    snapshot,
)


def analyze(capsys, model, tmp_path, *args: str):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "analyze", model, "--out", out, *args)
    return code, stdout, err, out


def refuse(capsys, model, tmp_path, args, *fragments):
    code, stdout, err, out = analyze(capsys, model, tmp_path, *args)
    line = assert_error(code, stdout, err, *fragments)
    assert not (out / "results").exists(), "a refused option must not produce results"
    return line


# ---------------------------------------------------------------- numbers and names


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "-4"], "--batch-size"),
        (["-n", "0"], "-n"),
        (["--dtype", "float8"], "unknown dtype"),
        (["--dtype", "int8"], "unknown dtype"),
        (["--analyses", "bogus"], "unknown analysis"),
        (["--analyses", "contributions,bogus"], "bogus"),
        (["--analyses", ""], "no analysis"),
        (["--analyses", ",,"], "no analysis"),
    ],
)
def test_bad_option_value(capsys, tiny_model_dir, tmp_path, args, fragment):
    refuse(capsys, tiny_model_dir, tmp_path, [*CHEAP, *args], fragment)
    assert not (tmp_path / "run").exists()  # checked before anything is written


@pytest.mark.parametrize(
    "args",
    [["-n", "ten"], ["--batch-size", "big"], ["--seed", "x"], ["--no-such-option"]],
)
def test_malformed_option_is_a_usage_error(capsys, tiny_model_dir, tmp_path, args):
    code, _, err, out = analyze(capsys, tiny_model_dir, tmp_path, *CHEAP, *args)
    assert_usage_error(code, err)
    assert not out.exists()


# ---------------------------------------------------------------- --set


@pytest.mark.parametrize(
    ("analysis", "setting", "fragment"),
    [
        ("logit-lens", "k", "KEY=VALUE"),
        ("logit-lens", "=3", "KEY=VALUE"),
        ("logit-lens", "bogus=1", "unknown setting"),
        ("logit-lens", "k=abc", "k"),
        ("logit-lens", "k=0", "k"),
        ("logit-lens", "k=100000", "k"),  # more than the vocabulary (183 tokens)
        ("logit-lens", "kl_direction=sideways", "kl_direction"),
        ("logit-lens", "weighting=heavy", "weighting"),
        ("current-effects", "aggregate=median", "aggregate"),
        ("current-effects", "front=-1", "front"),
        ("current-effects", "parts=bogus", "parts"),
        ("future-effects", "n_splits=0", "n_splits"),
        ("future-effects", "split_stride=0", "split_stride"),
        ("igrad", "steps=-1", "steps"),  # 0 is adaptive
        ("igrad", "rule=boole", "rule"),
        ("igrad", "max_steps=0", "max_steps"),
        ("igrad", "block=0", "block"),
        ("contributions", "eps=-1", "eps"),
        ("contributions", "eps=inf", "eps"),
        ("erasure", "baseline_n=0", "baseline_n"),
    ],
)
def test_setting_out_of_range(capsys, tiny_model_dir, tmp_path, analysis, setting, fragment):
    args = ["--analyses", analysis, "-n", "2", "--no-plots", "--set", setting]
    refuse(capsys, tiny_model_dir, tmp_path, args, fragment)


def test_nan_setting_stops_with_the_first_layer(capsys, tiny_model_dir, tmp_path):
    """``eps=nan`` makes every ratio NaN: refused up front, or stopped naming where NaN appears."""
    args = ["--analyses", "contributions", "-n", "2", "--no-plots", "--set", "eps=nan"]
    line = refuse(capsys, tiny_model_dir, tmp_path, args)
    assert "eps" in line or ("finite" in line.lower() and "layer" in line.lower()), line


def test_nan_weights_stop_with_the_first_layer(capsys, tiny_model_dir, tmp_path):
    """A model whose layer 1 produces NaN: the run stops and names layer 1, no result is saved."""
    from safetensors.torch import load_file, save_file

    model = tmp_path / "nan-model"
    shutil.copytree(tiny_model_dir, model)
    weights = load_file(model / "model.safetensors")
    weights["model.layers.1.mlp.down_proj.weight"][0, 0] = float("nan")
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    line = refuse(capsys, model, tmp_path, list(CHEAP))
    assert "layer 1" in line.lower() and ("nan" in line.lower() or "finite" in line.lower()), line


def test_setting_of_an_analysis_not_requested(capsys, tiny_model_dir, tmp_path):
    refuse(capsys, tiny_model_dir, tmp_path, [*CHEAP, "--set", "steps=4"], "unknown setting")


# ---------------------------------------------------------------- devices


def test_cuda_without_cuda(capsys, tiny_model_dir, tmp_path):
    if torch.cuda.is_available():  # the case is about machines without a GPU; make it one
        pytest.fail("this catalogue runs on CPU-only CI; run it with CUDA_VISIBLE_DEVICES=''")
    refuse(capsys, tiny_model_dir, tmp_path, [*CHEAP, "--device", "cuda"], "cuda")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu:0"])
def test_unknown_device(capsys, tiny_model_dir, tmp_path, device):
    refuse(capsys, tiny_model_dir, tmp_path, [*CHEAP, "--device", device], "device")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("device_map", "fragment"),
    [
        ('{"": "cuda:3"}', "cuda:3"),
        ("everywhere", "device-map"),
        ("{not json", "device-map"),
    ],
)
def test_bad_device_map(capsys, tiny_model_dir, tmp_path, device_map, fragment):
    refuse(capsys, tiny_model_dir, tmp_path, [*CHEAP, "--device-map", device_map], fragment)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- other commands


def test_fetch_unknown_model(capsys):
    code, stdout, err = run_cli(capsys, "fetch", "smollm3-1b")
    assert_error(code, stdout, err, "unknown built-in model")


def test_map_with_missing_model(capsys, tmp_path, tiny_model_dir):
    code, stdout, err = run_cli(capsys, "map", str(tmp_path / "nope"), str(tiny_model_dir))
    assert_error(code, stdout, err, "does not exist")


def test_plot_missing_directory(capsys, tmp_path):
    code, stdout, err = run_cli(capsys, "plot", tmp_path / "nope")
    assert_error(code, stdout, err, "does not exist")


def test_plot_on_a_file(capsys, tmp_path):
    (tmp_path / "f.json").write_text("{}")
    code, stdout, err = run_cli(capsys, "plot", tmp_path / "f.json")
    assert_error(code, stdout, err, "run directory")


def test_plot_on_an_empty_directory(capsys, tmp_path):
    code, stdout, err = run_cli(capsys, "plot", tmp_path)
    assert_error(code, stdout, err, "run directory")
    assert list(tmp_path.iterdir()) == []  # no figures/ or report.html for nothing


def test_plot_on_a_foreign_directory(capsys, tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"my": "experiment"}))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.json").write_text("[1, 2]")
    before = snapshot(tmp_path)
    code, stdout, err = run_cli(capsys, "plot", tmp_path)
    assert_error(code, stdout, err, "not a depthscope run")
    assert snapshot(tmp_path) == before and not (tmp_path / "figures").exists()


@pytest.fixture
def finished_run(capsys, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "analyze", tiny_model_dir, "--out", out, *CHEAP)
    assert_ok(code, stdout, err)
    return out


def test_plot_truncated_result(capsys, finished_run):
    path = finished_run / "results" / "contributions.json"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    code, stdout, err = run_cli(capsys, "plot", finished_run)
    assert_error(code, stdout, err, "contributions.json", "not valid JSON")


def test_plot_result_of_a_newer_depthscope(capsys, finished_run):
    path = finished_run / "results" / "contributions.json"
    doc = json.loads(path.read_text())
    doc["schema_version"] = 999
    path.write_text(json.dumps(doc))
    code, stdout, err = run_cli(capsys, "plot", finished_run)
    assert_error(code, stdout, err, "upgrade depthscope")


def test_plot_result_not_written_by_depthscope(capsys, finished_run):
    (finished_run / "results" / "contributions.json").write_text('{"data": {}}')
    code, stdout, err = run_cli(capsys, "plot", finished_run)
    assert_error(code, stdout, err, "not written by depthscope")


def test_plot_result_with_wrong_shapes(capsys, finished_run):
    """One line naming the file: an error, or the documented warning (the figure is skipped)."""
    path = finished_run / "results" / "contributions.json"
    doc = json.loads(path.read_text())
    doc["data"] = {"mean_norms": "not numbers"}
    path.write_text(json.dumps(doc))
    code, stdout, err = run_cli(capsys, "plot", finished_run)
    if code != 0:
        assert_error(code, stdout, err, "contributions.json")
        return
    assert "Traceback" not in stdout + err
    said = [line for line in err.splitlines() if "contributions.json" in line]
    assert len(said) == 1 and said[0].startswith("depthscope: warning:"), err
