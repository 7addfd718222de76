"""Where "past" ends and "future" begins: the paper's split-point rule, reproducible per prompt."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class SplitSettings:
    """Settings shared by every analysis that intervenes on the past and measures the future."""

    front: int = field(
        default=1,
        metadata={
            "help": "positions before this are never intervened on (protects BOS/first token)"
        },
    )
    n_splits: int = field(default=4, metadata={"help": "future: split points per prompt"})
    split_stride: int = field(
        default=8, metadata={"help": "future: split points are multiples of this ..."}
    )
    split_margin: int = field(default=4, metadata={"help": "... in [stride, T - margin)"})
    split_min: int = field(
        default=0,
        metadata={
            "help": "... and >= this (fine-tuning analysis, App. D.5: stride 1, margin 1, min 3)"
        },
    )

    def __post_init__(self) -> None:
        if self.front < 0:
            raise ValueError("front must be >= 0")
        if self.n_splits < 1:
            raise ValueError("n_splits must be >= 1")
        if self.split_stride < 1:
            raise ValueError("split_stride must be >= 1")
        if self.split_margin < 0 or self.split_min < 0:
            raise ValueError("split_margin and split_min must be >= 0")


def split_points(
    n_tokens: int,
    *,
    seed: int,
    prompt_id: int,
    count: int = 4,
    stride: int = 8,
    margin: int = 4,
    minimum: int = 0,
) -> list[int]:
    """Multiples of ``stride`` in ``[max(stride, minimum), n_tokens - margin)``, shuffled, first
    ``count`` (paper §3.2; the paper's code uses stride 8 and margin 4, and for the fine-tuned
    models of App. D.5 every position in ``[3, T − 1)``).

    The shuffle is seeded by (run seed, prompt number) rather than one RNG threaded through all
    prompts as in the original code, so a prompt gets the same split points however the run is
    batched, resumed or sharded over processes.
    """
    candidates = [t for t in range(stride, n_tokens - margin, stride) if t >= minimum]
    random.Random(f"depthscope:{seed}:{prompt_id}").shuffle(candidates)
    return candidates[:count]


def splits_for(settings: SplitSettings, length: int, *, seed: int, prompt_id: int) -> list[int]:
    """:func:`split_points` with the ``n_splits``/``split_stride``/``split_margin`` of ``settings``."""
    return split_points(
        length,
        seed=seed,
        prompt_id=prompt_id,
        count=settings.n_splits,
        stride=settings.split_stride,
        margin=settings.split_margin,
        minimum=settings.split_min,
    )
