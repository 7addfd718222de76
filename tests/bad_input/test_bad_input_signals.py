"""Bad-input catalogue, part 5: interrupts, kills, concurrent runs, damaged checkpoints.

A run is started in a subprocess whose decoder layers are slowed down (a global forward pre-hook
that only sleeps), so a signal reliably lands after the first checkpoint and before the end.
Rerunning the same command must then finish with exactly the result of an uninterrupted run.
"""

from __future__ import annotations

import json
import signal

import pytest
from bad_input_support import (
    SIGNALS,
    assert_error,
    assert_ok,
    checkpoints,
    comparable,
    finish,
    mask,
    result_doc,
    run_cli,
    start_slow_cli,
    wait_for,
)

from depthscope.cli import main

ARGS = ("--analyses", "contributions", "-n", "12", "--no-plots")


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory) -> dict:
    """The uninterrupted result of the command every case below interrupts."""
    root = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEPTHSCOPE_CACHE", str(root / "cache"))
        assert main(["analyze", str(tiny_model_dir), "--out", str(root / "run"), *ARGS]) == 0
    return comparable(result_doc(root / "run"))


def interrupted_run(tiny_model_dir, out, sig: int):
    """Start the run, signal it once its first checkpoint is on disk; (rc, stdout, stderr)."""
    proc = start_slow_cli("analyze", tiny_model_dir, "--out", out, *ARGS)
    wait_for(lambda: checkpoints(out), proc, what="the first checkpoint")
    return finish(proc, sig)


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_interrupt_then_resume_gives_the_same_result(
    capsys, tiny_model_dir, tmp_path, reference, name
):
    out = tmp_path / "run"
    code, stdout, err = interrupted_run(tiny_model_dir, out, SIGNALS[name])
    assert code in (130, 128 + SIGNALS[name]), (code, err)  # 130 for both, or 143 for SIGTERM
    assert "Traceback" not in stdout + err, err
    lines = [line for line in mask(err).splitlines() if "interrupted" in line]
    assert len(lines) == 1 and "resume" in lines[0], err  # true: a checkpoint exists
    assert not (out / "results" / "contributions.json").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    code, stdout, err = run_cli(capsys, "analyze", tiny_model_dir, "--out", out, *ARGS)
    assert_ok(code, stdout, err)
    assert "resumed" in mask(stdout), stdout
    assert comparable(result_doc(out)) == reference
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


def test_kill_then_resume_gives_the_same_result(capsys, tiny_model_dir, tmp_path, reference):
    out = tmp_path / "run"
    code, _, _ = interrupted_run(tiny_model_dir, out, signal.SIGKILL)
    assert code == -signal.SIGKILL
    code, stdout, err = run_cli(capsys, "analyze", tiny_model_dir, "--out", out, *ARGS)
    assert_ok(code, stdout, err)
    assert "resumed" in mask(stdout), stdout
    assert comparable(result_doc(out)) == reference


def test_truncated_checkpoint_is_ignored_with_a_notice(capsys, tiny_model_dir, tmp_path, reference):
    out = tmp_path / "run"
    interrupted_run(tiny_model_dir, out, signal.SIGKILL)
    saved = checkpoints(out)
    assert saved
    for path in saved:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    code, stdout, err = run_cli(capsys, "analyze", tiny_model_dir, "--out", out, *ARGS)
    assert_ok(code, stdout, err)
    assert "checkpoint" in mask(stdout + err).lower(), stdout + err  # says it was ignored
    assert comparable(result_doc(out)) == reference


def test_interrupt_before_any_work_says_nothing_was_saved(tiny_model_dir, tmp_path):
    """The message after Ctrl-C must be true: no "rerun to resume" when nothing was saved."""
    out = tmp_path / "run"
    proc = start_slow_cli("analyze", tiny_model_dir, "--out", out, *ARGS, delay=2.0)
    lines: list[str] = []

    def loading_started() -> bool:
        line = proc.stderr.readline()
        lines.append(line)
        return "loading" in line or not line

    wait_for(loading_started, proc, what="the model to start loading")
    code, stdout, err = finish(proc, signal.SIGINT)
    err = "".join(lines) + err
    assert code == 130 and "Traceback" not in stdout + err, err
    said = [line for line in mask(err).splitlines() if "interrupted" in line]
    assert len(said) == 1, err
    if not checkpoints(out) and not (out / "results").exists():
        assert "resume" not in said[0] or "nothing" in said[0], said[0]


def test_second_run_on_the_same_directory_refused(capsys, tiny_model_dir, tmp_path, reference):
    out = tmp_path / "run"
    proc = start_slow_cli("analyze", tiny_model_dir, "--out", out, *ARGS)
    try:
        wait_for(lambda: checkpoints(out), proc, what="the first run to start working")
        code, stdout, err = run_cli(capsys, "analyze", tiny_model_dir, "--out", out, *ARGS)
        assert_error(code, stdout, err, "another depthscope run", f"pid {proc.pid}")
    finally:
        first = finish(proc)
    assert first[0] == 0, first[2]
    assert comparable(result_doc(out)) == reference


def test_stale_lock_of_a_dead_run_is_taken_over(capsys, tiny_model_dir, tmp_path, reference):
    out = tmp_path / "run"
    code, _, _ = interrupted_run(tiny_model_dir, out, signal.SIGKILL)
    assert code == -signal.SIGKILL
    code, stdout, err = run_cli(capsys, "analyze", tiny_model_dir, "--out", out, *ARGS)
    assert_ok(code, stdout, err)
    assert "took over the lock" in mask(stdout + err), stdout + err
    assert comparable(result_doc(out)) == reference
