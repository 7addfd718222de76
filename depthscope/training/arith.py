"""DeepMind-Mathematics-style arithmetic, generated in-house (paper §3.5, App. E).

The paper trains on the ``arithmetic__*`` modules of ``mathematics_dataset`` v1.0; that package no
longer works with current sympy, so this module generates problems of the same kinds and
phrasings: ``add_or_sub``, ``add_sub_multiple``, ``div``, ``mixed``, ``mul``,
``mul_div_multiple`` for training and interpolation, and bigger/longer variants (``*_big``,
``*_longer``) for extrapolation, as DM math does. (``add_or_sub_in_base``,
``nearest_integer_root`` and ``simplify_surd`` are not generated.)

Every value is an exact :class:`fractions.Fraction`; like DM math, only problems with clean
answers are produced (integers; decimals for the decimal forms of add/sub and mul). A problem is a
pure function of ``(module, index, seed)``. The paper's text format is ``"Q: {q} A:"`` followed by
``" {a}"`` (App. E).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from depthscope.data.example import Example

TASK = "dm-arith"


@dataclass(frozen=True)
class Problem:
    """One question with its exact answer."""

    module: str
    question: str
    answer: str
    value: Fraction

    @property
    def prompt(self) -> str:
        return f"Q: {self.question} A:"

    @property
    def completion(self) -> str:
        return f" {self.answer}"

    def example(self) -> Example:
        return Example(
            prompt=self.prompt,
            answer=self.completion,
            meta={"task": TASK, "module": self.module},
        )


# ---------------------------------------------------------------- number formatting


def format_number(value: Fraction) -> str:
    """``-3``, ``12.25`` (denominators dividing 10^4), else ``-7/3``."""
    if value.denominator == 1:
        return str(value.numerator)
    for places in range(1, 5):
        scaled = value * 10**places
        if scaled.denominator == 1:
            sign = "-" if value < 0 else ""
            digits = str(abs(scaled.numerator)).rjust(places + 1, "0")
            return f"{sign}{digits[:-places]}.{digits[-places:]}"
    return f"{value.numerator}/{value.denominator}"


def _factor(value: Fraction) -> str:
    """A number as an operand of ``*`` or ``/``: negatives in parentheses, ``20/10*(-60)``."""
    text = format_number(value)
    return f"({text})" if value < 0 else text


def _signed_int(rng: random.Random, low: int, high: int, negative: float = 0.4) -> int:
    value = rng.randint(low, high)
    return -value if rng.random() < negative else value


def _number(rng: random.Random, high: int, decimals: int) -> Fraction:
    """An integer in ±[1, high], or with ``decimals`` places (e.g. ``-4.7``)."""
    if decimals == 0:
        return Fraction(_signed_int(rng, 1, high))
    scale = 10**decimals
    return Fraction(_signed_int(rng, 1, high * scale), scale)


# ---------------------------------------------------------------- add_or_sub

ADD_TEMPLATES = (
    "What is {a} + {b}?",
    "Calculate {a} + {b}.",
    "Add {a} and {b}.",
    "Sum {a} and {b}.",
    "Total of {a} and {b}.",
    "What is {a} plus {b}?",
    "{a} + {b}",
)
SUB_TEMPLATES = (
    "What is {a} - {b}?",
    "Calculate {a} - {b}.",
    "Subtract {b} from {a}.",
    "What is {a} minus {b}?",
    "{a} - {b}",
)


def add_or_sub(rng: random.Random, big: bool = False) -> tuple[str, Fraction]:
    """``a + b`` or ``a - b`` of integers or decimals (bigger numbers for the ``_big`` module)."""
    decimals = rng.choice((0, 0, 1, 2)) if big else rng.choice((0, 0, 0, 1))
    high = 99_999 if big else 99
    if decimals:
        high = 9_999 if big else 9
    a, b = _number(rng, high, decimals), _number(rng, high, decimals)
    subtract = rng.random() < 0.5
    template = rng.choice(SUB_TEMPLATES if subtract else ADD_TEMPLATES)
    question = template.format(a=format_number(a), b=format_number(b))
    return question, a - b if subtract else a + b


# ---------------------------------------------------------------- add_sub_multiple

SUM_TEMPLATES = (
    "What is the value of {e}?",
    "Evaluate {e}.",
    "What is {e}?",
    "Calculate {e}.",
    "{e}",
)


def _sum_text(terms: list[tuple[str, str, Fraction]]) -> tuple[str, Fraction]:
    """``[(sign, text, value)]`` -> ``"-24 + -10 - (3 + 1)"`` and its value; the first sign is +."""
    text, value = "", Fraction(0)
    for index, (sign, term_text, term_value) in enumerate(terms):
        text = term_text if index == 0 else f"{text} {sign} {term_text}"
        value = value + term_value if sign == "+" else value - term_value
    return text, value


def add_sub_multiple(rng: random.Random, longer: bool = False) -> tuple[str, Fraction]:
    """3-6 integers (7-9 for ``_longer``) added and subtracted, sometimes one group in parentheses."""
    n = rng.randint(7, 9) if longer else rng.randint(3, 6)
    plain = [Fraction(_signed_int(rng, 0, 70, negative=0.35)) for _ in range(n)]
    signs = ["+"] + [rng.choice("+-") for _ in range(n - 1)]
    terms = [(s, format_number(v), v) for s, v in zip(signs, plain, strict=True)]
    if n >= 4 and rng.random() < 0.4:  # DM's "1 - 3 - (63 + 7 - 60)"
        size = rng.randint(2, min(4, n - 2))
        start = rng.randint(1, n - size)
        inner = [("+", *terms[start][1:]), *terms[start + 1 : start + size]]
        inner_text, inner_value = _sum_text(inner)
        terms[start : start + size] = [(terms[start][0], f"({inner_text})", inner_value)]
    expression, value = _sum_text(terms)
    return rng.choice(SUM_TEMPLATES).format(e=expression), value


# ---------------------------------------------------------------- mul

MUL_TEMPLATES = (
    "Multiply {a} and {b}.",
    "What is {a} times {b}?",
    "Calculate {a}*{fb}.",
    "What is the product of {a} and {b}?",
    "Product of {a} and {b}.",
    "{a} * {fb}",
)


def mul(rng: random.Random, big: bool = False) -> tuple[str, Fraction]:
    """``a * b``: integers, or a one-place decimal times an integer (bigger for ``_big``)."""
    if rng.random() < 0.25:
        a = _number(rng, 99 if big else 9, 1)
        b = Fraction(_signed_int(rng, 2, 999 if big else 12))
    else:
        a = Fraction(_signed_int(rng, 2, 9_999 if big else 99))
        b = Fraction(_signed_int(rng, 2, 999 if big else 12))
    if rng.random() < 0.5:
        a, b = b, a
    template = rng.choice(MUL_TEMPLATES)
    question = template.format(a=format_number(a), b=format_number(b), fb=_factor(b))
    return question, a * b


# ---------------------------------------------------------------- div

DIV_TEMPLATES = (
    "Divide {a} by {b}.",
    "What is {a} divided by {b}?",
    "Calculate {a} divided by {b}.",
    "{a} divided by {b}",
    "What is {a}/{fb}?",
)


def div(rng: random.Random, big: bool = False) -> tuple[str, Fraction]:
    """``a / b`` with an integer quotient (bigger numbers for ``_big``)."""
    quotient = _signed_int(rng, 1, 999 if big else 50)
    divisor = _signed_int(rng, 2, 999 if big else 12)
    a, b = Fraction(quotient * divisor), Fraction(divisor)
    template = rng.choice(DIV_TEMPLATES)
    return template.format(a=format_number(a), b=format_number(b), fb=_factor(b)), a / b


# ---------------------------------------------------------------- mul_div_multiple

CHAIN_TEMPLATES = (
    "What is {e}?",
    "Calculate {e}.",
    "Evaluate {e}.",
    "What is the value of {e}?",
    "{e}",
)


def _chain_factor(rng: random.Random) -> tuple[str, Fraction]:
    """An integer operand or, sometimes, a quotient in parentheses as in ``(10/3)/((-8)/16)``."""
    if rng.random() < 0.25:
        a, b = Fraction(_signed_int(rng, 1, 20)), Fraction(_signed_int(rng, 2, 20))
        return f"({_factor(a)}/{_factor(b)})", a / b
    value = Fraction(_signed_int(rng, 2, 99))
    return _factor(value), value


def _divisors(n: int, limit: int) -> list[int]:
    n = abs(n)
    return [d for d in range(2, min(n, limit) + 1) if n % d == 0]


def mul_div_multiple(rng: random.Random, longer: bool = False) -> tuple[str, Fraction]:
    """A left-to-right chain of ``*`` and ``/`` (3-4 operands, 5-7 for ``_longer``), integer result.

    All operands but the last are random; the last one is chosen so that the result is an integer
    (a multiple of the running denominator, or a divisor of the running numerator).
    """
    limit = 10**5 if longer else 1000
    while True:
        n = rng.randint(5, 7) if longer else rng.randint(3, 4)
        text, value = _chain_factor(rng)
        for _ in range(n - 2):
            op = rng.choice("*//")
            factor_text, factor_value = _chain_factor(rng)
            text = f"{text}{op}{factor_text}"
            value = value * factor_value if op == "*" else value / factor_value
        if value.denominator > 1:
            if value.denominator > 999:
                continue
            last = Fraction(value.denominator * _signed_int(rng, 1, 4))
            text, value = f"{text}*{_factor(last)}", value * last
        else:
            choices = _divisors(value.numerator, 99)
            if not choices:
                continue
            last = Fraction(rng.choice(choices) * rng.choice((1, -1)))
            text, value = f"{text}/{_factor(last)}", value / last
        if "/" in text and abs(value) <= limit and value != 0:
            return rng.choice(CHAIN_TEMPLATES).format(e=text), value


# ---------------------------------------------------------------- mixed


def _quotient(rng: random.Random) -> tuple[str, Fraction]:
    a, b = Fraction(_signed_int(rng, 1, 30)), Fraction(_signed_int(rng, 1, 20))
    return f"{_factor(a)}/{_factor(b)}", a / b


def _quotient_of_quotients(rng: random.Random, longer: bool) -> tuple[str, Fraction]:
    """``((-14)/(-6))/(1162/(-4980))``: an integer written as one fraction over a scaled other."""
    answer = Fraction(_signed_int(rng, 1, 99 if longer else 20))
    top_text, top = _quotient(rng)
    bottom = top / answer
    scale = rng.randint(1, 300 if longer else 12)
    num, den = bottom.numerator * scale, bottom.denominator * scale
    if rng.random() < 0.5:
        num, den = -num, -den
    bottom_text = f"{_factor(Fraction(num))}/{_factor(Fraction(den))}"
    return f"({top_text})/({bottom_text})", answer


def mixed(rng: random.Random, longer: bool = False) -> tuple[str, Fraction]:
    """Sums of quotients and products with an integer value, or a quotient of quotients."""
    if rng.random() < 0.35:
        text, value = _quotient_of_quotients(rng, longer)
        return rng.choice(CHAIN_TEMPLATES).format(e=text), value
    n = rng.randint(3, 4) if longer else 2
    terms = []
    for _ in range(n - 1):
        if rng.random() < 0.7:
            text, value = _quotient(rng)
        else:
            a, b = Fraction(_signed_int(rng, 1, 12)), Fraction(_signed_int(rng, 1, 12))
            text, value = f"{_factor(a)}*{_factor(b)}", a * b
        terms.append((rng.choice("+-") if terms else "+", text, value))
    partial = _sum_text(terms)[1]
    sign = rng.choice("+-")
    target = Fraction(round(partial) + _signed_int(rng, 0, 5))
    last = target - partial if sign == "+" else partial - target
    scale = rng.randint(1, 4)
    num, den = last.numerator * scale, last.denominator * scale
    last_text = f"{_factor(Fraction(num))}/{_factor(Fraction(den))}"
    terms.append((sign, last_text, last))
    text, value = _sum_text(terms)
    return rng.choice(CHAIN_TEMPLATES).format(e=text), value


# ---------------------------------------------------------------- registry

Generator = Callable[[random.Random], tuple[str, Fraction]]

INTERPOLATE: dict[str, Generator] = {
    "add_or_sub": add_or_sub,
    "add_sub_multiple": add_sub_multiple,
    "div": div,
    "mixed": mixed,
    "mul": mul,
    "mul_div_multiple": mul_div_multiple,
}
EXTRAPOLATE: dict[str, Generator] = {
    "add_or_sub_big": lambda rng: add_or_sub(rng, big=True),
    "add_sub_multiple_longer": lambda rng: add_sub_multiple(rng, longer=True),
    "div_big": lambda rng: div(rng, big=True),
    "mixed_longer": lambda rng: mixed(rng, longer=True),
    "mul_big": lambda rng: mul(rng, big=True),
    "mul_div_multiple_longer": lambda rng: mul_div_multiple(rng, longer=True),
}
MODULES: dict[str, Generator] = {**INTERPOLATE, **EXTRAPOLATE}


def generate(module: str, rng: random.Random) -> Problem:
    """One problem of ``module`` drawn with ``rng``."""
    question, value = MODULES[module](rng)
    return Problem(module=module, question=question, answer=format_number(value), value=value)


def problem(module: str, index: int, seed: int = 0, split: str = "train") -> Problem:
    """Problem ``index`` of ``module`` for ``seed``: the same however many are asked for.

    ``split`` names an independent stream (``"train"``, ``"eval"``, ...), so evaluation problems
    are drawn independently of training ones (as in DM math, small problems may still repeat).
    """
    if module not in MODULES:
        raise KeyError(module)
    return generate(module, random.Random(f"depthscope:dm-arith:{split}:{module}:{seed}:{index}"))


def mixed_examples(n: int, seed: int = 0, modules: tuple[str, ...] | None = None) -> list[Example]:
    """``n`` examples cycling through ``modules`` (the interpolation modules by default)."""
    names = modules or tuple(INTERPOLATE)
    return [problem(names[i % len(names)], i // len(names), seed).example() for i in range(n)]
