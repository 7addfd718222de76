"""`depthscope scratch` and `depthscope finetune` end to end, and their refusals of bad input."""

from __future__ import annotations

import json
import shutil

import pytest

from depthscope.cli import main

TINY_SCRATCH = [
    "--layers", "2", "--d-model", "16", "--heads", "2", "--steps", "2", "--batch-size", "2",
    "--seq-len", "64", "--eval-examples", "2", "--warmup", "1",
]  # fmt: skip
TINY_FINETUNE = [
    "--steps", "2", "--batch-size", "2", "--seq-len", "32", "--eval-examples", "2", "--pool", "8",
]  # fmt: skip


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("depthscope: error: ") and "\n" not in err and "Traceback" not in err
    return err


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("arch", ["transformer", "shared"])
def test_scratch_writes_a_model_folder_that_analyses_load(tmp_path, arch):
    import depthscope as ds
    from depthscope.models.loading.loader import load_model

    out = tmp_path / arch
    assert (
        main(["scratch", "--arch", arch, "--loss", "answer", *TINY_SCRATCH, "--out", str(out)]) == 0
    )
    record = json.loads((out / "training.json").read_text())
    assert record["status"] == "complete" and record["arch"] == arch
    assert record["settings"]["loss"] == "answer"
    assert set(record["final_accuracy"]["mean_accuracy"]) == {"interpolate", "extrapolate"}
    lm = load_model(str(out), progress=False)
    ids = lm.tokenizer("Q: What is 4 + 5? A: 9")["input_ids"]
    data = ds.analyze(lm, "contributions", [ids]).data
    assert len(data["rel_layer"]) == 2


def test_finetune_writes_a_model_folder_that_analyses_load(tmp_path, tiny_model_dir):
    import depthscope as ds
    from depthscope.models.loading.loader import load_model

    out = tmp_path / "tuned"
    args = ["finetune", str(tiny_model_dir), "--data", "builtin:arith-chain", *TINY_FINETUNE]
    assert main([*args, "--loss", "answer", "--out", str(out)]) == 0
    record = json.loads((out / "training.json").read_text())
    assert record["command"] == "finetune" and record["steps_done"] == 2
    assert record["evaluations"][0]["step"] == 0  # the base model's accuracy
    assert any(name.startswith("heldout/level-") for name in record["final_accuracy"]["accuracy"])
    lm = load_model(str(out), progress=False)
    data = ds.analyze(lm, "contributions", [lm.tokenizer("5 + 7 = 12")["input_ids"]]).data
    assert len(data["rel_layer"]) == lm.n_layers
    # rerunning the same command finds the finished run and changes nothing
    before = snapshot(out)
    assert main([*args, "--loss", "answer", "--out", str(out)]) == 0
    assert snapshot(out) == before


def test_steps_zero_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["scratch", "--steps", "0", "--out", str(out)]) == 2
    assert "--steps must be at least 1" in error_line(capsys)
    assert main(["finetune", "smollm2-135m", "--steps", "0", "--out", str(out)]) == 2
    assert "--steps must be at least 1" in error_line(capsys)
    assert not out.exists()


def test_answer_loss_on_data_without_answers_is_refused(tmp_path, capsys, tiny_model_dir):
    out = tmp_path / "run"
    args = ["finetune", str(tiny_model_dir), "--loss", "answer", "--out", str(out)]
    assert main([*args, "--data", "builtin:text"]) == 2
    assert "--loss answer needs an answer for every example" in error_line(capsys)
    texts = tmp_path / "lines.txt"
    texts.write_text("one line\nanother line\n")
    assert main([*args, "--data", f"file:{texts}"]) == 2
    assert "2 of 2 examples" in error_line(capsys)
    assert not out.exists()


def test_output_folder_with_another_model_is_never_overwritten(tmp_path, capsys, tiny_model_dir):
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other)
    before = snapshot(other)
    args = ["--data", "builtin:arith-chain", *TINY_FINETUNE, "--out", str(other)]
    assert main(["finetune", str(tiny_model_dir), *args, "--fresh"]) == 2
    assert "holds another model" in error_line(capsys)
    assert main(["scratch", *TINY_SCRATCH, "--out", str(other)]) == 2
    assert "holds another model" in error_line(capsys)
    assert main(["finetune", str(other), "--out", str(other) + "/"]) == 2
    assert "another folder than the model" in error_line(capsys)
    assert snapshot(other) == before


def test_bad_sizes_are_refused_in_one_line(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["scratch", "--arch", "shared", "--layers", "5", "--out", out]) == 2
    assert "multiple of --group-size" in error_line(capsys)
    assert main(["scratch", "--d-model", "30", "--heads", "4", "--out", out]) == 2
    assert "heads of even size" in error_line(capsys)
