"""Registry of the offline task generators (the ``builtin:`` sources).

Every generator is a pure function of (level, index, seed): example ``i`` of a seed is always the
same however many are requested, so runs are reproducible and a larger ``-n`` only adds examples.
The generators themselves live in :mod:`depthscope.data.arith_words`,
:mod:`depthscope.data.tasks` and :mod:`depthscope.data.fewshot`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from depthscope.data.arith_words import arith_words
from depthscope.data.example import Example
from depthscope.data.fewshot import arith_fewshot
from depthscope.data.tasks import arith_chain, hops, nested

__all__ = [
    "LEVELLED",
    "PAPER_PROMPTS",
    "LevelledTask",
    "arith_chain",
    "arith_fewshot",
    "arith_words",
    "hops",
    "nested",
]

# Where the depth score (paper E9) puts its split points: "answer-start" = one split at the first
# answer token (the paper's MQuAKE rule, for short answers); "in-answer" = offsets inside a long
# worked answer (its MATH rule). A source declares its rule; it is not guessed from answer length.
SPLIT_RULES = ("answer-start", "in-answer")


@dataclass(frozen=True)
class LevelledTask:
    """A generated family with difficulty levels: ``make(level, index, seed)``."""

    make: Callable[[int, int, int], Example]
    levels: tuple[int, ...]
    split_rule: str = "answer-start"


LEVELLED: dict[str, LevelledTask] = {
    "arith-chain": LevelledTask(arith_chain, (2, 3, 4, 5, 6)),
    "arith-fewshot": LevelledTask(arith_fewshot, (2, 3, 4, 5, 6)),
    "hops": LevelledTask(hops, (1, 2, 3, 4)),
    "nested": LevelledTask(nested, (1, 2, 3, 4)),
}

# The two hand-written prompts of E7/E8 with the paper's own split (Fig. 6): the
# arithmetic prompt ends with a space and its answer is the bare number. That is the tail of the
# tokens for Llama 3, Qwen and both built-in models; for tokenizers that merge the space into the
# number (GPT-2) :func:`depthscope.data.answer_split.paper_split` moves the space into the answer.
PAPER_PROMPTS = (
    Example(prompt="5 + 7 + 5 + 3 + 1 + 7 = ", answer="28", meta={"task": "paper", "name": "math"}),
    Example(
        prompt="The spouse of the performer of Imagine is",
        answer=" Yoko Ono",
        meta={"task": "paper", "name": "question"},
    ),
)
