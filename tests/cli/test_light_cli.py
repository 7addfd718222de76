"""`depthscope --help`, every `depthscope COMMAND --help` and a refused option answer without
importing torch, transformers or matplotlib; every command's handler, named by string, resolves.

No timing is asserted: what is imported is the measure (``python -X importtime``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from depthscope.cli import build_parser
from depthscope.cli.lazy import Handler

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "matplotlib")


def imported(*argv: str) -> tuple[int, str, set[str]]:
    """Run ``python -X importtime -m depthscope ARGV``: exit status, stderr without the import
    lines, and the names of the modules it imported."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "depthscope", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    modules, other = set(), []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:"):
            name = line.rpartition("|")[2].strip()
            if name != "imported package":  # the header line
                modules.add(name)
        else:
            other.append(line)
    return proc.returncode, "\n".join(other), modules


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(argv prefix, subparser) of every command and sub-action."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from commands(sub, (*prefix, name))


def test_help_imports_nothing_heavy():
    code, _, modules = imported("--help")
    assert code == 0 and "depthscope.cli" in modules  # the measurement saw the package
    assert heavy(modules) == []


@pytest.mark.parametrize(
    "argv", [argv for argv, sub in commands(build_parser()) if "handler" in sub._defaults]
)
def test_every_command_help_imports_nothing_heavy(argv):
    code, _, modules = imported(*argv, "--help")
    assert code == 0
    assert heavy(modules) == [], f"depthscope {' '.join(argv)} --help imports {heavy(modules)[:5]}"


def test_analyze_help_lists_the_analyses_without_importing_them():
    code, _, modules = imported("analyze", "--help")
    assert code == 0 and heavy(modules) == []
    assert not any(m.startswith("depthscope.analyses") for m in modules)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["analyze", "-n", "0"], "depthscope: error: -n must be at least 1"),
        (["analyze", "--batch-size", "0"], "--batch-size must be at least 1 (or auto)"),
        (["analyze", "--data", "nosuch:thing"], "unknown data source 'nosuch:thing'"),
        (["analyze", "--data", "builtin:hops:9"], "level 9 does not exist"),
        (["analyze", "--data", "builtin:prose+nosuch:x"], "unknown data source"),
        (["map", "a", "b", "--tokens", "0"], "--tokens and --val-tokens must be at least 1"),
        (["scratch", "--out", "x", "--steps", "0"], "--steps must be at least 1"),
        (["scratch", "--out", "x", "--threads", "-1"], "--threads must be at least 1"),
        (["scratch", "--out", "x", "--eval-examples", "0"], "--eval-examples must be at least 1"),
        (["scratch", "--out", "x", "--heads", "5"], "must split into 5 heads of even size"),
        (["finetune", "m", "--out", "x", "--pool", "0"], "--pool and --eval-examples must be"),
        (["finetune", "m", "--out", "m"], "--out must be another folder than the model"),
        (["lens", "train", "--out", "x", "--lr", "0"], "--lr must be positive"),
    ],
)
def test_a_refused_option_imports_nothing_heavy(argv, message):
    code, err, modules = imported(*argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert heavy(modules) == []


def test_every_handler_resolves():
    handlers = {
        " ".join(argv): sub._defaults["handler"]
        for argv, sub in commands(build_parser())
        if "handler" in sub._defaults
    }
    assert {"analyze", "map", "prune", "lens train", "models", "plot"} <= set(handlers)
    for name, handler in handlers.items():
        assert isinstance(handler, Handler), name
        assert handler.target.startswith("depthscope.cli.handlers."), name
        assert callable(handler.load()), name


def test_a_handler_is_named_module_colon_function():
    with pytest.raises(ValueError, match="package.module:function"):
        Handler("depthscope.cli.handlers.maps.run_map")
