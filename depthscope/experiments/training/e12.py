"""E12 at laptop scale: the data of fully fine-tuning a causal LM on arithmetic.

The paper (App. D.5) fine-tunes Llama 3.2 3B on DeepMind arithmetic and finds that later layers
only seem to matter more: the depth where operand tokens stop mattering does not move. The
recipe is scaled down here (docs/training.md); ``depthscope finetune``
(:mod:`depthscope.cli.finetune`) runs it on any model depthscope loads; its defaults are
:mod:`depthscope.experiments.training.recipes`' ``E12_*``.
"""

from __future__ import annotations

import random
from collections import defaultdict

from depthscope.core.errors import DepthscopeError
from depthscope.data.example import Example
from depthscope.data.sources import DM_ARITH, load_examples
from depthscope.data.sources import dm_arith_scale as scale_of
from depthscope.experiments.training.packed_windows import Draw, TokenizedExample

MIN_FILE_FOR_HELDOUT = 10


def by_level(name: str, examples: list[Example]) -> dict[str, list[Example]]:
    groups: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        if example.answer:
            key = name if example.level is None else f"{name}/level-{example.level}"
            groups[key].append(example)
    return dict(groups)


def dm_arith_scale(spec: str) -> str | None:
    """``builtin:dm-arith[:SCALE]`` -> the scale, anything else -> None.

    Fine-tuning a pretrained model follows the paper's E12 and trains on ``dm`` when no scale is
    named (``--data builtin:dm-arith:small`` for small); analyses default to ``small``.
    """
    return scale_of(spec, default="dm")


def load_data(
    spec: str, pool: int, n_eval: int, seed: int
) -> tuple[list[Example] | None, dict[str, list[Example]], str]:
    """Training examples (None: drawn live from the DM-arith generator), evaluation sets, a note."""
    spec = spec.strip()
    if dm_arith_scale(spec):
        return None, {}, ""
    if spec.startswith("file:"):
        examples = load_examples(spec, None, seed=seed)
        order = list(range(len(examples)))
        random.Random(f"depthscope:finetune-split:{seed}").shuffle(order)
        answered = [i for i in order if examples[i].answer]
        if len(examples) < MIN_FILE_FOR_HELDOUT or not answered:
            return examples, {}, f"{spec}: no held-out evaluation (too few examples with answers)"
        held = set(answered[: min(n_eval, len(examples) // MIN_FILE_FOR_HELDOUT)])
        train_examples = [examples[i] for i in order if i not in held]
        return train_examples, by_level("heldout", [examples[i] for i in sorted(held)]), ""
    examples = load_examples(spec, pool, seed=seed)
    held = load_examples(spec, n_eval, seed=seed + 1)
    note = f"{spec}: held-out examples come from another seed; small problem spaces may repeat"
    return examples, by_level("heldout", held), note


def check_answers(spec: str, examples: list[Example] | None, loss: str) -> None:
    """``--loss answer`` needs every training example to have an answer."""
    if loss != "answer" or examples is None:
        return
    missing = sum(1 for example in examples if not example.answer)
    if missing:
        raise DepthscopeError(
            f"--loss answer needs an answer for every example, but {missing} of {len(examples)} "
            f"examples of {spec} have none; use --loss all, or a source with answers "
            f'({DM_ARITH}, builtin:arith-chain, a .jsonl with "prompt" and "answer")'
        )


def pool_draw(pool: list[TokenizedExample]) -> Draw:
    def draw(rng: random.Random) -> TokenizedExample:
        return pool[rng.randrange(len(pool))]

    return draw
