"""Out-of-memory halving, --batch-size auto and the run memory estimate."""

from __future__ import annotations

import pytest
import torch
from recording_progress import RecordingProgress
from tiny_models import random_ids, tiny_model

from depthscope.core.errors import DepthscopeError
from depthscope.engine.adaptive_batch import AdaptiveBatch, is_out_of_memory
from depthscope.engine.batch import pad_batch
from depthscope.engine.trace import trace
from depthscope.run.memory_plan import (
    MAX_AUTO_BATCH,
    ModelShape,
    auto_batch_size,
    batch_size_for,
    estimate_run,
    row_bytes,
)


class FakeDevice:
    """A computation that runs out of memory on chunks larger than ``limit`` items."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.done: list[tuple[int, int]] = []
        self.attempts: list[int] = []

    def step(self, start: int, stop: int) -> None:
        self.attempts.append(stop - start)
        if stop - start > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.done.append((start, stop))


def test_a_chunk_that_runs_out_of_memory_is_halved_and_redone():
    progress = RecordingProgress()
    batch = AdaptiveBatch(64, progress)
    device = FakeDevice(limit=12)
    batch.run(100, device.step)
    assert device.attempts[:4] == [64, 32, 16, 8]  # halved until it fits
    covered = [i for start, stop in device.done for i in range(start, stop)]
    assert covered == list(range(100))  # every item exactly once, in order
    assert all(stop - start <= 8 for start, stop in device.done)
    assert batch.size == 8  # kept for the rest of the run
    assert progress.notes == [
        "out of memory with --batch-size 64; retrying with 32 (pass --batch-size 32 to start there)",
        "out of memory with --batch-size 32; retrying with 16 (pass --batch-size 16 to start there)",
        "out of memory with --batch-size 16; retrying with 8 (pass --batch-size 8 to start there)",
    ]
    again = FakeDevice(limit=12)
    batch.run(20, again.step)  # a later loop starts from the size that worked
    assert again.attempts == [8, 8, 4]


def test_a_short_last_chunk_is_halved_from_its_own_size():
    batch = AdaptiveBatch(10)
    device = FakeDevice(limit=3)
    batch.run(14, device.step)  # [0,10) fails -> 5 fails -> 2 ...
    assert [i for a, b in device.done for i in range(a, b)] == list(range(14))
    assert batch.size == 2


def test_out_of_memory_at_one_row_is_a_clear_error():
    batch = AdaptiveBatch(4)
    with pytest.raises(DepthscopeError, match="out of memory even with --batch-size 1"):
        batch.run(3, FakeDevice(limit=0).step)


def test_other_errors_are_not_retried():
    batch = AdaptiveBatch(8)

    def broken(start: int, stop: int) -> None:
        raise RuntimeError("shapes do not match")

    with pytest.raises(RuntimeError, match="shapes"):
        batch.run(10, broken)
    assert batch.size == 8


def test_call_finds_the_largest_size_that_fits():
    batch = AdaptiveBatch(32)

    def compute(size: int) -> int:
        if size > 5:
            raise RuntimeError("CUDA error: out of memory")
        return size * 10

    assert batch.call(compute) == 40 and batch.size == 4


def test_out_of_memory_is_recognised_by_type_and_message():
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: not enough memory: you tried..."))
    assert not is_out_of_memory(RuntimeError("index out of range"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_auto_batch_size_follows_free_gpu_memory(monkeypatch):
    lm = tiny_model("llama")
    shape = ModelShape.of(lm.model)
    assert (shape.n_layers, shape.d_model, shape.d_ff, shape.n_heads, shape.vocab) == (
        4,
        32,
        64,
        4,
        96,
    )
    assert auto_batch_size(lm.model, 100) == 64  # CPU: the default
    free = {"bytes": 2 * 2**30}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda gpu: (free["bytes"], 80 * 2**30))
    big = ModelShape(n_layers=32, d_model=4096, d_ff=14336, n_heads=32, vocab=128256, dtype_bytes=2)
    sizes = [batch_size_for(g * 2**30, big, 512) for g in (1, 4, 16, 64)]
    assert sizes == sorted(sizes) and sizes[-1] > sizes[1] > sizes[0]
    assert batch_size_for(2**20, big, 512) == 1  # never 0: the OOM halving has the last word
    per_row = row_bytes(big, 512)
    assert sizes[-1] * per_row <= 64 * 2**30  # what it picks fits the memory it was given
    assert batch_size_for(10**15, shape, 16) == MAX_AUTO_BATCH
    got = auto_batch_size(lm.model, 100, device="cuda")
    assert got == batch_size_for(free["bytes"], shape, 100)


def test_run_estimate_counts_the_trace_exactly():
    lm = tiny_model("llama")
    lengths = [12, 30, 7, 9, 25]
    estimate = estimate_run(lm.model, lengths, prompt_batch=2, batch_size=16)
    ids = random_ids(lengths)
    actual = 0
    for start in range(0, len(ids), 2):
        traced = trace(lm.adapter, pad_batch(ids[start : start + 2], 0))
        tensors = (traced.resid, traced.attn, traced.mlp)
        actual = max(actual, sum(t.numel() * t.element_size() for t in tensors))
    assert estimate.trace == actual
    assert estimate.weights == sum(p.numel() * 4 for p in lm.model.parameters())
    assert estimate.replay == 16 * row_bytes(ModelShape.of(lm.model), 30)
    line = estimate.describe(available=estimate.total - 1)
    assert line.startswith("memory estimate: ") and "too much: lower --batch-size" in line
    assert "too much" not in estimate.describe(available=estimate.total)
    with pytest.raises(DepthscopeError, match="no prompts"):
        estimate_run(lm.model, [], prompt_batch=2, batch_size=1)
