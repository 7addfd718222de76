"""Offline task generators: deterministic for a seed, with answers that are checked by construction.

Example ``i`` of a family, level and seed is always the same, however many are requested, so runs
are reproducible and a larger ``-n`` only adds examples. Answers start with a space and prompts end
without one (``"... =" + " 28"``), so the answer tokenises as the tail of prompt+answer for
common tokenizers.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from depthscope.data.example import Example

NAMES = {
    "Sara": "She",
    "Tom": "He",
    "Lena": "She",
    "Omar": "He",
    "Mia": "She",
    "Ravi": "He",
    "Ben": "He",
    "Ana": "She",
    "Kofi": "He",
    "Yuki": "She",
    "Ivan": "He",
    "Nora": "She",
    "Leo": "He",
    "Zoe": "She",
}
OBJECTS = (
    "apples",
    "marbles",
    "stickers",
    "books",
    "pencils",
    "cookies",
    "coins",
    "shells",
    "cards",
    "stamps",
)


def _rng(family: str, seed: int, level: int | None, index: int) -> random.Random:
    return random.Random(f"depthscope:{family}:{seed}:{level}:{index}")


# --- arithmetic word problems (GSM8K-like, teacher forcing of a worked solution) -------------


def _word_step(rng: random.Random, total: int, name: str, obj: str) -> tuple[str, list[str], int]:
    """One story step: (sentence, solution lines, new total)."""
    kinds = (
        ("more", "fewer", "more", "fewer", "packs", "double")
        if total <= 40
        else ("more", "fewer", "packs")
    )
    kind = rng.choice(kinds)
    if kind == "fewer" and total >= 4:
        k = rng.randint(2, min(total - 1, 19))
        verb = rng.choice(("gives away", "loses", "sells", "uses"))
        return f"{name} {verb} {k}.", [f"{total} - {k} = {total - k}."], total - k
    if kind == "packs":
        n, m = rng.randint(2, 5), rng.randint(2, 9)
        verb = rng.choice(("buys", "gets", "wins"))
        lines = [f"{n} * {m} = {n * m}.", f"{total} + {n * m} = {total + n * m}."]
        return f"{name} {verb} {n} bags of {m}.", lines, total + n * m
    if kind == "double":
        return f"{name} doubles them.", [f"{total} * 2 = {total * 2}."], total * 2
    k = rng.randint(2, 19)
    verb = rng.choice(("finds", "buys", "is given", "collects"))
    return f"{name} {verb} {k} more.", [f"{total} + {k} = {total + k}."], total + k


def arith_words(index: int, seed: int = 0) -> Example:
    """A 2–3 step word problem (mostly 2, to keep the heavy sweeps affordable) with a worked solution; the answer is the final number."""
    rng = _rng("arith-words", seed, None, index)
    name, obj = rng.choice(sorted(NAMES)), rng.choice(OBJECTS)
    pronoun = NAMES[name]
    total = rng.randint(3, 30)
    story, solution = [f"{name} has {total} {obj}."], []
    for _ in range(2 if rng.random() < 0.85 else 3):
        sentence, lines, total = _word_step(rng, total, pronoun, obj)
        story.append(sentence)
        solution.extend(lines)
    prompt = (
        f"Problem: {' '.join(story)} How many {obj} does {pronoun.lower()} have now?\n"
        f"Solution: {' '.join(solution)}\nThe final answer is"
    )
    return Example(prompt=prompt, answer=f" {total}", meta={"task": "arith-words"})


# --- sums and differences of K operands (the paper's "5 + 7 + 5 + 3 + 1 + 7 =") ----------------


def arith_chain(level: int, index: int, seed: int = 0) -> Example:
    """``level`` single-digit operands joined by + and - (running total kept non-negative)."""
    rng = _rng("arith-chain", seed, level, index)
    total = rng.randint(1, 9)
    parts = [str(total)]
    for _ in range(level - 1):
        k = rng.randint(1, 9)
        if rng.random() < 0.35 and total - k >= 0:
            parts.append(f"- {k}")
            total -= k
        else:
            parts.append(f"+ {k}")
            total += k
    return Example(
        prompt=" ".join(parts) + " =", answer=f" {total}", level=level, meta={"task": "arith-chain"}
    )


# --- multi-hop lookups over invented entities ------------------------------------------------

ONSETS = ("Br", "Qu", "T", "Z", "Kr", "V", "M", "Dr", "L", "S", "Pl", "G", "Fen", "H", "N", "R")
NUCLEI = ("a", "e", "i", "o", "u", "ai", "ou")
CODAS = ("lo", "ist", "mar", "dex", "rin", "vak", "nor", "sel", "pik", "tum", "gar", "wen")


def _entity(rng: random.Random, taken: set[str]) -> str:
    while True:
        name = rng.choice(ONSETS) + rng.choice(NUCLEI) + rng.choice(CODAS)
        if name not in taken:
            taken.add(name)
            return name


def hops(level: int, index: int, seed: int = 0) -> Example:
    """A chain of ``level`` "X's neighbour is Y." facts among distractor chains; ask for the end."""
    rng = _rng("hops", seed, level, index)
    taken: set[str] = set()
    chains = [[_entity(rng, taken) for _ in range(level + 1)] for _ in range(3)]
    facts = [
        f"{a}'s neighbour is {b}."
        for chain in chains
        for a, b in zip(chain, chain[1:], strict=False)
    ]
    rng.shuffle(facts)
    target = chains[0]
    question = "The " + "neighbour of the " * (level - 1) + f"neighbour of {target[0]} is"
    return Example(
        prompt=" ".join(facts) + "\n" + question,
        answer=f" {target[-1]}",
        level=level,
        meta={"task": "hops", "chain": target},
    )


# --- nested arithmetic expressions -----------------------------------------------------------


def _nested_expr(rng: random.Random, depth: int) -> tuple[str, int]:
    """An expression whose parenthesis nesting depth is exactly ``depth`` and its value (>= 0)."""
    if depth == 0:
        value = rng.randint(1, 9)
        return str(value), value
    inner, value = _nested_expr(rng, depth - 1)
    k = rng.randint(1, 9)
    choices = ["+"]
    if value - k >= 0:
        choices.append("-")
    if value * k <= 60 and k <= 4:
        choices.append("*")
    op = rng.choice(choices)
    result = {"+": value + k, "-": value - k, "*": value * k}[op]
    if op != "-" and rng.random() < 0.5:
        return f"({k} {op} {inner})", result
    return f"({inner} {op} {k})", result


def nested(level: int, index: int, seed: int = 0) -> Example:
    """An arithmetic expression with parenthesis nesting depth ``level``."""
    rng = _rng("nested", seed, level, index)
    expression, value = _nested_expr(rng, level)
    return Example(
        prompt=f"{expression} =", answer=f" {value}", level=level, meta={"task": "nested"}
    )


LEVELLED: dict[str, tuple[Callable[[int, int, int], Example], tuple[int, ...]]] = {
    "arith-chain": (arith_chain, (2, 3, 4, 5, 6)),
    "hops": (hops, (1, 2, 3, 4)),
    "nested": (nested, (1, 2, 3, 4)),
}

PAPER_PROMPTS = (
    Example(prompt="5 + 7 + 5 + 3 + 1 + 7 =", answer=" 28", meta={"task": "paper", "name": "math"}),
    Example(
        prompt="The spouse of the performer of Imagine is",
        answer=" Yoko Ono",
        meta={"task": "paper", "name": "question"},
    ),
)
