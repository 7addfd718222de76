"""The package keeps its floors: no import from a higher layer, no import cycle.

The layers are read from the table in docs/architecture.md, so the documentation is the rule.
A command's handler named by string (``Handler("depthscope.cli.handlers.X:run")``,
:mod:`depthscope.cli.lazy`) counts as an import of its module for the layers; it is the one way
a module is imported by name, apart from the lazy front door (``depthscope/__init__.py``).
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


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """depthscope modules imported anywhere in ``path`` (functions too), type-only imports
    (``if TYPE_CHECKING:``) included: a type hint that names a higher layer is an upward
    dependency all the same."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
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


def handler_targets(path: Path, known: set[str]) -> set[str]:
    """Modules named by ``Handler("module:function", ...)`` calls in ``path`` (imported lazily)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and _called(node) == "Handler" and node.args:
            target = node.args[0]
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                name = target.value.partition(":")[0]
                while name and name not in known:
                    name = name.rpartition(".")[0]
                if name:
                    found.add(name)
    return found


def _called(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


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
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    lazy = {name: handler_targets(path, set(files)) for name, path in files.items()}
    for module, imports in graph.items():
        imports = imports | lazy[module]  # a handler imported when its command runs counts too
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
    """The whole package, function-level and ``TYPE_CHECKING`` imports included."""
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


def test_the_checker_catches_a_type_only_upward_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from depthscope.figures.report import write_report\n"
    )
    found = imported_modules(module, {"depthscope.figures.report", "depthscope.figures"})
    assert found == {"depthscope.figures.report"}


def test_a_handler_named_by_string_is_checked_like_an_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text('Handler("depthscope.cli.handlers.maps:run_map", check=None)\n')
    known = {"depthscope.cli.handlers.maps", "depthscope.cli"}
    assert handler_targets(module, known) == {"depthscope.cli.handlers.maps"}


BY_NAME = {"import_module", "__import__"}
NAMED_IMPORTS_ALLOWED = {"depthscope/__init__.py", "depthscope/cli/lazy.py"}


def test_modules_are_imported_by_name_only_through_the_documented_ways():
    """``importlib.import_module`` / ``__import__`` appear only in the lazy front door and in
    :class:`depthscope.cli.lazy.Handler`; a ``Handler`` names its module by a literal string,
    so the layer test above can read it."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            if _called(node) in BY_NAME and where not in NAMED_IMPORTS_ALLOWED:
                found.append(f"{where}:{node.lineno} imports a module by name")
            if _called(node) == "Handler" and where != "depthscope/cli/lazy.py":
                target = node.args[0] if node.args else None
                if not (isinstance(target, ast.Constant) and isinstance(target.value, str)):
                    found.append(f"{where}:{node.lineno} names its handler by a computed value")
    assert not found, "\n".join(found)


def local_imports(path: Path) -> list[tuple[ast.stmt, bool]]:
    """Imports inside functions, each with whether a ``try`` catching ImportError guards it."""
    tree = ast.parse(path.read_text())
    guarded = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.Try)
        and any(
            isinstance(h.type, ast.Name) and h.type.id in {"ImportError", "ModuleNotFoundError"}
            for h in node.handlers
        )
        for inner in ast.walk(node)
    }
    found = []
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    found.append((node, id(node) in guarded))
    return found


def _commented(lines: list[str], index: int) -> bool:
    """A comment on the import's line, or on the line above its group of import lines."""
    if "#" in lines[index]:
        return True
    above = index - 1
    while above >= 0 and lines[above].strip().startswith(("import ", "from ", ")")):
        above -= 1
    return above >= 0 and lines[above].strip().startswith("#")


def test_imports_sit_at_the_top_and_a_local_one_says_why():
    """Cross-module imports at the top, so the layer test sees the real graph; a function-local
    import stays only for a heavy or optional third-party module, with a comment saying why (or
    a ``try`` that handles its absence)."""
    inside, unexplained = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py":
            continue  # the lazy front door
        lines = path.read_text().splitlines()
        for node, guarded in local_imports(path):
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            if (module or "").startswith("depthscope"):
                inside.append(where)
                continue
            if not (guarded or _commented(lines, node.lineno - 1)):
                unexplained.append(where)
    assert not inside, "move these depthscope imports to the top of their module: " + ", ".join(
        inside
    )
    assert not unexplained, "say why these imports are local (a comment): " + ", ".join(unexplained)
