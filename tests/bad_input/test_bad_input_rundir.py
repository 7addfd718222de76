"""Bad-input catalogue, part 4: the run directory, stale results, planted files and a full disk.

A run directory belongs to one model and to depthscope: the user's own files are never
overwritten, another model's results are never mixed in, results of changed weights are never
"up to date", a damaged or planted file is data that is ignored (never code that runs), and a
full disk or read-only file system is one line, after which the rerun resumes.
"""

from __future__ import annotations

import errno
import json
import os
import pickle

import pytest
from bad_input_support import (
    CHEAP,
    assert_error,
    assert_ok,
    comparable,
    copy_model,
    flip_weight_byte,
    mask,
    result_doc,
    run_cli,
    snapshot,
)

from depthscope.cli import main


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory) -> dict:
    """The uninterrupted result of ``analyze --analyses contributions -n 2`` on the tiny model."""
    root = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEPTHSCOPE_CACHE", str(root / "cache"))
        assert main(["analyze", str(tiny_model_dir), "--out", str(root / "run"), *CHEAP]) == 0
    return comparable(result_doc(root / "run"))


def analyze(capsys, model, out, *extra: str):
    return run_cli(capsys, "analyze", model, "--out", out, *CHEAP, *extra)


# ---------------------------------------------------------------- where --out points


