"""General English prose available offline everywhere: the Python reference topics bundled with Python.

``pydoc_data.topics`` ships ~460 kB of edited technical English with every CPython. Paragraphs are
reflowed, code blocks and headings dropped, and grouped into passages of a few hundred characters.
It is not web text like C4, but it is real, varied prose, which is what residual-stream statistics
(e.g. the linear maps of E10) need.
"""

from __future__ import annotations

import random
import re

from depthscope.data.example import Example

MIN_CHARS = 500
MAX_CHARS = 1200


def _paragraphs(text: str) -> list[str]:
    """Prose paragraphs of one topic: no indented code, no underlined headings, lines reflowed."""
    kept = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.splitlines()
        if not lines or any(line.startswith((" ", "\t", ">>>")) for line in lines):
            continue
        if len(lines) >= 2 and set(lines[-1].strip()) <= set("*=-~^"):
            continue
        paragraph = " ".join(line.strip() for line in lines)
        if len(paragraph) >= 80 and paragraph[-1] in ".:;)\"'":
            kept.append(paragraph)
    return kept


def passages() -> list[str]:
    """All passages in a fixed order (topics sorted by name, paragraphs grouped greedily)."""
    from pydoc_data.topics import topics  # 700 kB of text, read only when used

    out: list[str] = []
    for name in sorted(topics):
        current = ""
        for paragraph in _paragraphs(topics[name]):
            candidate = f"{current}\n\n{paragraph}" if current else paragraph
            if len(candidate) > MAX_CHARS and current:
                out.append(current)
                current = paragraph
            else:
                current = candidate
            if len(current) >= MIN_CHARS:
                out.append(current[:MAX_CHARS])
                current = ""
        if len(current) >= MIN_CHARS // 2:
            out.append(current)
    return out


def prose_examples(n: int | None, seed: int = 0) -> list[Example]:
    """``n`` passages (all if None) in an order shuffled by ``seed``."""
    items = passages()
    random.Random(f"depthscope-text:{seed}").shuffle(items)
    chosen = items if n is None else items[:n]
    return [Example(prompt=text, meta={"source": "pydoc_data.topics"}) for text in chosen]


SHORT_CHARS = (200, 320)  # short prose: about as many tokens as an arithmetic word problem


def short_prose_examples(n: int | None, seed: int = 0) -> list[Example]:
    """``n`` short passages (all if None): each passage's leading whole sentences, 200-320
    characters, in an order shuffled by ``seed``. About the length of an ``arith-words`` problem,
    so a verdict on both distributions costs what one on either does."""
    low, high = SHORT_CHARS
    items = []
    for passage in passages():
        text = ""
        for sentence in re.split(r"(?<=[.;:])\s+", passage.replace("\n\n", " ")):
            candidate = f"{text} {sentence}".strip()
            if len(candidate) > high:
                break
            text = candidate
        if len(text) >= low:
            items.append(text)
    random.Random(f"depthscope-prose:{seed}").shuffle(items)
    chosen = items if n is None else items[:n]
    return [Example(prompt=text, meta={"source": "pydoc_data.topics"}) for text in chosen]
