"""Levelled offline tasks: operand chains, in-context multi-hop lookups, nested expressions.

Each task has a difficulty level K (number of operands, hops, or parenthesis depth) so that the
depth score (E9) can be compared across levels without the hub (the paper uses MATH levels and
MQuAKE hops). Prompts end without a space and answers start with one (``"... =" + " 28"``) so the
answer tokenises as the tail of prompt+answer (the paper's code assumes this and never checks it).
"""

from __future__ import annotations

import random

from depthscope.data.example import Example


def example_rng(family: str, seed: int, level: int | None, index: int) -> random.Random:
    """A generator for one example: example ``index`` never depends on how many are requested.

    ``random.Random`` seeded with a string hashes it with SHA-512, so this is stable across
    processes and Python versions (unlike ``hash()``).
    """
    return random.Random(f"depthscope:{family}:{seed}:{level}:{index}")


# --- sums and differences of K single-digit operands (the paper's "5 + 7 + 5 + 3 + 1 + 7 =") --


def arith_chain(level: int, index: int, seed: int = 0) -> Example:
    """``level`` single-digit operands joined by + and -; the running total never goes negative."""
    rng = example_rng("arith-chain", seed, level, index)
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

# Functional, asymmetric relations: everyone has one of each and "the boss of X's boss" is never X
# again (a symmetric relation such as "neighbour" would make two hops ambiguous).
RELATIONS = ("boss", "mentor", "coach", "landlord", "doctor", "teacher")
ONSETS = ("Br", "Qu", "T", "Z", "Kr", "V", "M", "Dr", "L", "S", "Pl", "G", "Fen", "H", "N", "R")
NUCLEI = ("a", "e", "i", "o", "u", "ai", "ou")
CODAS = ("lo", "st", "mar", "dex", "rin", "vak", "nor", "sel", "pik", "tum", "gar", "wen")
N_CHAINS = 3  # the asked-about chain plus two distractor chains of the same length


def _entity(rng: random.Random, taken: set[str]) -> str:
    """A fresh invented single-word name (onset + vowel + coda, e.g. "Brelo", "Quist")."""
    while True:
        name = rng.choice(ONSETS) + rng.choice(NUCLEI) + rng.choice(CODAS)
        if name not in taken:
            taken.add(name)
            return name


def hops(level: int, index: int, seed: int = 0) -> Example:
    """``level`` chained facts hidden among distractor chains, in shuffled order; ask for the end.

    Every entity is the subject of at most one fact, so the question has exactly one answer and it
    can only be found by following all ``level`` facts.
    """
    rng = example_rng("hops", seed, level, index)
    relation = rng.choice(RELATIONS)
    taken: set[str] = set()
    chains = [[_entity(rng, taken) for _ in range(level + 1)] for _ in range(N_CHAINS)]
    facts = [
        f"{a}'s {relation} is {b}."
        for chain in chains
        for a, b in zip(chain, chain[1:], strict=False)
    ]
    rng.shuffle(facts)
    target = chains[0]
    question = "The " + f"{relation} of the " * (level - 1) + f"{relation} of {target[0]} is"
    return Example(
        prompt=" ".join(facts) + "\n" + question,
        answer=f" {target[-1]}",
        level=level,
        meta={"task": "hops", "relation": relation, "chain": target},
    )


# --- nested arithmetic expressions -----------------------------------------------------------


def _nested_expr(rng: random.Random, depth: int) -> tuple[str, int]:
    """An expression with parenthesis nesting depth exactly ``depth`` and its value (>= 1).

    One operation per level, so the depth is also the number of sequential steps.
    """
    if depth == 0:
        value = rng.randint(1, 9)
        return str(value), value
    inner, value = _nested_expr(rng, depth - 1)
    k = rng.randint(1, 9)
    ops = ["+"]
    if value - k >= 1:  # never "x - x": keeps every step informative
        ops.append("-")
    if 2 <= k <= 4 and value * k <= 60:  # never "* 1"
        ops.append("*")
    op = rng.choice(ops)
    result = {"+": value + k, "-": value - k, "*": value * k}[op]
    if op != "-" and rng.random() < 0.5:  # commutative: vary which side the inner part is on
        return f"({k} {op} {inner})", result
    return f"({inner} {op} {k})", result


def nested(level: int, index: int, seed: int = 0) -> Example:
    """An arithmetic expression (+, -, *) with parenthesis nesting depth ``level``."""
    rng = example_rng("nested", seed, level, index)
    expression, value = _nested_expr(rng, level)
    return Example(
        prompt=f"{expression} =", answer=f" {value}", level=level, meta={"task": "nested"}
    )
