"""Where "past" ends and "future" begins: the paper's split-point rule, reproducible per prompt."""

from __future__ import annotations

import random


def split_points(
    n_tokens: int,
    *,
    seed: int,
    prompt_id: int,
    count: int = 4,
    stride: int = 8,
    margin: int = 4,
) -> list[int]:
    """Multiples of ``stride`` in ``[stride, n_tokens - margin)``, shuffled, first ``count`` (spec E4).

    The shuffle is seeded by (run seed, prompt number) rather than one RNG threaded through all
    prompts as in the original code, so a prompt gets the same split points however the run is
    batched or resumed.
    """
    candidates = list(range(stride, n_tokens - margin, stride))
    random.Random(f"depthscope:{seed}:{prompt_id}").shuffle(candidates)
    return candidates[:count]


def splits_for(settings, length: int, *, seed: int, prompt_id: int) -> list[int]:
    """:func:`split_points` with the ``n_splits``/``split_stride``/``split_margin`` of ``settings``."""
    return split_points(
        length,
        seed=seed,
        prompt_id=prompt_id,
        count=settings.n_splits,
        stride=settings.split_stride,
        margin=settings.split_margin,
    )
