"""DeepMind-Mathematics-style arithmetic, generated in-house (paper §3.5, App. E).

The paper trains on the ``arithmetic__*`` modules of ``mathematics_dataset`` v1.0; that package no
longer works with current sympy, so this module generates problems of the same kinds and
phrasings: ``add_or_sub``, ``add_sub_multiple``, ``div``, ``mixed``, ``mul``,
``mul_div_multiple`` for training and interpolation, and bigger/longer variants (``*_big``,
``*_longer``) for extrapolation, as DM math does. (``add_or_sub_in_base``,
``nearest_integer_root`` and ``simplify_surd`` are not generated.)

Every value is an exact :class:`fractions.Fraction`; like DM math, only problems with clean
answers are produced (integers; decimals for the decimal forms of add/sub and mul). A problem is a
pure function of ``(module, index, seed, split, scale)``. The paper's text format is
``"Q: {q} A:"`` followed by ``" {a}"`` (App. E).

The training commands (``depthscope scratch``, ``finetune``) draw from it, and ``--data
builtin:dm-arith[:small|dm]`` gives its problems to any analysis.

Two scales set the size of numbers and expressions (:data:`SCALES`): ``dm``, close to DM math's
pooled train-easy/medium/hard (two-digit operands, up to six terms), and ``small``, one-digit
operands and shorter expressions with two- and three-digit extrapolation — what a one-million
parameter model can learn in minutes on a CPU. In both, the extrapolation modules use bigger
numbers (``*_big``) or more terms (``*_longer``) than any training problem.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
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


@dataclass(frozen=True)
class Sizes:
    """How big the numbers and expressions of one module family are."""

    number: int  # largest integer operand of add_or_sub and mul, largest quotient of div
    decimals: int  # most decimal places in add_or_sub and mul (0: integers only)
    factor: int  # largest second factor of mul, divisor of div, factor in mixed products
    sum_terms: tuple[int, int]  # number of terms of add_sub_multiple
    term: int  # largest term of add_sub_multiple
    chain_terms: tuple[int, int]  # number of operands of mul_div_multiple
    chain_operand: int  # largest integer operand of mul_div_multiple
    fraction: int  # largest numerator and denominator of a written quotient
    mixed_terms: tuple[int, int]  # number of terms of a mixed sum
    scale: int  # largest factor a quotient of quotients is scaled by
    limit: int  # largest |answer| of mul_div_multiple


DM = Sizes(
    number=99,
    decimals=1,
    factor=12,
    sum_terms=(3, 6),
    term=70,
    chain_terms=(3, 4),
    chain_operand=99,
    fraction=20,
    mixed_terms=(2, 2),
    scale=12,
    limit=1000,
)
SMALL = Sizes(
    number=9,
    decimals=0,
    factor=9,
    sum_terms=(3, 4),
    term=9,
    chain_terms=(3, 3),
    chain_operand=12,
    fraction=9,
    mixed_terms=(2, 2),
    scale=3,
    limit=100,
)
# scale -> (training/interpolation, *_big, *_longer)
SCALES: dict[str, tuple[Sizes, Sizes, Sizes]] = {
    "dm": (
        DM,
        replace(DM, number=99_999, decimals=2, factor=999),
        replace(
            DM, sum_terms=(7, 9), chain_terms=(5, 7), mixed_terms=(3, 4), scale=300, limit=10**5
        ),
    ),
    "small": (
        SMALL,
        replace(SMALL, number=999, factor=99),
        replace(
            SMALL, sum_terms=(5, 7), chain_terms=(4, 5), mixed_terms=(3, 3), scale=12, limit=1000
        ),
    ),
}


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


def add_or_sub(rng: random.Random, s: Sizes) -> tuple[str, Fraction]:
    """``a + b`` or ``a - b`` of integers or, a quarter of the time, decimals."""
    decimals = rng.randint(1, s.decimals) if s.decimals and rng.random() < 0.25 else 0
    high = max(1, s.number // 10**decimals)
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


def add_sub_multiple(rng: random.Random, s: Sizes) -> tuple[str, Fraction]:
    """Integers added and subtracted, sometimes one group of them in parentheses."""
    n = rng.randint(*s.sum_terms)
    plain = [Fraction(_signed_int(rng, 0, s.term, negative=0.35)) for _ in range(n)]
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


def mul(rng: random.Random, s: Sizes) -> tuple[str, Fraction]:
    """``a * b``: integers or, a quarter of the time, a one-place decimal times an integer."""
    if s.decimals and rng.random() < 0.25:
        a = _number(rng, max(1, s.number // 10), 1)
    else:
        a = Fraction(_signed_int(rng, 2, s.number))
    b = Fraction(_signed_int(rng, 2, s.factor))
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


def div(rng: random.Random, s: Sizes) -> tuple[str, Fraction]:
    """``a / b`` with an integer quotient."""
    quotient = _signed_int(rng, 1, s.number)
    divisor = _signed_int(rng, 2, s.factor)
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


def _chain_factor(rng: random.Random, s: Sizes) -> tuple[str, Fraction]:
    """An integer operand or, sometimes, a quotient in parentheses as in ``(10/3)/((-8)/16)``."""
    if rng.random() < 0.25:
        a, b = Fraction(_signed_int(rng, 1, s.fraction)), Fraction(_signed_int(rng, 2, s.fraction))
        return f"({_factor(a)}/{_factor(b)})", a / b
    value = Fraction(_signed_int(rng, 2, s.chain_operand))
    return _factor(value), value


def _divisors(n: int, limit: int) -> list[int]:
    n = abs(n)
    return [d for d in range(2, min(n, limit) + 1) if n % d == 0]


def mul_div_multiple(rng: random.Random, s: Sizes) -> tuple[str, Fraction]:
    """A left-to-right chain of ``*`` and ``/`` with an integer result.

    All operands but the last are random; the last one is chosen so that the result is an integer
    (a multiple of the running denominator, or a divisor of the running numerator).
    """
    while True:
        n = rng.randint(*s.chain_terms)
        text, value = _chain_factor(rng, s)
        for _ in range(n - 2):
            op = rng.choice("*//")
            factor_text, factor_value = _chain_factor(rng, s)
            text = f"{text}{op}{factor_text}"
            value = value * factor_value if op == "*" else value / factor_value
        if value.denominator > 1:
            if value.denominator > 999:
                continue
            last = Fraction(value.denominator * _signed_int(rng, 1, 4))
            text, value = f"{text}*{_factor(last)}", value * last
        else:
            choices = _divisors(value.numerator, s.chain_operand)
            if not choices:
                continue
            last = Fraction(rng.choice(choices) * rng.choice((1, -1)))
            text, value = f"{text}/{_factor(last)}", value / last
        if "/" in text and abs(value) <= s.limit and value != 0:
            return rng.choice(CHAIN_TEMPLATES).format(e=text), value


# ---------------------------------------------------------------- mixed


def _quotient(rng: random.Random, s: Sizes) -> tuple[str, Fraction]:
    a, b = Fraction(_signed_int(rng, 1, s.fraction)), Fraction(_signed_int(rng, 1, s.fraction))
    return f"{_factor(a)}/{_factor(b)}", a / b


def _quotient_of_quotients(rng: random.Random, s: Sizes) -> tuple[str, Fraction]:
    """``((-14)/(-6))/(1162/(-4980))``: an integer written as one fraction over a scaled other."""
    answer = Fraction(_signed_int(rng, 1, s.fraction))
    top_text, top = _quotient(rng, s)
    bottom = top / answer
    scale = rng.randint(1, s.scale)
    num, den = bottom.numerator * scale, bottom.denominator * scale
    if rng.random() < 0.5:
        num, den = -num, -den
    bottom_text = f"{_factor(Fraction(num))}/{_factor(Fraction(den))}"
    return f"({top_text})/({bottom_text})", answer


def mixed(rng: random.Random, s: Sizes) -> tuple[str, Fraction]:
    """Sums of quotients and products with an integer value, or a quotient of quotients."""
    if rng.random() < 0.35:
        text, value = _quotient_of_quotients(rng, s)
        return rng.choice(CHAIN_TEMPLATES).format(e=text), value
    n = rng.randint(*s.mixed_terms)
    terms = []
    for _ in range(n - 1):
        if rng.random() < 0.7:
            text, value = _quotient(rng, s)
        else:
            a, b = Fraction(_signed_int(rng, 1, s.factor)), Fraction(_signed_int(rng, 1, s.factor))
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

Generator = Callable[[random.Random, Sizes], tuple[str, Fraction]]
TRAIN, BIG, LONGER = 0, 1, 2  # which Sizes of a scale a module uses

# module -> (generator, sizes); the first six are trained on and interpolated, the rest extrapolate
MODULES: dict[str, tuple[Generator, int]] = {
    "add_or_sub": (add_or_sub, TRAIN),
    "add_sub_multiple": (add_sub_multiple, TRAIN),
    "div": (div, TRAIN),
    "mixed": (mixed, TRAIN),
    "mul": (mul, TRAIN),
    "mul_div_multiple": (mul_div_multiple, TRAIN),
    "add_or_sub_big": (add_or_sub, BIG),
    "add_sub_multiple_longer": (add_sub_multiple, LONGER),
    "div_big": (div, BIG),
    "mixed_longer": (mixed, LONGER),
    "mul_big": (mul, BIG),
    "mul_div_multiple_longer": (mul_div_multiple, LONGER),
}
INTERPOLATE = tuple(name for name, (_, sizes) in MODULES.items() if sizes == TRAIN)
EXTRAPOLATE = tuple(name for name, (_, sizes) in MODULES.items() if sizes != TRAIN)


def _sizes(scale: str, which: int) -> Sizes:
    if scale not in SCALES:
        raise KeyError(f"unknown arithmetic scale {scale!r}; use one of {', '.join(SCALES)}")
    return SCALES[scale][which]


def generate(module: str, rng: random.Random, scale: str = "dm") -> Problem:
    """One problem of ``module`` at ``scale`` drawn with ``rng``."""
    make, which = MODULES[module]
    question, value = make(rng, _sizes(scale, which))
    return Problem(module=module, question=question, answer=format_number(value), value=value)


def problem(
    module: str, index: int, seed: int = 0, split: str = "train", scale: str = "dm"
) -> Problem:
    """Problem ``index`` of ``module`` for ``seed``: the same however many are asked for.

    ``split`` names an independent stream (``"train"``, ``"eval"``, ...), so evaluation problems
    are drawn independently of training ones (as in DM math, small problems may still repeat).
    """
    if module not in MODULES:
        raise KeyError(module)
    rng = random.Random(f"depthscope:dm-arith:{scale}:{split}:{module}:{seed}:{index}")
    return generate(module, rng, scale)


def mixed_examples(
    n: int,
    seed: int = 0,
    modules: tuple[str, ...] = INTERPOLATE,
    scale: str = "dm",
    split: str = "train",
) -> list[Example]:
    """``n`` examples of stream ``split`` cycling through ``modules`` (the interpolation modules
    by default): a larger ``n`` only appends examples."""
    return [
        problem(modules[i % len(modules)], i // len(modules), seed, split, scale).example()
        for i in range(n)
    ]
