"""``map``, ``prune``, ``compare``, ``export`` and ``lens train`` guard their ``--out`` exactly as
``analyze`` does (tests/bad_input/test_bad_input_rundir.py, test_bad_input_signals.py): a folder
holding files of the names the command writes that depthscope did not write is refused, and so is a
folder another live depthscope process holds; each in one ``depthscope: error:`` line that names
the problem and the fix, with exit status 2, before any model loads and without changing the
folder."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from depthscope.cli import main

# What each command is run with (cheap: every refusal comes before a model loads), and a file of
# the name it writes into --out, planted as the user's own.
COMMANDS = ["map", "prune", "compare", "export", "lens"]
PLANTED = {
    "map": "run.json",
    "prune": "prune.json",
    "compare": "compare.json",
    "export": "logit-lens.csv",
    "lens": "lens.json",
}


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> list[Path]:
    """Two small analyze runs of the tiny model (what compare and export read)."""
    from tiny_models import save_tiny_model_dir

    root = tmp_path_factory.mktemp("runs")
    model = save_tiny_model_dir(root / "model")
    dirs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEPTHSCOPE_CACHE", str(root / "cache"))
        for name in ("a", "b"):
            out = root / name
            args = ["analyze", str(model), "--analyses", "logit-lens", "-n", "1", "--no-plots"]
            assert main([*args, "--out", str(out)]) == 0
            dirs.append(out)
    return dirs


def command(name: str, model: Path, runs: list[Path], out: Path) -> list[str]:
    return {
        "map": ["map", model, model, "--tokens", "64", "--val-tokens", "16", "--no-plots"],
        "prune": ["prune", model, "--max-drop", "1", "--text-n", "2", "--task-n", "1"],
        "compare": ["compare", *runs, "--no-plots"],
        "export": ["export", runs[0]],
        "lens": ["lens", "train", model, "--tokens", "64"],
    }[name] + ["--out", out]


def run_cli(capsys, args: list) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(code: int, stdout: str, err: str) -> str:
    """The one ``depthscope: error:`` line of a refusal (exit status 2, no traceback)."""
    assert "Traceback" not in stdout + err, err
    lines = [line for line in err.splitlines() if line.startswith("depthscope: error:")]
    assert len(lines) == 1, err
    assert code == 2, (code, err)
    return lines[0]


def snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("name", COMMANDS)
def test_a_foreign_out_is_refused(name, capsys, tiny_model_dir, run_dirs, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / PLANTED[name]).write_text('{"experiment": "my own, not depthscope"}')
    before = snapshot(out)
    code, stdout, err = run_cli(capsys, command(name, tiny_model_dir, run_dirs, out))
    line = error_line(code, stdout, err)
    assert f"--out {out}" in line, line
    assert PLANTED[name] in line and "depthscope did not write" in line, line
    assert "choose a new or empty directory for --out" in line, line
    assert snapshot(out) == before
    assert "loading" not in stdout + err  # refused before any model loads


HOLD_LOCK = textwrap.dedent(
    """
    import sys
    from depthscope.core.folders import OutputFolder
    with OutputFolder(sys.argv[1]).lock():
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


def hold(folder: Path) -> subprocess.Popen:
    """Another depthscope process holding ``folder``'s lock until it reads a line."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def assert_busy(line: str, folder: Path, holder: subprocess.Popen) -> None:
    assert f"another depthscope run is using {folder}" in line, line
    assert f"pid {holder.pid}" in line, line
    assert "wait for it to finish or choose another --out" in line, line


@pytest.mark.parametrize("name", COMMANDS)
def test_a_busy_out_is_refused(name, capsys, tiny_model_dir, run_dirs, tmp_path):
    out = tmp_path / "busy"
    holder = hold(out)
    try:
        code, stdout, err = run_cli(capsys, command(name, tiny_model_dir, run_dirs, out))
        assert_busy(error_line(code, stdout, err), out, holder)
        assert "loading" not in stdout + err  # refused before any model loads
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    assert sorted(p.name for p in out.iterdir()) == []  # the refused command wrote nothing


def test_plot_refuses_a_busy_run(capsys, run_dirs):
    """``plot`` redraws figures, ``summary.json`` and ``report.html`` into a run folder: not while
    another command holds it."""
    run = run_dirs[1]
    before = snapshot(run)
    holder = hold(run)
    try:
        code, stdout, err = run_cli(capsys, ["plot", run])
        assert_busy(error_line(code, stdout, err), run, holder)
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    assert snapshot(run) == before
