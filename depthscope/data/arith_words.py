"""GSM8K-style arithmetic word problems with a worked solution: the default data.

The paper feeds GSM8K test problems followed by their full worked solution (teacher forcing).
Offline we generate problems of the same kind, but short: the cost of the heavy
analyses grows with the number of tokens, and 2-4 steps in about 60-90 tokens (SmolLM2 tokenizer,
which splits numbers into digits) keep a laptop run of every analysis affordable. Every number of
the solution is computed here, so answers are right by construction; the tests recompute them.

Shape: ``"Problem: ...?\\nSolution: 3 * 4 = 12. 12 + 5 = 17.\\nThe final answer is"`` + ``" 17"``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from depthscope.data.example import Example
from depthscope.data.tasks import example_rng

PEOPLE = {  # name -> (subject, object, possessive) pronouns
    "Sara": ("she", "her", "her"),
    "Tom": ("he", "him", "his"),
    "Lena": ("she", "her", "her"),
    "Omar": ("he", "him", "his"),
    "Mia": ("she", "her", "her"),
    "Ravi": ("he", "him", "his"),
    "Ben": ("he", "him", "his"),
    "Ana": ("she", "her", "her"),
    "Kofi": ("he", "him", "his"),
    "Yuki": ("she", "her", "her"),
    "Ivan": ("he", "him", "his"),
    "Nora": ("she", "her", "her"),
    "Leo": ("he", "him", "his"),
    "Zoe": ("she", "her", "her"),
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
)
GOODS = ("pens", "notebooks", "apples", "tickets", "candles", "plants", "mugs", "balls")
EXTRAS = ("a book", "a bag", "a hat", "a lamp", "a game", "a scarf")
BILLS = (10, 20, 50, 100)
ACTIVITIES = (  # (verb, base form, unit, period)
    ("reads", "read", "pages", "day"),
    ("saves", "save", "dollars", "week"),
    ("runs", "run", "miles", "day"),
    ("bakes", "bake", "cookies", "day"),
)


@dataclass
class Work:
    """A worked solution under construction: each ``calc`` writes one line and returns its value."""

    lines: list[str] = field(default_factory=list)
    values: list[int] = field(default_factory=list)

    def calc(self, *terms: int | str) -> int:
        """``calc(3, "*", 4)`` -> 12, writing ``"3 * 4 = 12."``; never mixes * with + or -."""
        ops = terms[1::2]
        assert "*" not in ops or len(terms) == 3, "one product per line keeps left-to-right exact"
        value = int(terms[0])
        for op, x in zip(ops, terms[2::2], strict=True):
            value = {"+": value + int(x), "-": value - int(x), "*": value * int(x)}[str(op)]
        self.lines.append(" ".join(map(str, terms)) + f" = {value}.")
        self.values.append(value)
        return value


@dataclass
class Problem:
    """A story (sentences ending in a question) and its worked solution."""

    sentences: list[str]
    work: Work

    @property
    def answer(self) -> int:
        """The result of the last solution line."""
        return self.work.values[-1]


def _people(rng: random.Random, k: int) -> list[tuple[str, tuple[str, str, str]]]:
    return [(name, PEOPLE[name]) for name in rng.sample(sorted(PEOPLE), k)]


def holdings(rng: random.Random, steps: int) -> Problem:
    """Someone's collection grows and shrinks: gains, gifts, losses, packs (x), doubling."""
    (name, (he, him, his)), (other, _) = _people(rng, 2)
    obj = rng.choice(OBJECTS)
    total = rng.randint(5, 25 if steps < 4 else 12)  # 4 steps: smaller numbers, fewer tokens
    story, work = [f"{name} has {total} {obj}."], Work()
    while len(work.lines) < steps:
        kinds = ["gain", "gift"] + (["lose"] if total >= 5 else [])
        if steps - len(work.lines) >= 2:
            kinds.append("packs")
        if total <= 20:
            kinds.append("double")
        kind = rng.choice(kinds)
        if kind == "packs":
            n, m = rng.randint(2, 5), rng.randint(2, 9)
            story.append(f"{he.capitalize()} buys {n} packs of {m}.")
            total = work.calc(total, "+", work.calc(n, "*", m))
        elif kind == "double":
            story.append(f"{he.capitalize()} doubles {his} {obj}.")
            total = work.calc(total, "*", 2)
        elif kind == "lose":
            k = rng.randint(2, min(total - 3, 12))
            verb = rng.choice((f"gives {k} to {other}", f"loses {k}", f"sells {k}"))
            story.append(f"{he.capitalize()} {verb}.")
            total = work.calc(total, "-", k)
        else:
            k = rng.randint(2, 12 if steps < 4 else 9)
            gift = f"{other} gives {him} {k} more." if kind == "gift" else None
            story.append(gift or f"{he.capitalize()} {rng.choice(('finds', 'wins'))} {k} more.")
            total = work.calc(total, "+", k)
    story.append(f"How many {obj} does {name if steps < 4 else he} have now?")
    return Problem(story, work)


