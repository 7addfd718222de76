"""Registry of the offline task generators (the ``builtin:`` sources).

Every generator is a pure function of (level, index, seed): example ``i`` of a seed is always the
same however many are requested, so runs are reproducible and a larger ``-n`` only adds examples.
The generators themselves live in :mod:`depthscope.data.arith_words` and
:mod:`depthscope.data.tasks`.
"""

from __future__ import annotations

from collections.abc import Callable

from depthscope.data.arith_words import arith_words
from depthscope.data.example import Example
from depthscope.data.tasks import arith_chain, hops, nested

__all__ = ["LEVELLED", "PAPER_PROMPTS", "arith_chain", "arith_words", "hops", "nested"]

# family -> (generator(level, index, seed), its levels)
LEVELLED: dict[str, tuple[Callable[[int, int, int], Example], tuple[int, ...]]] = {
    "arith-chain": (arith_chain, (2, 3, 4, 5, 6)),
    "hops": (hops, (1, 2, 3, 4)),
    "nested": (nested, (1, 2, 3, 4)),
}

# The two hand-written prompts of E7/E8 (spec §1.5). The reference writes the first one as
# ("5 + 7 + 5 + 3 + 1 + 7 = ", "28"); moving the space into the answer keeps the same text and
# makes " 28" the tail of the tokenised text, which the answer positions rely on (spec §1.2).
PAPER_PROMPTS = (
    Example(prompt="5 + 7 + 5 + 3 + 1 + 7 =", answer=" 28", meta={"task": "paper", "name": "math"}),
    Example(
        prompt="The spouse of the performer of Imagine is",
        answer=" Yoko Ono",
        meta={"task": "paper", "name": "question"},
    ),
)
