"""The package keeps its floors: no import from a higher layer, no import cycle.

The layers are read from the table in docs/architecture.md, so the documentation is the rule.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "depthscope"


def layer_table() -> list[list[str]]:
    """Module prefixes per layer, bottom first, from the table in docs/architecture.md."""
    layers = []
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        match = re.match(r"\|\s*(\d+)\s[^|]*\|([^|]*)\|", line)
        if match:
            layers.append(re.findall(r"`(depthscope[\w.]*)`", match.group(2)))
    return layers


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str, layers: list[list[str]]) -> int | None:
    best = None
    for index, prefixes in enumerate(layers):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > len(best[1])):
                best = (index, prefix)
    return None if best is None else best[0]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """depthscope modules imported anywhere in ``path`` (functions too), except type-only imports."""
    tree = ast.parse(path.read_text())
    skip = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node)
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith("depthscope"):
                while name and name not in known:
                    name = name.rpartition(".")[0]
                if name:
                    found.add(name)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    return {name: imported_modules(path, known) - {name} for name, path in files.items()}


def test_the_table_names_every_module(graph):
    layers = layer_table()
    assert len(layers) >= 8, "docs/architecture.md lost its layer table"
    unplaced = sorted(m for m in graph if layer_of(m, layers) is None)
    assert not unplaced, f"add these modules to a layer in docs/architecture.md: {unplaced}"


def test_no_import_from_a_higher_layer(graph):
    layers = layer_table()
    upward = []
    for module, imports in graph.items():
        own = layer_of(module, layers)
        for target in imports:
            if target == "depthscope" or module == "depthscope":
                continue  # the package's lazy front door re-exports from everywhere
            other = layer_of(target, layers)
            if other is not None and own is not None and other > own:
                upward.append(f"{module} (layer {own}) imports {target} (layer {other})")
    assert not upward, "\n".join(sorted(upward))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module -> imported modules), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target.startswith(module + ".") or module.startswith(target + "."):
                continue  # a package and its own submodules
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_no_import_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_catches_a_cycle():
    assert find_cycle({"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}}) == [
        "a.x",
        "a.y",
        "a.z",
        "a.x",
    ]
    assert find_cycle({"a.x": {"a.y"}, "a.y": set()}) is None


def test_the_checker_catches_an_upward_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("from depthscope.figures.report import write_report\n")
    found = imported_modules(module, {"depthscope.figures.report", "depthscope.report"})
    layers = layer_table()
    assert found == {"depthscope.figures.report"}
    assert layer_of("depthscope.figures.report", layers) > layer_of(
        "depthscope.engine.trace", layers
    )
