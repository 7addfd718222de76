"""How work is cut among processes: contiguous blocks, balanced, and whole prompt batches.

Pure functions (no process group), used by the runner to give each process its prompts and by
the feed loop to trace whole batches, so a prompt gets the same numbers however the work is split.
"""

from __future__ import annotations

from collections.abc import Sequence


def block_bounds(n_items: int, world_size: int, rank: int) -> tuple[int, int]:
    """``[start, stop)`` of rank's contiguous block; block sizes differ by at most one."""
    base, extra = divmod(n_items, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def balanced_blocks(costs: Sequence[float], parts: int) -> list[tuple[int, int]]:
    """Cut ``costs`` into ``parts`` contiguous, non-empty blocks of about equal sums.

    Each cut goes where the running sum is closest to ``k/parts`` of the total, leaving at least
    one item for every later block.
    """
    n = len(costs)
    if not 1 <= parts <= n:
        raise ValueError(f"cannot cut {n} items into {parts} non-empty blocks")
    prefix = [0.0]
    for cost in costs:
        prefix.append(prefix[-1] + float(cost))
    cuts = [0]
    for k in range(1, parts):
        target = prefix[-1] * k / parts
        lowest, highest = cuts[-1] + 1, n - (parts - k)
        cuts.append(min(range(lowest, highest + 1), key=lambda i: (abs(prefix[i] - target), i)))
    cuts.append(n)
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def batches_for(
    prompt_ids: Sequence[int], n_prompts: int, prompt_batch: int
) -> list[tuple[list[int], list[int]]]:
    """``(batch, mine)`` pairs: each prompt batch as a single process cuts it (``prompt_batch``
    consecutive ids) that holds any of ``prompt_ids``, and which of its prompts are in
    ``prompt_ids``. Trace the whole ``batch``; process only ``mine``."""
    if prompt_batch < 1:
        raise ValueError("prompt_batch must be at least 1")
    wanted = set(prompt_ids)
    pairs = []
    for start in range(0, n_prompts, prompt_batch):
        batch = list(range(start, min(start + prompt_batch, n_prompts)))
        mine = [i for i in batch if i in wanted]
        if mine:
            pairs.append((batch, mine))
    return pairs
