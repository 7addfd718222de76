"""bf16's noise floor: future effects of a real model in fp32 and in bf16 on the same prompts, in
one run, and the batching/packing variants on tiny random models of three families.

    python benchmarks/bench_bf16.py                 # smollm2-135m: 1 prompt (2 split points),
                                                    # 2 prompts (4 split points); tiny models
    python benchmarks/bench_bf16.py --quick         # tiny random models only (smoke)

The noise floor is read where exact arithmetic gives zero: in future effects, the skipped layer's
own contribution at the future tokens (``effect[s, s]``) does not change (its inputs there are
unchanged), so whatever is measured there is rounding. The distance between the bf16 and fp32
maps says how far individual entries move. Measurements are fp32/fp64 in both runs; only the
model's weights and activations are bf16. Writes ``benchmarks/results/bf16.json``
(``bf16_quick.json`` with ``--quick``), which docs/scaling.md's table is generated from.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from unittest import mock

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))

import depthscope as ds  # noqa: E402
from depthscope.data.prompts import PromptSet  # noqa: E402
from depthscope.data.sources import DEFAULT_SOURCE, load_examples  # noqa: E402

FAMILIES = ("llama", "gemma3", "gpt_neox")
TINY_PROMPTS = [30, 26, 40, 21]  # tests/engine/test_bf16.py's prompt lengths
SIGNIFICANT = 0.05  # relative differences are reported where the fp32 effect exceeds this


def future_effects(lm, prompts, n_splits: int, batch_size: int = 64) -> tuple[dict, float]:
    """The layer-skip future-effect map and output change, with the seconds they took."""
    start = time.perf_counter()
    data = ds.analyze(
        lm, "future-effects", prompts, parts=("layer",), n_splits=n_splits, batch_size=batch_size
    ).data
    seconds = time.perf_counter() - start
    return {
        "effect": torch.as_tensor(data["effect"], dtype=torch.float64),
        "output_change": torch.as_tensor(data["output_change"], dtype=torch.float64),
    }, seconds


def finite(x: torch.Tensor) -> torch.Tensor:
    return x[torch.isfinite(x)]


def floor(effect: torch.Tensor) -> dict:
    """The diagonal ``effect[s, s]``: zero in exact arithmetic."""
    diagonal = finite(torch.diagonal(effect))
    return {"max": float(diagonal.max()), "mean": float(diagonal.mean())}


def gap(a: torch.Tensor, b: torch.Tensor) -> dict:
    both = torch.isfinite(a) & torch.isfinite(b)
    diff = (a - b).abs()[both]
    return {"mean": float(diff.mean()), "max": float(diff.max())}


def real_workload(model: str, n_prompts: int, n_splits: int) -> dict:
    """One prompt set through the model in fp32 and then in bf16 (timed after a warm-up run)."""
    lm = ds.load_model(model, progress=False)
    prompts = PromptSet.from_examples(lm.tokenizer, load_examples(DEFAULT_SOURCE, n_prompts))
    tokens = sum(len(s) for s in prompts.sequences)
    future_effects(lm, prompts, n_splits)  # warm-up: the first run pays one-time costs
    fp32, fp32_s = future_effects(lm, prompts, n_splits)
    lm.model.to(torch.bfloat16)
    bf16, bf16_s = future_effects(lm, prompts, n_splits)
    effect_gap = gap(bf16["effect"], fp32["effect"])
    big = torch.isfinite(fp32["effect"]) & (fp32["effect"] > SIGNIFICANT)
    relative = ((bf16["effect"] - fp32["effect"]).abs() / fp32["effect"])[big]
    worst = int(torch.nan_to_num((bf16["effect"] - fp32["effect"]).abs(), nan=-1).argmax())
    return {
        "model": model,
        "data": DEFAULT_SOURCE,
        "prompts": n_prompts,
        "tokens": tokens,
        "n_splits": n_splits,
        "floor_fp32": floor(fp32["effect"]),
        "floor_bf16": floor(bf16["effect"]),
        "effect_gap": effect_gap,
        "effect_gap_at_fp32": float(fp32["effect"].flatten()[worst]),
        "effect_max_relative_where_significant": float(relative.max()),
        "significant": SIGNIFICANT,
        "output_change_gap": gap(bf16["output_change"], fp32["output_change"]),
        "output_change_max": float(finite(fp32["output_change"]).max()),
        "fp32_s": round(fp32_s, 1),
        "bf16_s": round(bf16_s, 1),
    }


def tiny_workload() -> dict:
    """bf16 against fp32, batch 1 against 64 and packed against separate split points (bf16)."""
    from tiny_models import random_ids, tiny_model

    prompts = random_ids(TINY_PROMPTS, seed=5)
    worst = {"bf16_vs_fp32": {}, "batch_1_vs_64": {}, "packed_vs_separate": {}}

    def bf16(family: str):
        lm = tiny_model(family)
        lm.model.to(torch.bfloat16)
        return lm

    def record(key: str, a: dict, b: dict) -> None:
        for name in ("effect", "output_change"):
            found = gap(a[name], b[name])["max"]
            worst[key][name] = max(worst[key].get(name, 0.0), found)

    for family in FAMILIES:
        reference, _ = future_effects(tiny_model(family), prompts, 4)
        packed, _ = future_effects(bf16(family), prompts, 4)
        one_row, _ = future_effects(bf16(family), prompts, 4, batch_size=1)
        with mock.patch("depthscope.engine.sweep.pack_prompt", lambda *a, **k: None):
            separate, _ = future_effects(bf16(family), prompts, 4)
        record("bf16_vs_fp32", packed, reference)
        record("batch_1_vs_64", one_row, packed)
        record("packed_vs_separate", packed, separate)
    return {"families": list(FAMILIES), "prompt_lengths": TINY_PROMPTS, "max_gap": worst}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--quick", action="store_true", help="tiny random models only")
    args = parser.parse_args(argv)
    report: dict = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    report["tiny"] = tiny_workload()
    print(f"tiny models: {report['tiny']['max_gap']}", flush=True)
    report["workloads"] = []
    for n_prompts, n_splits in [] if args.quick else [(1, 2), (2, 4)]:
        found = real_workload(args.model, n_prompts, n_splits)
        report["workloads"].append(found)
        print(json.dumps(found), flush=True)
    out = RESULTS / ("bf16_quick.json" if args.quick else "bf16.json")
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
