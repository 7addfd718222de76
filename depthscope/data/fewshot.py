"""Levelled few-shot arithmetic that the small built-in models actually solve at the easy levels.

``builtin:arith-chain`` asks a bare ``"8 + 9 ="`` and smollm2-135m gets none of levels 2-6 right
(teacher-forced), so a depth score on it measures a model that does not do the task. Here the
operands are small (1-4), there are only additions, and the question follows a few solved
examples of the same level, one per line, in the paper's format (``"5 + 7 + 5 + 3 + 1 + 7 = "``
+ ``"28"``: the prompt ends with the space, the answer is the bare number)::

    2 + 4 + 1 = 7
    2 + 1 + 4 = 7
    3 + 3 + 3 = 9
    4 + 3 + 4 =  -> "11"          (level 3, seed 0, example 0)

Level K = number of operands (2-6). Measured teacher-forced accuracies per level are in
docs/data.md: both built-in models solve most level-2 examples and few from level 3 on.
"""

from __future__ import annotations

import random

from depthscope.data.example import Example
from depthscope.data.tasks import example_rng

SHOTS = 3  # solved examples before the question
OPERANDS = (1, 4)  # smallest and largest operand


def _sum_chain(rng: random.Random, n_operands: int) -> tuple[str, int]:
    values = [rng.randint(*OPERANDS) for _ in range(n_operands)]
    return " + ".join(map(str, values)), sum(values)


def arith_fewshot(level: int, index: int, seed: int = 0) -> Example:
    """``SHOTS`` solved sums of ``level`` operands, then one to answer."""
    rng = example_rng("arith-fewshot", seed, level, index)
    solved = [_sum_chain(rng, level) for _ in range(SHOTS)]
    expression, value = _sum_chain(rng, level)
    lines = [f"{lhs} = {total}" for lhs, total in solved] + [f"{expression} = "]
    return Example(
        prompt="\n".join(lines),
        answer=str(value),
        level=level,
        meta={"task": "arith-fewshot", "shots": SHOTS},
    )
