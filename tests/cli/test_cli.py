"""The `depthscope` command: end to end on a tiny local model, and one clear line for bad input."""

from __future__ import annotations

import json
import re

import pytest
import torch
import transformers as tf

from depthscope.cli import main
from depthscope.core.result import Result

CORE = ("contributions", "current-effects", "future-effects", "logit-lens", "local-effects")


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    errors = [line for line in err.splitlines() if "error" in line.lower() or "Error" in line]
    assert len(errors) == 1, err  # progress notes may precede it; the problem is one line
    assert "Traceback" not in err
    assert errors[0].startswith("depthscope: error:")
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_analyze_writes_results_figures_and_resumes(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(
        capsys, "analyze", str(tiny_model_dir), "-n", "3", "--out", str(out), "--batch-size", "8"
    )
    assert code == 0, stdout
    run = json.loads((out / "run.json").read_text())
    # the default data is a mixture of two sources: -n 3 is 3 prompts of each
    assert run["status"] == "finished" and run["n_prompts"] == 6
    assert set(run["timings"]) == set(CORE)
    for name in CORE:
        result = Result.load(out / "results" / f"{name}.json")
        assert result.analysis == name and result.n_prompts == 6 and result.model["n_layers"] == 3
        assert result.extra["prompt_sources"] == ["builtin:arith-words", "builtin:prose"] * 3
    effects = Result.load(out / "results" / "current-effects.json").data
    assert len(effects["effect"]) == 3 and set(effects) >= {"attention", "mlp", "output_change"}
    assert (out / "report.html").stat().st_size > 10_000
    pngs = list((out / "figures").glob("*.png"))
    assert len(pngs) >= 15 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert not list((out / "state").glob("*.pt"))  # checkpoints are removed once results exist
    code, stdout, _ = run_cli(
        capsys, "analyze", str(tiny_model_dir), "-n", "3", "--out", str(out), "--no-plots"
    )
    assert code == 0 and stdout.count("up to date") == len(CORE)
    code, stdout, _ = run_cli(
        capsys,
        "analyze",
        str(tiny_model_dir),
        "-n",
        "3",
        "--out",
        str(out),
        "--no-plots",
        "--analyses",
        "logit-lens",
        "--set",
        "k=3",
    )
    assert code == 0 and "computed" in stdout
    assert Result.load(out / "results" / "logit-lens.json").settings["k"] == 3


def test_plot_redraws_from_saved_results(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        run_cli(
            capsys,
            "analyze",
            str(tiny_model_dir),
            "-n",
            "2",
            "--out",
            str(out),
            "--analyses",
            "contributions",
            "--no-plots",
        )[0]
        == 0
    )
    code, stdout, _ = run_cli(capsys, "plot", str(out))
    assert (
        code == 0
        and (out / "figures" / "contributions_avg_cossims.pdf").read_bytes()[:4] == b"%PDF"
    )


def test_missing_model_path(capsys, tmp_path):
    code, _, err = run_cli(capsys, "analyze", str(tmp_path / "nope"), "-n", "1")
    assert_one_line_error(code, err, "does not exist")


def test_not_a_causal_lm(capsys, tmp_path):
    config = tf.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    tf.BertModel(config).save_pretrained(tmp_path / "bert")
    code, _, err = run_cli(capsys, "analyze", str(tmp_path / "bert"), "-n", "1")
    assert_one_line_error(code, err, "not a causal")


def test_unsupported_architecture(capsys, tmp_path, tiny_model_dir):
    config = tf.BloomConfig(vocab_size=183, hidden_size=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    tf.BloomForCausalLM(config).save_pretrained(tmp_path / "bloom")
    tf.AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "bloom")
    code, _, err = run_cli(capsys, "analyze", str(tmp_path / "bloom"), "-n", "1")
    assert_one_line_error(code, err, "unsupported architecture", "llama", "gemma3", "gpt_neox")


def test_hub_id_offline(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(capsys, "analyze", "nobody/no-such-model-xyz", "-n", "1")
    assert_one_line_error(code, err, "hub", "local folder")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--data", "builtin:nope"], "unknown data source"),
        (["--data", "file:/no/such/file.txt"], "does not exist"),
        (["--analyses", "bogus"], "unknown analysis"),
        (["--set", "bogus=1"], "unknown setting"),
        (["--set", "aggregate=median"], "aggregate"),
        (["-n", "0"], "-n"),
    ],
)
def test_bad_options(capsys, tiny_model_dir, args, fragment):
    code, _, err = run_cli(capsys, "analyze", str(tiny_model_dir), *args)
    assert_one_line_error(code, err, fragment)


