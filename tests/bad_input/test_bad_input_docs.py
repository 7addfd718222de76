"""Every error message in the package has its entry (cause and fix) in docs/errors.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MIN_CHUNK = 12  # literal text this long is distinctive enough to find the message's entry


def _literal_chunks(node: ast.expr) -> list[str]:
    """The fixed text pieces of a message (f-string placeholders split it)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        chunks, current = [], ""
        for value in node.values:
            if isinstance(value, ast.Constant):
                current += str(value.value)
            else:
                chunks.append(current)
                current = ""
        return [*chunks, current]
    if isinstance(node, ast.BinOp):
        return _literal_chunks(node.left) + _literal_chunks(node.right)
    return []


def error_messages() -> list[tuple[str, str]]:
    """(where, longest literal piece) of every ``DepthscopeError("...")`` in the package."""
    found = []
    for path in sorted((ROOT / "depthscope").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "DepthscopeError"
                and node.args
            ):
                pieces = [" ".join(c.split()) for c in _literal_chunks(node.args[0])]
                longest = max(pieces, key=len, default="")
                if len(longest.strip(" ;:,()'\"")) >= MIN_CHUNK:
                    found.append((f"{path.relative_to(ROOT)}:{node.lineno}", longest))
    return found


def _normalised(text: str) -> str:
    return " ".join(re.sub(r"[`*]", "", text).split())


def test_every_error_message_is_documented():
    docs = _normalised((ROOT / "docs" / "errors.md").read_text())
    messages = error_messages()
    assert len(messages) > 60  # the scan found the package's messages
    missing = [
        f"{where}: {text!r}"
        for where, text in messages
        if _normalised(text).strip(" ;:,()'\"") not in docs
    ]
    assert not missing, "add these to docs/errors.md:\n" + "\n".join(missing)
