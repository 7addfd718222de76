"""E11 at laptop scale: the data and tokenizer of training a small model from scratch.

The paper (§3.5, App. E) trains 244M-parameter Transformers and MoEUTs for 100k steps on DeepMind
Mathematics' arithmetic modules, with the loss on all tokens or on answer tokens only, and asks
whether the objective changes how much depth the model uses. Here the same four runs
({transformer, shared} × {all, answer}) are sized for a laptop CPU (docs/training.md);
``depthscope scratch`` (:mod:`depthscope.cli.scratch`) runs them; their defaults are
:mod:`depthscope.experiments.training.recipes`' ``E11_*``.
"""

from __future__ import annotations

import random

from depthscope.data import dm_arith as arith
from depthscope.experiments.training.packed_windows import TokenizedExample, tokenize_example

TOKENIZER_ID = "depthscope-char/1"


def eval_sets(tokenizer, n: int, seed: int, scale: str) -> dict[str, list[TokenizedExample]]:
    """``n`` held-out problems per interpolation and extrapolation module."""
    sets = {}
    for group, modules in (("interpolate", arith.INTERPOLATE), ("extrapolate", arith.EXTRAPOLATE)):
        for module in modules:
            sets[f"{group}/{module}"] = [
                tokenize_example(
                    tokenizer, arith.problem(module, i, seed, split="eval", scale=scale).example()
                )
                for i in range(n)
            ]
    return sets


def training_draw(tokenizer, scale: str):
    """A random interpolation-module problem, tokenised (modules drawn uniformly)."""
    modules = arith.INTERPOLATE

    def draw(rng: random.Random) -> TokenizedExample:
        problem = arith.generate(rng.choice(modules), rng, scale)
        return tokenize_example(tokenizer, problem.example())

    return draw