def shopping(rng: random.Random, steps: int) -> Problem:
    """Buying goods at a unit price (x), maybe an extra item (+), paying with a bill (-)."""
    ((name, (he, _, _)),) = _people(rng, 1)
    goods = rng.sample(GOODS, 2)
    n, price = rng.randint(2, 5), rng.randint(2, 9)
    work = Work()
    cost = work.calc(n, "*", price)
    buys = f"{name} buys {n} {goods[0]} at ${price} each"
    if steps == 4:
        n2, price2 = rng.randint(2, 5), rng.choice([p for p in range(2, 10) if p != price])
        buys += f" and {n2} {goods[1]} at ${price2} each"
        cost = work.calc(cost, "+", work.calc(n2, "*", price2))
    elif steps == 3 or rng.random() < 0.5:
        extra, extra_price = rng.choice(EXTRAS), rng.randint(5, 20)
        buys += f" and {extra} for ${extra_price}"
        cost = work.calc(cost, "+", extra_price)
    story = [buys + "."]
    if len(work.lines) < steps:
        bill = min(b for b in BILLS if b > cost)
        story.append(f"{he.capitalize()} pays with ${bill}. How much change does {he} get?")
        work.calc(bill, "-", cost)
    else:
        story.append(f"How much does {he} spend?")
    return Problem(story, work)


def compare(rng: random.Random, steps: int) -> Problem:
    """Two or three people's amounts defined relative to each other, then a total."""
    names = [name for name, _ in _people(rng, steps)]
    obj = rng.choice(OBJECTS)
    amounts = [rng.randint(4, 15)]
    story, work = [f"{names[0]} has {amounts[0]} {obj}."], Work()
    for who, before in zip(names[1:], names, strict=False):
        prev = amounts[-1]
        kind = rng.choice(("more", "fewer", "times") if prev <= 15 else ("more", "fewer"))
        if kind == "times":
            m = rng.randint(2, 3)
            story.append(f"{who} has {m} times as many as {before}.")
            amounts.append(work.calc(prev, "*", m))
        elif kind == "fewer" and prev > 3:
            k = rng.randint(1, prev - 2)
            story.append(f"{who} has {k} fewer than {before}.")
            amounts.append(work.calc(prev, "-", k))
        else:
            k = rng.randint(2, 12)
            story.append(f"{who} has {k} more than {before}.")
            amounts.append(work.calc(prev, "+", k))
    together = f"do {names[0]} and {names[1]} have together" if steps == 2 else "do the three have"
    story.append(f"How many {obj} {together}?")
    work.calc(*[part for a in amounts for part in ("+", a)][1:])
    return Problem(story, work)


def rate(rng: random.Random, steps: int) -> Problem:
    """A rate over a number of periods (x), a second phase, maybe a goal left to reach (-)."""
    ((name, (he, _, _)),) = _people(rng, 1)
    verb, base, unit, period = rng.choice(ACTIVITIES)
    top = 12 if steps < 4 else 9  # 4 steps: single-digit rates, fewer tokens
    r, d = rng.randint(2, top), rng.randint(2, 6)
    work = Work()
    done = work.calc(r, "*", d)
    phase = f"{verb} {r} {unit} a {period} for {d} {period}s"
    if steps == 2:
        k = rng.randint(3, 15)
        story = [f"{name} {phase}, then {k} more {unit}."]
        work.calc(done, "+", k)
        story.append(f"How many {unit} does {name} {base} in total?")
        return Problem(story, work)
    r2, d2 = rng.choice([x for x in range(2, top + 1) if x != r]), rng.randint(2, 6)
    total = work.calc(done, "+", work.calc(r2, "*", d2))
    then = f"then {r2} a {period} for {d2} {period}s"
    if steps == 3:
        story = [f"{name} {phase}, {then}.", f"How many {unit} does {he} {base} in all?"]
        return Problem(story, work)
    goal = (total // 10 + rng.randint(1, 4)) * 10
    story = [
        f"{name} needs to {base} {goal} {unit}.",
        f"{he.capitalize()} {verb} {r} a {period} for {d} {period}s, {then}.",
        f"How many more does {he} need?",
    ]
    work.calc(goal, "-", total)
    return Problem(story, work)


# Every (template, steps) pair once per block of PLAN examples, in an order shuffled per block:
# even the default 10 prompts mix all kinds of problem and every number of steps.
PLAN: tuple[tuple[Callable[[random.Random, int], Problem], int], ...] = (
    *((template, 2) for template in (holdings, shopping, compare, rate)),
    *((template, 3) for template in (holdings, shopping, compare, rate)),
    *((template, 4) for template in (holdings, shopping, rate)),
)


def _planned(index: int, seed: int) -> tuple[Callable[[random.Random, int], Problem], int]:
    """The template and number of steps of example ``index`` (independent of any other index)."""
    order = list(PLAN)
    example_rng("arith-words-plan", seed, None, index // len(PLAN)).shuffle(order)
    return order[index % len(PLAN)]


def arith_words(index: int, seed: int = 0) -> Example:
    """Word problem ``index`` for ``seed``: 2-4 solution steps with +, - and *."""
    template, steps = _planned(index, seed)
    problem = template(example_rng("arith-words", seed, None, index), steps)
    prompt = (
        f"Problem: {' '.join(problem.sentences)}\n"
        f"Solution: {' '.join(problem.work.lines)}\nThe final answer is"
    )
    return Example(
        prompt=prompt,
        answer=f" {problem.answer}",
        meta={"task": "arith-words", "template": template.__name__, "steps": steps},
    )
