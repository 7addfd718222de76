"""The machine's own yardstick, shared by the benchmarks: its best observed GEMM throughput."""

from __future__ import annotations

import time

import torch


def matmul_peak(
    size: int = 2048, repeats: int = 10, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> float:
    """Best observed ``size × size`` GEMM throughput (FLOP/s) in ``dtype`` on ``device``."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):  # warm up
        a @ b
    best = 0.0
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = max(best, 2 * size**3 / (time.perf_counter() - started))
    return best


def best_of(fn, repeats: int = 1) -> tuple[float, object]:
    """The fastest of ``repeats`` calls of ``fn`` (seconds) and the last call's value."""
    best, value = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return best, value
