"""Linear maps (E10): throughput of statistics accumulation, solve time, held-out scoring.

Measured on activations with the shapes of the built-in pair gemma3-270m -> smollm2-135m
(19 source boundaries of d=640, 31 target boundaries of d=576), so no model is needed; the
full mode also times the two models' forward passes when they are cached. Compared in the same
run against a naive accumulation (one ``X_m^T Y_l`` product per (m, l) pair) and against the
machine's float64 matmul throughput.

    python benchmarks/bench_linear_map.py [--quick] [--tokens N]

Prints a table and writes ``benchmarks/results/linear_map.json`` (``linear_map_quick.json`` with
``--quick``, so a smoke run never overwrites the reference measurement).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from depthscope.core.allocator import keep_freed_memory
from depthscope.experiments.maps.ridge import HeldOutMetrics, MapStatistics, augment, solve

SHAPES = {"n_source": 19, "d_source": 640, "n_target": 31, "d_target": 576}
OUT = Path(__file__).parent / "results" / "linear_map.json"


def activations(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Correlated random residuals: targets are noisy mixtures of the sources."""
    gen = torch.Generator().manual_seed(seed)
    s, ds, t, dt = (SHAPES[k] for k in ("n_source", "d_source", "n_target", "d_target"))
    x = torch.randn(s, n, ds, generator=gen)
    mix = torch.randn(ds, dt, generator=gen) / ds**0.5
    y = torch.stack([x[i * (s - 1) // (t - 1)] @ mix for i in range(t)])
    return x, y + 0.3 * torch.randn(y.shape, generator=gen)


def stats_flops(tokens: int) -> float:
    s, ds, t, dt = (SHAPES[k] for k in ("n_source", "d_source", "n_target", "d_target"))
    return 2.0 * tokens * s * (ds + 1) * (ds + 1 + t * dt)


def matmul_gflops() -> float:
    """float64 GEMM throughput of this machine at the accumulation's shape."""
    a = torch.randn(1024, 641, dtype=torch.float64)
    b = torch.randn(1024, 31 * 576, dtype=torch.float64)
    best = float("inf")
    for _ in range(4):
        started = time.perf_counter()
        a.T @ b
        best = min(best, time.perf_counter() - started)
    return 2 * 1024 * 641 * 31 * 576 / best / 1e9


def naive_stats(x: torch.Tensor, y: torch.Tensor) -> float:
    """Seconds for the per-pair reference (same float64 sums, one product per (m, l))."""
    started = time.perf_counter()
    for m in range(x.shape[0]):
        xa = augment(x[m].double())
        gram = xa.T @ xa
        for ell in range(y.shape[0]):
            cross = xa.T @ y[ell].double()
    del gram, cross
    return time.perf_counter() - started


def model_forward(n_texts: int) -> dict:
    """Forward throughput of the built-in pair on builtin:text, if both models are cached."""
    from depthscope.data.sources import load_examples
    from depthscope.experiments.maps.align import Aligner
    from depthscope.experiments.maps.collect import collect_residuals
    from depthscope.models.loading.loader import load_model
    from depthscope.models.loading.zoo import is_cached

    if not (is_cached("gemma3-270m") and is_cached("smollm2-135m")):
        return {"skipped": "built-in models not cached (depthscope fetch gemma3-270m ...)"}
    source = load_model("gemma3-270m", progress=False)
    target = load_model("smollm2-135m", progress=False)
    aligner = Aligner(source.tokenizer, target.tokenizer)
    items = [aligner(e.text) for e in load_examples("builtin:text", n_texts)]
    out = {"aligned_fraction": sum(i.n_aligned for i in items)
           / sum(len(i.target_ids) for i in items)}  # fmt: skip
    for key, lm in (("source", source), ("target", target)):
        ids = [getattr(i, f"{key}_ids") for i in items]
        pos = [getattr(i, f"{key}_positions") for i in items]
        started = time.perf_counter()
        for b in range(0, len(items), 8):
            collect_residuals(lm, ids[b : b + 8], pos[b : b + 8])
        seconds = time.perf_counter() - started
        out[f"{lm.name}_tokens_per_s"] = sum(map(len, ids)) / seconds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few tokens, no model forward passes")
    parser.add_argument("--tokens", type=int, default=None, help="training tokens to accumulate")
    args = parser.parse_args()
    keep_freed_memory()  # as the CLI does: large buffers are reused instead of re-faulted
    forward = None if args.quick else model_forward(n_texts=24)  # before the big allocations
    tokens = args.tokens or (1024 if args.quick else 8192)
    val_tokens = max(256, tokens // 4)
    x, y = activations(tokens)
    xv, yv = activations(val_tokens, seed=1)

    stats = MapStatistics.zeros(**SHAPES)
    started = time.perf_counter()
    for b in range(0, tokens, 1024):
        stats.update(x[:, b : b + 1024], y[:, b : b + 1024])
    accumulate_s = time.perf_counter() - started
    started = time.perf_counter()
    maps = solve(stats, ridge=1e-3)
    solve_s = time.perf_counter() - started
    fast = maps.to(torch.float32)
    metrics = HeldOutMetrics.zeros(SHAPES["n_source"], SHAPES["n_target"], SHAPES["d_target"])
    started = time.perf_counter()
    metrics.update(fast, xv, yv)
    validate_s = time.perf_counter() - started
    naive_tokens = min(tokens, 1024)
    naive_s = naive_stats(x[:, :naive_tokens], y[:, :naive_tokens])
    ours_per_token = accumulate_s / tokens
    peak = matmul_gflops()
    achieved = stats_flops(tokens) / accumulate_s / 1e9
    result = {
        "shapes": SHAPES,
        "tokens": tokens,
        "val_tokens": val_tokens,
        "statistics_tokens_per_s": tokens / accumulate_s,
        "statistics_gflops_fp64": achieved,
        "machine_fp64_gemm_gflops": peak,
        "fraction_of_gemm": achieved / peak,
        "naive_per_pair_tokens_per_s": naive_tokens / naive_s,
        "speedup_vs_naive": (naive_s / naive_tokens) / ours_per_token,
        "solve_s": solve_s,
        "validation_tokens_per_s": val_tokens / validate_s,
        "statistics_bytes": stats.gram.numel() * 8 + stats.cross.numel() * 8,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    if forward is not None:
        result["forward"] = forward
    for key, value in result.items():
        text = f"{value:,.3f}" if isinstance(value, float) else str(value)
        print(f"{key:<32} {text}")
    out = OUT.with_name("linear_map_quick.json") if args.quick else OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
