"""Integrated gradients: how many model evaluations each quadrature rule needs for the paper's accuracy.

The paper integrates with a left Riemann sum of 256 steps (E7, Fig. 6). Its completeness gap
``|Σ_p IG[p] − (F(x) − F(x'))|`` is the quadrature error of the 1-D path integral, so for every
(prompt, layer) this script takes the 256-step Riemann gap as the target and counts the model
evaluations (batch rows replayed from that layer, forward + backward; a forward-only pass for F
at a Gauss panel's end counts as one too) that each adaptive rule spends to reach it (adaptive
panels, halved where their measured error is largest, at most 256 evaluations). It also runs
depthscope's default setting (adaptive Simpson panels, tolerance 0.005) and, with
``--reference``, compares every attribution map with a far more accurate integral (adaptive
Simpson, tolerance 1e-6, up to 2048 evaluations): max |ΔIG| over positions relative to the map's
largest entry. Evaluations are counted, not timed, so the numbers do not depend on the machine's
load; the seconds printed per pair do.

    python benchmarks/bench_igrad.py                        # both built-in models, every layer
    python benchmarks/bench_igrad.py --layers 0,5,10,15     # a few layers
    python benchmarks/bench_igrad.py --models tiny          # smoke test on a tiny random model
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from depthscope.analyses.igrad import (
    IGPath,
    IGSettings,
    adaptive_ig,
    fixed_ig,
    integrated_gradients,
)
from depthscope.core.atomic_files import atomic_write_json
from depthscope.data.answer_split import paper_splits
from depthscope.data.prompts import PromptSet
from depthscope.data.sources import load_examples
from depthscope.engine.batch import pad_batch, pad_id
from depthscope.engine.trace import trace

MODELS = ("smollm2-135m", "gemma3-270m")
PAPER_STEPS = 256
FAST_RULES = ("simpson", "gauss", "trapezoid")
REFERENCE = {"rule": "simpson", "tolerance": 1e-6, "max_steps": 2048}


def _tiny_lm():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny_models import save_tiny_model_dir

    from depthscope.models.loading.loader import load_model

    return load_model(str(save_tiny_model_dir(Path(tempfile.mkdtemp()))), progress=False)


def _layers(text: str, n_layers: int) -> list[int]:
    if text == "all":
        return list(range(n_layers))
    layers = [int(x) for x in text.split(",") if x.strip()]
    return [layer for layer in layers if 0 <= layer < n_layers]


def row_name(rule: str, stop: str) -> str:
    """Result key of an adaptive rule aimed at the Riemann gap (``bound`` keeps the old names)."""
    return f"{rule}_to_riemann_gap" if stop == "bound" else f"{rule}_{stop}_stop_to_riemann_gap"


def bench_pair(path: IGPath, rules: list[str], stops: list[str], reference: bool) -> dict:
    """One (prompt, layer): the paper's Riemann sum, each fast rule aimed at its gap, the default."""
    paper = fixed_ig(path, "riemann", PAPER_STEPS, block=16)
    entry = {
        "f_input": paper.f_input,
        "f_baseline": paper.f_baseline,
        "riemann_256": {"gap": paper.gap, "evaluations": paper.evaluations},
    }
    results = {"riemann_256": paper}
    for rule in rules:
        for stop in stops:
            fast = adaptive_ig(path, rule, paper.gap, PAPER_STEPS, block=16, stop=stop)
            entry[row_name(rule, stop)] = {
                "gap": fast.gap,
                "evaluations": fast.evaluations,
                "steps": fast.steps,
                "reached": fast.gap <= paper.gap,
            }
            results[row_name(rule, stop)] = fast
    default = integrated_gradients(path, IGSettings())
    entry["default"] = {
        "gap": default.gap,
        "evaluations": default.evaluations,
        "steps": default.steps,
    }
    results["default"] = default
    if reference:
        accurate = adaptive_ig(path, block=16, **REFERENCE)
        entry["reference"] = {"gap": accurate.gap, "evaluations": accurate.evaluations}
        exact = accurate.attribution
        scale = float(exact.abs().max())
        for name, result in results.items():
            error = float((result.attribution - exact).abs().max())
            entry[name]["max_error"] = error
            entry[name]["relative_max_error"] = error / scale if scale > 0 else 0.0
    return entry


