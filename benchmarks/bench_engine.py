"""Engine vs naive path on a real model, in one run: wall time, speed-up, fraction of matmul peak.

    python benchmarks/bench_engine.py [--model smollm2-135m] [--prompt-index 0]

The naive references are the ones the tests use (tests/naive.py: one full forward pass per
intervention, hooks only). "FLOPs of the exact computation" are counted by PyTorch's
FlopCounterMode while the engine runs, so they are what was actually executed; the peak is this
machine's measured fp32 matmul throughput. Results are printed and written to
benchmarks/results/engine.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from machine import best_of, matmul_peak  # noqa: E402
from naive import naive_effects, naive_erasure, naive_igrad  # noqa: E402

import depthscope as ds  # noqa: E402
from depthscope.analyses import RunOptions  # noqa: E402
from depthscope.analyses.erasure import Erasure, ErasureSettings, baseline_means  # noqa: E402
from depthscope.analyses.splits import split_points  # noqa: E402
from depthscope.core.allocator import keep_freed_memory  # noqa: E402
from depthscope.data.prompts import PromptSet  # noqa: E402
from depthscope.data.sources import load_examples  # noqa: E402
from depthscope.models.loading.loader import load_model  # noqa: E402


def timed(fn, repeats: int = 1) -> tuple[float, object]:
    return best_of(fn, repeats)


def counted_flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def bench_future_effects(lm, prompts: PromptSet, peak: float) -> dict:
    settings = {"parts": ("layer",)}
    ids = prompts.sequences[0]
    splits = split_points(len(ids), seed=0, prompt_id=0)

    def engine():
        return ds.analyze(lm, "future-effects", prompts, **settings, batch_size=64).data

    def naive():
        return [naive_effects(lm, ids, "layer", front=1, split=t) for t in splits]

    engine_s, data = timed(engine, repeats=2)
    naive_s, reference = timed(naive)
    expected = torch.stack([e for e, _ in reference]).amax(0)
    error = float((torch.as_tensor(data["effect"]) - expected).abs().max())
    flops = counted_flops(engine)
    return {
        "what": f"future-effects, part=layer, 1 prompt of {len(ids)} tokens, {len(splits)} split points",
        "engine_s": engine_s,
        "naive_s": naive_s,
        "speedup": naive_s / engine_s,
        "engine_gflop": flops / 1e9,
        "fraction_of_peak": flops / engine_s / peak,
        "max_abs_diff_vs_naive": error,
        "targets": {"speedup": ">= 2", "fraction_of_peak": ">= 0.5"},
    }


def bench_logit_lens(lm, prompts: PromptSet, peak: float) -> dict:
    length = sum(len(s) for s in prompts.sequences)
    vocab = lm.adapter.unembed_module.weight.shape[0]
    bound_flops = 2 * lm.n_layers * length * lm.d_model * vocab
    seconds, _ = timed(lambda: ds.analyze(lm, "logit-lens", prompts).data, repeats=2)
    trace_s, _ = timed(
        lambda: ds.analyze(lm, "contributions", prompts).data, repeats=2
    )  # the trace alone, ~free stats
    lens_s = max(seconds - trace_s, 1e-9)
    return {
        "what": f"logit-lens over {len(prompts)} prompts, {length} tokens, vocab {vocab}",
        "seconds_including_trace": seconds,
        "trace_seconds": trace_s,
        "lens_seconds": lens_s,
        "unembedding_gflop": bound_flops / 1e9,
        "flop_bound_s": bound_flops / peak,
        "ratio_to_bound": lens_s / (bound_flops / peak),
        "targets": {"ratio_to_bound": "<= 2"},
    }


def bench_erasure(lm, prompts: PromptSet, peak: float) -> dict:
    baseline = [
        list(s)
        for s in PromptSet.from_examples(
            lm.tokenizer, load_examples("builtin:arith-words", 10)
        ).sequences
    ]
    ids, alen = prompts.sequences[0], prompts.answer_lengths[0]
    single = PromptSet([ids], answer_lengths=[alen])
    means = baseline_means(lm, baseline)

    def engine():
        erasure = Erasure(lm, ErasureSettings(), RunOptions(batch_size=64))
        erasure.baseline = baseline
        return ds.analyze(lm, erasure, single).data

    engine_s, data = timed(engine, repeats=2)
    means_s, _ = timed(lambda: baseline_means(lm, baseline))
    naive_s, expected = timed(lambda: naive_erasure(lm, ids, alen, means))
    error = float((torch.as_tensor(data["effect"][0]) - expected).abs().max())
    flops = counted_flops(engine)
    return {
        "what": f"erasure, 1 prompt of {len(ids)} tokens ({lm.n_layers + 1} boundaries x {len(ids)} positions)",
        "engine_s": engine_s,
        "engine_s_excluding_baseline_means": engine_s - means_s,
        "naive_s": naive_s,
        "speedup": naive_s / (engine_s - means_s),
        "engine_gflop": flops / 1e9,
        "fraction_of_peak": flops / engine_s / peak,
        "max_abs_diff_vs_naive": error,
        "targets": {"speedup": ">= 2"},
    }


def bench_igrad(lm, prompts: PromptSet, peak: float, steps: int = 32) -> dict:
    ids, alen = prompts.sequences[0], prompts.answer_lengths[0]
    single = PromptSet([ids], answer_lengths=[alen])
    settings = {"steps": steps, "block": 16, "targets": ("layer",)}
    seconds, _ = timed(lambda: ds.analyze(lm, "igrad", single, **settings).data)
    layer = lm.n_layers // 2
    naive_s, _ = timed(lambda: naive_igrad(lm, ids, alen, "layer", layer, steps))
    flops = counted_flops(lambda: ds.analyze(lm, "igrad", single, **settings).data)
    return {
        "what": f"igrad target=layer, 1 prompt of {len(ids)} tokens, {steps} steps x {lm.n_layers} layers",
        "seconds": seconds,
        "interpolation_steps_per_s": steps * lm.n_layers / seconds,
        "naive_s_one_layer": naive_s,
        "naive_s_all_layers_estimate": naive_s * lm.n_layers,
        "speedup_estimate": naive_s * lm.n_layers / seconds,
        "engine_gflop": flops / 1e9,
        "fraction_of_peak": flops / seconds / peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "engine.json")
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_grad_enabled(False)
    lm = load_model(args.model, progress=False)
    peak = matmul_peak()
    words = PromptSet.from_examples(lm.tokenizer, load_examples("builtin:arith-words", 1))
    lens_prompts = PromptSet.from_examples(lm.tokenizer, load_examples("builtin:arith-words", 4))
    paper = PromptSet.from_examples(lm.tokenizer, load_examples("builtin:paper", 1))
    report = {
        "model": args.model,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
        },
        "torch": torch.__version__,
        "matmul_peak_gflops": peak / 1e9,
        "future_effects": bench_future_effects(lm, words, peak),
        "logit_lens": bench_logit_lens(lm, lens_prompts, peak),
        "erasure": bench_erasure(lm, paper, peak),
    }
    torch.set_grad_enabled(True)
    report["igrad"] = bench_igrad(lm, paper, peak)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"matmul peak: {peak / 1e9:.0f} GFLOP/s ({report['machine']['threads']} threads)")
    for name in ("future_effects", "logit_lens", "erasure", "igrad"):
        entry = report[name]
        shown = {
            k: (round(v, 3) if isinstance(v, float) else v) for k, v in entry.items() if k != "what"
        }
        print(f"{name}: {entry['what']}\n   {shown}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
