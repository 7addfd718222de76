"""Prompts from local files: ``.txt`` (one prompt per line) or ``.jsonl`` (one object per line).

``.jsonl`` objects are ``{"text": ...}`` (a prompt without an answer) or
``{"prompt": ..., "answer": ...}`` (answer optional), each with an optional integer ``"level"``.
Text is used exactly as written: a trailing space changes the tokens, so none is stripped.
"""

from __future__ import annotations

import json
from pathlib import Path

from depthscope.core.errors import DepthscopeError
from depthscope.data.example import Example


def _string(record: dict, key: str, where: str) -> str:
    value = record[key]
    if not isinstance(value, str):
        raise DepthscopeError(f'{where}: "{key}" must be a string, not {type(value).__name__}')
    return value


def example_from_record(record: object, where: str) -> Example:
    """One ``.jsonl`` object as an :class:`Example`; ``where`` ("FILE line N") locates errors."""
    if not isinstance(record, dict):
        raise DepthscopeError(f'{where}: expected a JSON object with "text" or "prompt"')
    level = record.get("level")
    if level is not None and (not isinstance(level, int) or isinstance(level, bool)):
        raise DepthscopeError(f'{where}: "level" must be an integer, not {level!r}')
    if "prompt" in record:
        answer = _string(record, "answer", where) if "answer" in record else ""
        example = Example(prompt=_string(record, "prompt", where), answer=answer, level=level)
    elif "text" in record:
        example = Example(prompt=_string(record, "text", where), level=level)
    else:
        raise DepthscopeError(f'{where}: object has neither "text" nor "prompt"; add one of them')
    if not example.prompt.strip():
        raise DepthscopeError(f"{where}: the prompt is empty; give it some text or drop the line")
    return example


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # a Windows BOM is not text
    except UnicodeDecodeError:
        raise DepthscopeError(f"data file {path} is not UTF-8 text; re-save it as UTF-8") from None


def _jsonl(path: Path) -> list[Example]:
    examples = []
    for number, line in enumerate(_read(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DepthscopeError(
                f"{where} is not valid JSON ({exc.msg}); fix or remove it"
            ) from None
        examples.append(example_from_record(record, where))
    return examples


def load_file(path_text: str) -> list[Example]:
    """All examples of a ``.txt`` or ``.jsonl`` file, in file order (blank lines skipped)."""
    if not path_text.strip():
        raise DepthscopeError("file: needs a path, e.g. file:prompts.txt or file:prompts.jsonl")
    path = Path(path_text).expanduser()
    if not path.exists():
        raise DepthscopeError(f"data file {path} does not exist; check the path after file:")
    if not path.is_file():
        raise DepthscopeError(f"data file {path} is not a file; give a .txt or .jsonl file")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        examples = [Example(prompt=line) for line in _read(path).splitlines() if line.strip()]
    elif suffix == ".jsonl":
        examples = _jsonl(path)
    else:
        raise DepthscopeError(
            f"data file {path} must end in .txt (one prompt per line) or .jsonl (one JSON object per line)"
        )
    if not examples:
        raise DepthscopeError(f"data file {path} holds no prompts; add at least one")
    return examples