def bench_model(
    lm, layers_text: str, rules: list[str], stops: list[str], reference: bool, log
) -> dict:
    examples = paper_splits(lm.tokenizer, load_examples("builtin:paper"))
    prompts = PromptSet.from_examples(lm.tokenizer, examples)
    batch = pad_batch(prompts.sequences, pad_id(lm.tokenizer))
    with torch.no_grad():
        traced = trace(lm.adapter, batch)
    layers = _layers(layers_text, lm.n_layers)
    report = {"layers": layers, "prompts": []}
    for row, example in enumerate(examples):
        alen = prompts.answer_lengths[row]
        pairs = []
        for layer in layers:
            length = len(prompts.sequences[row])
            path = IGPath(lm.adapter, traced, row, length, alen, "layer", layer)
            began = time.perf_counter()
            pairs.append(bench_pair(path, rules, stops, reference))
            p = pairs[-1]
            log(
                f"  prompt {row} layer {layer:2d}: riemann-256 gap {p['riemann_256']['gap']:.2e}; "
                + "; ".join(
                    f"{row_name(rule, stop)} {p[row_name(rule, stop)]['evaluations']} evals"
                    for rule in rules
                    for stop in stops
                )
                + f"; default {p['default']['evaluations']} evals gap {p['default']['gap']:.1e}"
                + f" ({time.perf_counter() - began:.0f} s)"
            )
        report["prompts"].append(
            {"text": example.text, "split": example.meta.get("split"), "pairs": pairs}
        )
    report["summary"] = summarize(report, [row_name(r, s) for r in rules for s in stops])
    return report


def summarize(report: dict, rows: list[str]) -> dict:
    pairs = [pair for prompt in report["prompts"] for pair in prompt["pairs"]]
    paper = sum(p["riemann_256"]["evaluations"] for p in pairs)
    summary = {"pairs": len(pairs), "riemann_256_evaluations": paper}
    for name in [*rows, "default"]:
        spent = sum(p[name]["evaluations"] for p in pairs)
        summary[name] = {
            "evaluations": spent,
            "fewer_than_riemann": paper / spent,
            "max_gap": max(p[name]["gap"] for p in pairs),
        }
        if name != "default":
            summary[name]["reached"] = sum(p[name]["reached"] for p in pairs)
        if "max_error" in pairs[0][name]:
            summary[name]["max_relative_error"] = max(p[name]["relative_max_error"] for p in pairs)
    summary["riemann_256_max_gap"] = max(p["riemann_256"]["gap"] for p in pairs)
    if "max_error" in pairs[0]["riemann_256"]:
        summary["riemann_256_max_relative_error"] = max(
            p["riemann_256"]["relative_max_error"] for p in pairs
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated; 'tiny' too")
    parser.add_argument("--layers", default="all", help="'all' or comma-separated layer indices")
    parser.add_argument(
        "--rules", default=",".join(FAST_RULES), help="adaptive rules aimed at the Riemann gap"
    )
    parser.add_argument(
        "--stops",
        default="bound,gap",
        help="when the adaptive rules stop: bound (panel errors' magnitudes), gap (the gap itself)",
    )
    parser.add_argument(
        "--reference", action="store_true", help="also compare with a far more accurate integral"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "igrad.json"
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    from depthscope.models.loading.loader import load_model

    report: dict = {
        "target": "layer",
        "paper_steps": PAPER_STEPS,
        "default": {"rule": IGSettings().quadrature_rule, "tolerance": IGSettings().tolerance},
        "models": {},
    }
    for name in args.models.split(","):
        lm = _tiny_lm() if name == "tiny" else load_model(name, progress=False)
        print(f"{name}: {lm.n_layers} layers", flush=True)
        report["models"][name] = bench_model(
            lm,
            args.layers,
            args.rules.split(","),
            args.stops.split(","),
            args.reference,
            lambda line: print(line, flush=True),
        )
        summary = report["models"][name]["summary"]
        print(f"{name}: {summary}", flush=True)
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
