"""Shared helpers of the bad-input catalogue (tests/bad_input/test_bad_input_*.py).

Every case runs the real command line (``depthscope.cli.main`` in-process, or ``python -c`` in a
subprocess where signals or a second process are needed) and checks what a user sees: the exit
status, exactly one ``depthscope: error:`` line, no traceback, and that no file changed that
should not have.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slow_cli import SLOW_CLI

from depthscope.cli import main

ERROR_PREFIX = "depthscope: error:"
CHEAP = ("--analyses", "contributions", "-n", "2", "--no-plots")  # fastest analysis, 2 prompts


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``depthscope ARGS`` in-process: (exit status, stdout, stderr); argparse exits count too."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def mask(text: str) -> str:
    """``text`` with pytest's per-test directory names hidden: ``.../test_front_beyond0/...``
    would otherwise satisfy a check for the word "front" by accident."""
    return re.sub(r"/test_[^/\s]*", "/<test>", text)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(ERROR_PREFIX)]


def assert_error(code: int, out: str, err: str, *fragments: str) -> str:
    """Exit 2, exactly one ``depthscope: error:`` line containing ``fragments``, no traceback."""
    assert "Traceback" not in out + err, err
    lines = error_lines(err)
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    assert code == 2, (code, err)
    for fragment in fragments:
        line = lines[0] if "/" in fragment else mask(lines[0])  # paths are checked as written
        assert fragment.lower() in line.lower(), f"{fragment!r} not in {lines[0]!r}"
    return mask(lines[0])


def assert_usage_error(code: int, err: str, *fragments: str) -> None:
    """argparse's documented form: exit 2, a usage line and one ``...: error: ...`` line."""
    assert "Traceback" not in err
    assert code == 2
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1 and lines[0].startswith("depthscope"), err
    for fragment in fragments:
        assert fragment in mask(lines[0]), lines[0]


def assert_ok(code: int, out: str, err: str) -> None:
    assert code == 0, err
    assert "Traceback" not in out + err and not error_lines(err), err


def snapshot(folder: Path) -> dict:
    """Every file under ``folder``: bytes and mtime. Equal snapshots = nothing was touched."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def copy_model(tiny_model_dir: Path, dest: Path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, dest))


def flip_weight_byte(folder: Path, tensor: str = "model.layers.0.mlp.down_proj.weight") -> None:
    """Flip the sign of one weight of ``tensor``, keeping the file's size and mtime.

    The sneakiest retraining: only the content changes, and it changes every analysis's numbers.
    """
    path = Path(folder) / "model.safetensors"
    info = path.stat()
    data = bytearray(path.read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    start = json.loads(data[8 : 8 + header_len])[tensor]["data_offsets"][0]
    data[8 + header_len + start + 3] ^= 0x80  # sign bit of the first fp32 value
    path.write_bytes(bytes(data))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def result_doc(out: Path, analysis: str = "contributions") -> dict:
    return json.loads((Path(out) / "results" / f"{analysis}.json").read_text())


def comparable(doc: dict) -> dict:
    """What must be identical between an interrupted-and-resumed run and an uninterrupted one."""
    return {k: doc[k] for k in ("analysis", "settings", "n_prompts", "n_tokens", "data")}


# ---------------------------------------------------------------- subprocess runs


def cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")])
    )
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def start_slow_cli(*args: str, delay: float = 0.15) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, str(delay), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0, what: str = "") -> None:
    """Poll ``predicate`` until true; fail (killing ``proc``) if it exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (rc {proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.02)
    proc.kill()
    proc.communicate()
    pytest.fail(f"timed out waiting for {what}")


def checkpoints(out: Path) -> list[Path]:
    """Checkpoint files of a run directory (whatever their format), temporary files excluded;
    none until a checkpoint's record is written (the record is what makes a checkpoint count)."""
    state = Path(out) / "state"
    if not state.is_dir() or not list(state.glob("*.json")):
        return []
    return [p for p in state.rglob("*") if p.is_file() and not p.name.startswith(".")]


def finish(proc: subprocess.Popen, sig: int | None = None, timeout: float = 120.0):
    """Optionally signal ``proc``; return (returncode, stdout, stderr) once it has exited."""
    if sig is not None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"process did not stop after signal {sig}:\n{err}")
    return proc.returncode, out, err


SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}
