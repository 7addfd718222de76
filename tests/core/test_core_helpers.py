"""Ideas the package needs in several layers, written once in core: reading a JSON object that
may be damaged, and SIGTERM as Ctrl-C."""

from __future__ import annotations

import ast
import os
import signal
import threading
from pathlib import Path

import pytest

from depthscope.core.atomic_files import read_json_object
from depthscope.core.errors import DepthscopeError, first_line
from depthscope.core.interrupts import RunInterrupted, sigterm_as_interrupt

PACKAGE = Path(__file__).resolve().parents[2] / "depthscope"


def test_read_json_object_is_none_for_anything_but_an_object(tmp_path):
    path = tmp_path / "doc.json"
    assert read_json_object(path) is None  # missing
    path.write_text("{torn")
    assert read_json_object(path) is None  # damaged
    path.write_text("[1, 2]")
    assert read_json_object(path) is None  # not an object
    path.write_text('{"a": "é"}', encoding="utf-8")
    assert read_json_object(path) == {"a": "é"}


def test_sigterm_is_a_keyboard_interrupt_inside_and_restored_after():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_outside_the_main_thread_leaves_signals_alone():
    seen = []

    def work():
        with sigterm_as_interrupt():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [before]


def test_run_interrupted_is_a_one_line_error(main_with_handler, capsys):
    """A command ending in RunInterrupted says its one line (not as an error) and exits 130."""
    assert issubclass(RunInterrupted, DepthscopeError)

    def interrupted(args) -> int:
        raise RunInterrupted("stopped; rerun the same command to resume")

    assert main_with_handler(interrupted, ["models"]) == 130
    assert capsys.readouterr().err == "depthscope: stopped; rerun the same command to resume\n"


def _defined(name: str) -> list[str]:
    where = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name:
                where.append(str(path.relative_to(PACKAGE)))
    return where


def test_each_idea_is_written_once():
    assert _defined("sigterm_as_interrupt") == ["core/interrupts.py"]
    assert _defined("_sigterm_as_interrupt") == []
    assert _defined("RunInterrupted") == ["core/interrupts.py"]
    assert _defined("read_json_object") == ["core/atomic_files.py"]
    assert _defined("_read_json") == []
    assert _defined("_stem") == [] and _defined("model_stem") == ["cli/options.py"]
    assert _defined("first_line") == ["core/errors.py"] and _defined("_first_line") == []


def test_first_line_is_the_gist_of_a_library_error():
    assert first_line(ValueError("shape mismatch\n  at line 3")) == "shape mismatch"
    assert first_line(ValueError("x" * 500)) == "x" * 160
    assert first_line(ValueError("x" * 500), 20) == "x" * 20
    assert first_line(KeyError()) == "KeyError"  # no message: its type
    assert first_line(RuntimeError("  "), fallback="") == ""
