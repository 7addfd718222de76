"""E11 at laptop scale: the data, tokenizer and defaults of training a small model from scratch.

The paper (§3.5, App. E) trains 244M-parameter Transformers and MoEUTs for 100k steps on DeepMind
Mathematics' arithmetic modules, with the loss on all tokens or on answer tokens only, and asks
whether the objective changes how much depth the model uses. Here the same four runs
({transformer, shared} × {all, answer}) are sized for a laptop CPU (docs/training.md);
``depthscope scratch`` (:mod:`depthscope.cli.scratch`) runs them.
"""

from __future__ import annotations

import random

from depthscope.data import dm_arith as arith
from depthscope.experiments.training.loop import TrainSettings
from depthscope.experiments.training.models import ModelSize
from depthscope.experiments.training.packing import TokenizedExample, tokenize_example

TOKENIZER_ID = "depthscope-char/1"

# E11's hyper-parameters scaled to a laptop (paper: AdamW lr 2.5e-4, wd 0.01, warmup 4000, cosine
# to 0.1·lr, 100k steps, batch 64 × 1024 tokens, grad clip 0.25); see docs/training.md.
# A step of the 0.93M-parameter default takes 0.33-0.39 s on one thread (measured; the slower with
# two runs side by side), so 3000 steps take 17-20 minutes; docs/training.md has the measured runs.
DEFAULTS = TrainSettings(
    steps=3000,
    batch_size=16,
    seq_len=128,
    lr=3e-3,
    schedule="cosine",
    warmup=100,
    min_lr_ratio=0.1,
    weight_decay=0.01,
    grad_clip=0.25,
    loss="all",
    checkpoint_every=500,
    log_every=50,
)
DEFAULT_SIZE = ModelSize(layers=8, d_model=96, heads=4)
DEFAULT_SCALE = "small"
DEFAULT_EVAL_EXAMPLES = 100  # per module, as the paper reports accuracy per DM-math file


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
