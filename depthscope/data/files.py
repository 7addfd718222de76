"""Prompts from local files: ``.txt`` (one prompt per line) or ``.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

from depthscope.data.example import Example
from depthscope.errors import DepthscopeError


def _from_json(record: object, where: str) -> Example:
    if not isinstance(record, dict):
        raise DepthscopeError(f'{where}: expected a JSON object with "text" or "prompt"')
    level = record.get("level")
    if "prompt" in record:
        return Example(
            prompt=str(record["prompt"]), answer=str(record.get("answer", "")), level=level
        )
    if "text" in record:
        return Example(prompt=str(record["text"]), level=level)
    raise DepthscopeError(f'{where}: object has neither "text" nor "prompt"; add one of them')


def load_file(path_text: str) -> list[Example]:
    """All examples of a ``.txt`` or ``.jsonl`` file, in file order."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise DepthscopeError(f"data file {path} does not exist; check the path after file:")
    if path.suffix == ".txt":
        examples = [
            Example(prompt=line.rstrip("\n"))
            for line in path.read_text().splitlines()
            if line.strip()
        ]
    elif path.suffix == ".jsonl":
        examples = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DepthscopeError(
                    f"{path} line {number} is not valid JSON ({exc.msg}); fix or remove it"
                ) from None
            examples.append(_from_json(record, f"{path} line {number}"))
    else:
        raise DepthscopeError(f"data file {path} must end in .txt (one prompt per line) or .jsonl")
    if not examples:
        raise DepthscopeError(f"data file {path} holds no prompts; add at least one")
    return examples
