"""Fixtures shared by the model tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def coverage():
    """benchmarks/arch_coverage.py (a script, not a package) as a module: its tiny builder of
    any model type and its coverage checks."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "arch_coverage.py"
    spec = importlib.util.spec_from_file_location("arch_coverage", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
