"""Nothing under ``depthscope/cli/`` writes a file or builds a ``Result``: the parsers parse, the
handlers call the domain modules (``run/``, ``experiments/``, ``results/``) and print."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "depthscope" / "cli"
WRITERS = {
    "write_text",
    "write_bytes",
    "atomic_write_json",
    "atomic_write_bytes",
    "write_record",
    "save_pretrained",
    "savefig",
    "save_figure",
    "plot_result",
    "to_csv",
    "to_parquet",
    "dump",
}
WRITE_MODES = ("w", "a", "x", "+")


def _called(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _mode(node: ast.Call) -> str:
    args = node.args[1:2] + [k.value for k in node.keywords if k.arg == "mode"]
    for arg in args:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return "r"


def writes(path: Path) -> list[str]:
    """``file:line: what`` of each file write or ``Result(...)`` in ``path``."""
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = _called(node)
        if name == "Result":
            found.append(f"{where}:{node.lineno}: builds a Result")
        elif name in WRITERS:
            found.append(f"{where}:{node.lineno}: {name}(...)")
        elif name == "open" and any(c in _mode(node) for c in WRITE_MODES):
            found.append(f"{where}:{node.lineno}: open(..., {_mode(node)!r})")
    return found


def test_no_module_under_cli_writes_a_file_or_builds_a_result():
    found = [line for path in sorted(CLI.rglob("*.py")) for line in writes(path)]
    assert not found, "move these into the command's domain module:\n" + "\n".join(found)


def test_the_scan_finds_writes(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "open(p, 'w')\n"
        "open(p, mode='ab')\n"
        "open(p)\n"  # reading is fine
        "p.write_text('x')\n"
        "atomic_write_json(p, {})\n"
        "r = Result(analysis='a')\n"
    )
    found = writes(probe)
    assert sorted(int(line.split(":")[1]) for line in found) == [1, 2, 4, 5, 6], found