def test_empty_prompt_file(capsys, tiny_model_dir, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    code, _, err = run_cli(capsys, "analyze", str(tiny_model_dir), "--data", f"file:{empty}")
    assert_one_line_error(code, err, "no prompts")


def test_models_lists_builtins(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "smollm2-135m" in out and "gemma3-270m" in out and "30" in out


def test_map_command_is_wired():
    from depthscope.cli import build_parser

    args = build_parser().parse_args(["map", "gemma3-270m", "smollm2-135m", "--tokens", "100"])
    assert args.command == "map" and args.tokens == 100


def test_rerun_of_an_up_to_date_run_loads_nothing_and_keeps_run_json(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    args = [
        "analyze",
        str(tiny_model_dir),
        "-n",
        "2",
        "--out",
        str(out),
        "--no-plots",
        "--analyses",
        "contributions,logit-lens",
    ]
    assert run_cli(capsys, *args)[0] == 0
    before = (out / "run.json").read_bytes()

    def no_loading(*a, **k):
        raise AssertionError("the model was loaded although every result is up to date")

    monkeypatch.setattr("depthscope.cli.handlers.common.load_model", no_loading)
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0 and "the model was not loaded" in stdout
    assert (out / "run.json").read_bytes() == before


def test_run_json_keeps_every_analysis_of_the_directory(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["analyze", str(tiny_model_dir), "-n", "2", "--out", str(out), "--no-plots"]
    assert run_cli(capsys, *base, "--analyses", "contributions")[0] == 0
    assert run_cli(capsys, *base, "--analyses", "logit-lens")[0] == 0
    run = json.loads((out / "run.json").read_text())
    assert run["analyses"] == ["contributions", "logit-lens"]
    assert set(run["timings"]) == set(run["settings"]) == {"contributions", "logit-lens"}
    assert [h["status"] for h in run["history"]] == ["finished", "finished"]


def test_redirected_output_shows_progress_lines_during_each_analysis(tiny_model_dir, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DEPTHSCOPE_PROGRESS_SECONDS": "0"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "depthscope",
            "analyze",
            str(tiny_model_dir),
            "-n",
            "2",
            "--out",
            str(tmp_path / "run"),
            "--no-plots",
            "--analyses",
            "future-effects,logit-lens",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert all("\r" not in line for line in lines)
    for name in ("future-effects", "logit-lens"):
        progress = [line for line in lines if f"{name} 4/4" in line and "ETA" in line]
        assert progress, f"no progress lines for {name}:\n{done.stderr}"
    assert re.search(r"^\[\d\d:\d\d:\d\d\] ", lines[-1])


def test_unqualified_setting_shared_by_two_analyses_is_refused(tiny_model_dir, capsys):
    code, _, err = run_cli(
        capsys,
        "analyze",
        str(tiny_model_dir),
        "-n",
        "1",
        "--analyses",
        "current-effects,future-effects",
        "--set",
        "front=0",
    )
    assert_one_line_error(
        code,
        err,
        "ambiguous",
        "current-effects and future-effects",
        "--set current-effects.front=0",
    )
    code, _, err = run_cli(
        capsys,
        "analyze",
        str(tiny_model_dir),
        "-n",
        "1",
        "--analyses",
        "logit-lens",
        "--set",
        "future-effects.front=0",
    )
    assert_one_line_error(code, err, "not among the analyses of this run")


def test_paper_preset_offline_uses_the_closest_builtin_sources(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr("depthscope.run.presets.hub_reachable", lambda timeout=2.0: False)
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys,
        "analyze",
        str(tiny_model_dir),
        "--preset",
        "paper",
        "--out",
        str(out),
        "--no-plots",
        "--analyses",
        "contributions,future-effects",
        "--set",
        "future-effects.split_stride=4",
    )
    assert code == 0, err
    assert "hub is unreachable" in err and "builtin:arith-words" in err
    run = json.loads((out / "run.json").read_text())
    by = run["data_by_analysis"]
    assert by["contributions"]["source"] == by["future-effects"]["source"] == "builtin:arith-words"
    assert by["contributions"]["n_prompts"] == 20 and by["future-effects"]["n_prompts"] == 10
    settings = Result.load(out / "results" / "future-effects.json").settings
    assert settings["n_splits"] == 4 and settings["split_stride"] == 4  # explicit --set wins
    code, _, err = run_cli(
        capsys,
        "analyze",
        str(tiny_model_dir),
        "--preset",
        "paper",
        "-n",
        "3",
        "--data",
        "builtin:arith-chain:2",
        "--out",
        str(tmp_path / "r2"),
        "--no-plots",
        "--analyses",
        "logit-lens",
    )
    assert code == 0 and "unreachable" not in err  # explicit data needs no hub
    assert Result.load(tmp_path / "r2" / "results" / "logit-lens.json").n_prompts == 3


def test_verdict_in_terminal_report_and_summary_json(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(
        capsys,
        "analyze",
        str(tiny_model_dir),
        "-n",
        "2",
        "--out",
        str(out),
        "--analyses",
        "contributions,logit-lens",
    )
    assert code == 0 and "verdict for" in stdout
    assert "not measured; run:" in stdout and "future-effects" in stdout  # the missing analysis
    summary = json.loads((out / "summary.json").read_text())
    page = (out / "report.html").read_text()
    assert page.index("id='verdict'") < page.index("<h2>Analyses</h2>")
    (out / "summary.json").unlink()
    assert run_cli(capsys, "plot", str(out))[0] == 0
    assert json.loads((out / "summary.json").read_text()) == summary  # plot recomputes it


def test_every_command_that_loads_a_model_takes_the_same_placement_options():
    from depthscope.cli import build_parser

    parser = build_parser()
    for argv in (
        ["prune", "smollm2-135m"],
        ["map", "gemma3-270m", "smollm2-135m"],
        ["finetune", "smollm2-135m", "--out", "x"],
        ["lens", "train", "--out", "x"],
        ["analyze"],
    ):
        args = parser.parse_args(
            [*argv, "--device-map", "auto", "--dtype", "bfloat16", "--quantize", "int8"]
        )
        assert (args.device_map, args.dtype, args.device) == ("auto", "bfloat16", "cpu"), argv
        assert args.quantize == "int8", argv


def test_current_and_future_effects_requested_together_share_replays(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    """The default job's effect analyses share one replay per prompt and part (the current row is
    every split's donor); their results equal those of separate runs."""
    import depthscope.analyses.effects as effects

    calls = []
    joint = effects.run_joint_sweep
    monkeypatch.setattr(
        effects, "run_joint_sweep", lambda *a, **k: calls.append(1) or joint(*a, **k)
    )
    common = ("-n", "3", "--no-plots", "--data", "builtin:arith-words")
    together = tmp_path / "together"
    code, _, _ = run_cli(
        capsys,
        "analyze",
        str(tiny_model_dir),
        "--analyses",
        "current-effects,future-effects",
        "--out",
        str(together),
        *common,
    )
    assert code == 0 and calls  # the shared replays ran
    shared_calls = len(calls)
    for name in ("current-effects", "future-effects"):
        alone = tmp_path / name
        code, _, _ = run_cli(
            capsys, "analyze", str(tiny_model_dir), "--analyses", name, "--out", str(alone), *common
        )
        assert code == 0
        want = Result.load(alone / "results" / f"{name}.json").data
        got = Result.load(together / "results" / f"{name}.json").data
        for key in (
            "effect",
            "output_change",
            "effect_position_mean",
            "output_change_position_mean",
        ):
            assert torch.allclose(
                torch.as_tensor(got[key]).double(), torch.as_tensor(want[key]).double(), atol=2e-5
            ), (name, key)
        assert got["split_points"] == want["split_points"]
    assert len(calls) == shared_calls  # alone, nothing is shared