def test_out_is_a_file(capsys, tiny_model_dir, tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("my notes")
    code, stdout, err = analyze(capsys, tiny_model_dir, target)
    assert_error(code, stdout, err, "is a file")
    assert target.read_text() == "my notes"


def test_out_under_a_file(capsys, tiny_model_dir, tmp_path):
    (tmp_path / "f").write_text("x")
    code, stdout, err = analyze(capsys, tiny_model_dir, tmp_path / "f" / "run")
    assert_error(code, stdout, err, "cannot be created")


def test_out_that_cannot_be_created(capsys, tiny_model_dir):
    code, stdout, err = analyze(capsys, tiny_model_dir, "/proc/depthscope-run/x")
    assert_error(code, stdout, err, "cannot be created")


def test_out_not_writable(capsys, tiny_model_dir):
    code, stdout, err = analyze(capsys, tiny_model_dir, "/sys/kernel")
    assert_error(code, stdout, err, "not writable")


@pytest.mark.parametrize("name", ["run.json", "results", "report.html", "figures"])
def test_users_own_files_are_never_overwritten(capsys, tiny_model_dir, tmp_path, name):
    out = tmp_path / "mine"
    out.mkdir()
    if name.endswith((".json", ".html")):
        (out / name).write_text('{"experiment": "my own, not depthscope"}')
    else:
        (out / name).mkdir()
        (out / name / "contributions.json").write_text('{"mine": true}')
    before = snapshot(out)
    code, stdout, err = analyze(capsys, tiny_model_dir, out)
    assert_error(code, stdout, err, "did not write")
    assert snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == [name]


def test_unrelated_files_in_out_are_kept(capsys, tiny_model_dir, tmp_path, reference):
    out = tmp_path / "folder"
    out.mkdir()
    (out / "README.txt").write_text("keep me")
    code, stdout, err = analyze(capsys, tiny_model_dir, out)
    assert_ok(code, stdout, err)
    assert (out / "README.txt").read_text() == "keep me"
    assert comparable(result_doc(out)) == reference


# ---------------------------------------------------------------- one model per directory


def test_second_model_into_the_same_directory_refused(capsys, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert_ok(*analyze(capsys, tiny_model_dir, out))
    other = copy_model(tiny_model_dir, tmp_path / "other-model")
    flip_weight_byte(other)
    before = snapshot(out)
    code, stdout, err = analyze(capsys, other, out)
    assert_error(code, stdout, err, tiny_model_dir.name, "other-model", "--out")
    assert snapshot(out) == before


def test_changed_weights_are_recomputed_not_up_to_date(capsys, tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path / "model")
    out = tmp_path / "run"
    assert_ok(*analyze(capsys, model, out))
    first = result_doc(out)
    flip_weight_byte(model)  # same size, same mtime: only the content changed
    code, stdout, err = analyze(capsys, model, out)
    assert_ok(code, stdout, err)
    assert "up to date" not in mask(stdout)
    second = result_doc(out)
    assert first["model"]["fingerprint"] != second["model"]["fingerprint"]
    assert first["data"] != second["data"]


def test_same_weights_in_a_moved_folder_are_up_to_date(capsys, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert_ok(*analyze(capsys, tiny_model_dir, out))
    moved = copy_model(tiny_model_dir, tmp_path / "moved")
    code, stdout, err = analyze(capsys, moved, out)
    assert_ok(code, stdout, err)
    assert "up to date" in mask(stdout)


def test_run_json_keeps_every_analysis(capsys, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert_ok(*analyze(capsys, tiny_model_dir, out))
    code, stdout, err = run_cli(
        capsys,
        "analyze",
        tiny_model_dir,
        "--out",
        out,
        "--analyses",
        "logit-lens",
        "-n",
        "2",
        "--no-plots",
    )
    assert_ok(code, stdout, err)
    run = json.loads((out / "run.json").read_text())
    listed = json.dumps(run)
    assert "contributions" in run["analyses"] or "contributions" in run.get(
        "status_by_analysis", {}
    ), listed
    assert "logit-lens" in listed


def test_rerun_is_up_to_date_and_writes_no_result(capsys, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert_ok(*analyze(capsys, tiny_model_dir, out))
    before = snapshot(out / "results")
    code, stdout, err = analyze(capsys, tiny_model_dir, out)
    assert_ok(code, stdout, err)
    assert "up to date" in mask(stdout) and snapshot(out / "results") == before


# ---------------------------------------------------------------- damaged and planted files


@pytest.mark.parametrize(
    "damage",
    ["truncated", "empty", "not-json", "json-list", "missing-keys"],
)
def test_damaged_result_is_recomputed(capsys, tiny_model_dir, tmp_path, reference, damage):
    out = tmp_path / "run"
    assert_ok(*analyze(capsys, tiny_model_dir, out))
    path = out / "results" / "contributions.json"
    text = path.read_text()
    path.write_text(
        {
            "truncated": text[: len(text) // 2],
            "empty": "",
            "not-json": "<html>",
            "json-list": "[1, 2, 3]",
            "missing-keys": '{"analysis": "contributions"}',
        }[damage]
    )
    code, stdout, err = analyze(capsys, tiny_model_dir, out)
    assert_ok(code, stdout, err)
    assert "up to date" not in mask(stdout)
    assert comparable(result_doc(out)) == reference


class _Planted:
    """Unpickling this creates a file: proof that code from the run folder ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pickle_bytes(sentinel) -> bytes:
    return pickle.dumps({"fingerprint": "x", "state": _Planted(sentinel), "done": [0, 1]})


def test_planted_pickle_in_state_never_executes(capsys, tiny_model_dir, tmp_path, reference):
    out = tmp_path / "run"
    assert_ok(
        *run_cli(
            capsys,
            "analyze",
            tiny_model_dir,
            "--out",
            out,
            "--analyses",
            "logit-lens",
            "-n",
            "2",
            "--no-plots",
        )
    )
    sentinel = tmp_path / "PWNED"
    state = out / "state"
    state.mkdir(exist_ok=True)
    for name in (
        "contributions.pt",
        "contributions.safetensors",
        "contributions.json",
        "contributions.state",
        "contributions.bin",
        "contributions",
    ):
        (state / name).write_bytes(_pickle_bytes(sentinel))
    code, stdout, err = analyze(capsys, tiny_model_dir, out)
    assert not sentinel.exists(), "a pickle planted in state/ was executed"
    assert_ok(code, stdout, err)
    assert comparable(result_doc(out)) == reference


def test_planted_pickle_as_result_never_executes(capsys, tiny_model_dir, tmp_path, reference):
    out = tmp_path / "run"
    assert_ok(*analyze(capsys, tiny_model_dir, out))
    sentinel = tmp_path / "PWNED"
    (out / "results" / "contributions.json").write_bytes(_pickle_bytes(sentinel))
    code, stdout, err = run_cli(capsys, "plot", out)
    assert not sentinel.exists()
    assert_error(code, stdout, err, "contributions.json")
    code, stdout, err = analyze(capsys, tiny_model_dir, out)
    assert not sentinel.exists()
    assert_ok(code, stdout, err)
    assert comparable(result_doc(out)) == reference


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_follow_the_umask(capsys, tiny_model_dir, tmp_path, umask, mode):
    out = tmp_path / "run"
    old = os.umask(umask)
    try:
        code, stdout, err = run_cli(
            capsys,
            "analyze",
            tiny_model_dir,
            "--out",
            out,
            "--analyses",
            "contributions",
            "-n",
            "2",
        )
    finally:
        os.umask(old)
    assert_ok(code, stdout, err)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".png" for p in files) and (out / "report.html") in files
    wrong = {
        str(p.relative_to(out)): oct(p.stat().st_mode & 0o777)
        for p in files
        if p.stat().st_mode & 0o777 != mode
    }
    assert not wrong, wrong


# ---------------------------------------------------------------- a full disk, a read-only disk


def _failing_fsync(monkeypatch, code: int, after: int) -> list:
    """Every fsync after the first ``after`` fails with ``code`` (atomic writes fsync each file)."""
    calls = []
    real = os.fsync

    def fsync(fd):
        calls.append(fd)
        if len(calls) > after:
            raise OSError(code, os.strerror(code))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def _json_files_intact(out) -> None:
    for path in out.rglob("*.json"):
        if not path.name.startswith("."):
            json.loads(path.read_text())  # atomic writes: old or new, never torn


@pytest.mark.parametrize("after", [0, 3])
def test_disk_full_is_one_line_and_the_rerun_resumes(
    capsys, tiny_model_dir, tmp_path, monkeypatch, reference, after
):
    out = tmp_path / "run"
    calls = _failing_fsync(monkeypatch, errno.ENOSPC, after)
    code, stdout, err = analyze(capsys, tiny_model_dir, out)
    assert len(calls) > after, "the run wrote nothing; the fault was not injected"
    assert_error(code, stdout, err, "no space left")
    monkeypatch.undo()
    _json_files_intact(out)
    assert not [p for p in out.rglob(".*.tmp")], "temporary files were left behind"
    code, stdout, err = analyze(capsys, tiny_model_dir, out)
    assert_ok(code, stdout, err)
    assert comparable(result_doc(out)) == reference


def test_read_only_file_system_mid_run(capsys, tiny_model_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _failing_fsync(monkeypatch, errno.EROFS, 2)
    code, stdout, err = analyze(capsys, tiny_model_dir, out)
    assert_error(code, stdout, err, "read-only")
