"""The public face holds: every module imports, every name in every ``__all__`` resolves, and
docs/extending.md's code imports only ``depthscope`` and the declared ``depthscope.plugin``."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "depthscope"
EXTENDING = ROOT / "docs" / "extending.md"
PUBLIC = {"depthscope", "depthscope.plugin"}


def modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


@pytest.mark.parametrize("name", modules())
def test_every_module_imports_and_its_all_resolves(name):
    module = importlib.import_module(name)
    missing = [n for n in getattr(module, "__all__", ()) if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not have: {missing}"


def test_the_front_door_resolves_every_name():
    import depthscope as ds

    assert [n for n in ds.__all__ if getattr(ds, n, None) is None] == []
    assert ds.register is importlib.import_module("depthscope.analyses").register


def code_blocks(text: str) -> list[ast.Module]:
    return [ast.parse(block) for block in re.findall(r"```python\n(.*?)```", text, flags=re.S)]


def depthscope_imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(module, names) of every depthscope import in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.split(".")[0] == "depthscope"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "depthscope":
            found.append((node.module, [a.name for a in node.names]))
    return found


def test_the_extending_guide_imports_only_the_public_namespaces():
    blocks = code_blocks(EXTENDING.read_text())
    assert len(blocks) >= 3  # the toy analysis, its use from Python, an adapter
    imports = [entry for tree in blocks for entry in depthscope_imports(tree)]
    assert imports, "the page's code imports nothing from depthscope?"
    outside = sorted({module for module, _ in imports if module not in PUBLIC})
    assert not outside, f"docs/extending.md imports internals: {outside}"


def test_the_plugin_namespace_is_what_the_guide_uses():
    """Every name the page imports from depthscope.plugin is there, and every name there is one
    the page imports or names."""
    import depthscope.plugin as plugin

    text = EXTENDING.read_text()
    imported = {
        name
        for tree in code_blocks(text)
        for module, names in depthscope_imports(tree)
        if module == "depthscope.plugin"
        for name in names
    }
    assert imported <= set(plugin.__all__)
    named = {word for span in re.findall(r"`([^`\n]+)`", text) for word in re.findall(r"\w+", span)}
    unused = sorted(set(plugin.__all__) - imported - named)
    assert not unused, f"depthscope.plugin exports what docs/extending.md never uses: {unused}"
