"""Batches that halve on out-of-memory: the replay batch keeps the engine's working memory in bounds.

:class:`AdaptiveBatch` runs a chunked loop and, when a chunk runs out of memory, halves the batch
and retries that chunk (one line through ``Progress.note``), down to one row; the smaller size is
kept for the rest of the run. Chunks must be safe to redo: they write their results into their
own slots, as the engine's sweeps do. What batch to start from is the run's business
(:mod:`depthscope.run.memory_plan`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from depthscope.core.errors import DepthscopeError
from depthscope.core.progress import Progress

T = TypeVar("T")


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or an allocator's "out of memory"/"not enough memory" error."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "not enough memory" in text or "can't allocate memory" in text
    )


def _release_cached_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class AdaptiveBatch:
    """A batch size that halves when a chunk runs out of memory, and stays halved.

    Share one instance over a run so that the size found once is used for every later prompt.
    """

    def __init__(self, size: int, progress: Progress | None = None, what: str = "--batch-size"):
        if size < 1:
            raise ValueError("batch size must be at least 1")
        self.size = size
        self.progress = progress or Progress()
        self.what = what

    def _flag(self, size: int) -> str:
        return f"{self.what}={size}" if self.what.startswith("--set") else f"{self.what} {size}"

    def _halve(self, failed: int) -> None:
        if failed <= 1:
            raise DepthscopeError(
                f"out of memory even with {self._flag(1)}; use a lower-precision dtype "
                f"(--dtype bfloat16), spread the model with --device-map, or shorter prompts"
            )
        self.size = min(self.size, max(1, failed // 2))
        _release_cached_memory()
        self.progress.note(
            f"out of memory with {self._flag(failed)}; retrying with {self.size} "
            f"(pass {self._flag(self.size)} to start there)"
        )

    def run(self, n_items: int, step: Callable[[int, int], None]) -> None:
        """Call ``step(start, stop)`` over ``[0, n_items)`` in chunks of at most ``size`` items."""
        start = 0
        while start < n_items:
            stop = min(start + self.size, n_items)
            try:
                step(start, stop)
            except (RuntimeError, torch.OutOfMemoryError) as exc:
                if not is_out_of_memory(exc):
                    raise
            else:
                start = stop
                continue
            self._halve(stop - start)  # after the except block, so its frames are freed

    def call(self, compute: Callable[[int], T]) -> T:
        """``compute(size)`` for the largest size (from the current one, halving) that fits."""
        while True:
            size = self.size
            try:
                return compute(size)
            except (RuntimeError, torch.OutOfMemoryError) as exc:
                if not is_out_of_memory(exc):
                    raise
            self._halve(size)


def as_batches(batch_size: int | AdaptiveBatch) -> AdaptiveBatch:
    """A shared :class:`AdaptiveBatch` as it is, or a fresh one for a plain size."""
    return batch_size if isinstance(batch_size, AdaptiveBatch) else AdaptiveBatch(batch_size)


# ---------------------------------------------------------------- sizes
