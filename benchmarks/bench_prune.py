"""`depthscope prune` on a real model: the engine path vs one pruned model copy per candidate.

    python benchmarks/bench_prune.py [--model smollm2-135m] [--max-drop 8] [--quick]
    python benchmarks/bench_prune.py --shape 1B --max-drop 8 --naive-limit 8

Runs the command's default workload (criteria future-effect, block-influence, angular computed on
10 calibration prompts; 8 texts x 128 tokens of builtin:text; builtin:arith-chain, 4 per level;
3 random seeds) twice, each path in its own process so that its peak memory (max RSS) is its own:

- engine: ``run_prune`` as the command runs it (trace each sequence once, replay every candidate
  set of removed layers from its first removed layer with ``SkipLayers``);
- naive: the same candidate sets, each as a deep copy of the model with the layers deleted and a
  full forward pass per sequence (``evaluate_naive``).

Both measure the same numbers; the script checks they agree. Writes benchmarks/results/prune.json
(``prune_quick.json`` with ``--quick``: a tiny random model, so a smoke run never overwrites the
reference measurement). ``--shape 1B`` builds a Llama-3.2-1B-shaped model with random weights
(speed does not need trained ones; smollm2-135m's tokenizer supplies the ids) and runs the quick
data on it (the default 20 000 tokens per candidate set would take hours on 2 cores), writing
``prune_1B.json``. ``--naive-limit N`` times the naive path on the first N sets only and
extrapolates per set (stated in the output).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))

from depthscope.core.allocator import keep_freed_memory  # noqa: E402
from depthscope.experiments.prune.evaluate import evaluate_naive  # noqa: E402
from depthscope.experiments.prune.pipeline import PruneSettings, load_inputs, run_prune  # noqa: E402
from depthscope.experiments.prune.surgery import pruned_copy  # noqa: E402
from depthscope.models.loading.loader import load_model  # noqa: E402

QUICK = {"text_n": 2, "max_tokens": 24, "task_n": 1, "calib_n": 2}


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def settings_for(args: argparse.Namespace) -> PruneSettings:
    chosen = dict(QUICK) if args.quick or args.shape else {}
    if args.text_n:
        chosen["text_n"] = args.text_n
    return PruneSettings(max_drop=args.max_drop, **chosen)


def save_shaped_model(folder: Path, shape: str) -> Path:
    """A Llama of ``shape`` (from gpu_check's table) with random weights, and a real tokenizer."""
    import transformers as tf

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_check import SHAPES

    torch.manual_seed(0)
    model = tf.LlamaForCausalLM(tf.LlamaConfig(**SHAPES[shape]))
    model.save_pretrained(folder)
    load_model("smollm2-135m", progress=False).tokenizer.save_pretrained(folder)
    return folder


def candidate_values(doc: dict) -> dict[tuple, dict]:
    """Per removed-layer set, the metrics the engine measured (from the prune document)."""
    values: dict[tuple, dict] = {}
    curves = [(doc["criteria"][c]["removed"], doc["metrics"][c]) for c in doc["criteria"]]
    curves += [
        (doc["random"]["removed"][seed], doc["random"]["metrics_per_seed"][seed])
        for seed in doc["random"]["seeds"]
    ]
    for removed, metrics in curves:
        sets = {0: (), **{k: tuple(v) for k, v in removed.items()}}
        for k, layers in sets.items():
            values[layers] = {
                source: {name: series[k] for name, series in entry.items()}
                for source, entry in metrics.items()
            }
    return values


def engine_path(args: argparse.Namespace) -> dict:
    lm = load_model(args.model_path, progress=False)
    started = time.perf_counter()
    doc = run_prune(lm, settings_for(args))
    seconds = time.perf_counter() - started
    values = candidate_values(doc)
    return {
        "seconds": round(seconds, 2),
        "seconds_parts": doc["seconds"],
        "candidate_sets": doc["candidate_sets"],
        "candidates": [list(c) for c in values],
        "values": [values[c] for c in values],
        "best": doc["best"],
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def naive_path(args: argparse.Namespace, candidates: list[list[int]]) -> dict:
    lm = load_model(args.model_path, progress=False)
    inputs = load_inputs(lm, settings_for(args))
    chosen = [tuple(c) for c in candidates][: args.naive_limit or None]
    started = time.perf_counter()
    tallies = evaluate_naive(lm, chosen, inputs.datasets, make_model=pruned_copy)
    seconds = time.perf_counter() - started
    kinds = {d.source: d.kind for d in inputs.datasets}
    values = [{s: t.metrics(kinds[s]) for s, t in per.items()} for per in tallies]
    return {
        "seconds": round(seconds, 2),
        "candidate_sets": len(chosen),
        "values": values,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def child(args: argparse.Namespace) -> None:
    keep_freed_memory()
    if args.path == "engine":
        result = engine_path(args)
    else:
        result = naive_path(args, json.loads(Path(args.candidates).read_text()))
    print(json.dumps(result))


def run_child(args: argparse.Namespace, path: str, extra: list[str]) -> dict:
    command = [
        sys.executable,
        __file__,
        "--path",
        path,
        "--model-path",
        args.model_path,
        "--max-drop",
        str(args.max_drop),
        *(["--quick"] if args.quick else []),
        *(["--shape", args.shape] if args.shape else []),
        *(["--text-n", str(args.text_n)] if args.text_n else []),
        *extra,
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def max_difference(engine: dict, naive: dict) -> float:
    """Largest relative difference of any measured number between the two paths."""
    worst = 0.0
    for e, n in zip(engine["values"], naive["values"], strict=False):
        for source, metrics in n.items():
            for name, value in metrics.items():
                ref = e[source][name]
                worst = max(worst, abs(value - ref) / max(abs(ref), 1e-12))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--max-drop", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="tiny random model, tiny data")
    parser.add_argument("--shape", choices=("1B",), help="a random model of this shape, quick data")
    parser.add_argument("--text-n", type=int, default=0, help="held-out texts (0: the default)")
    parser.add_argument(
        "--naive-limit", type=int, default=0, help="time only the first N candidates (0 = all)"
    )
    parser.add_argument("--path", choices=("engine", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--model-path", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--candidates", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.path:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            from tiny_models import save_tiny_model_dir

            args.model_path = str(save_tiny_model_dir(Path(tmp) / "tiny"))
            args.max_drop = min(args.max_drop, 2)
        elif args.shape:
            args.model_path = str(save_shaped_model(Path(tmp) / args.shape, args.shape))
        else:
            args.model_path = args.model
            load_model(args.model, progress=True)  # fetch/convert once, outside the timings
        engine = run_child(args, "engine", [])
        candidates = Path(tmp) / "candidates.json"
        candidates.write_text(json.dumps(engine["candidates"]))
        naive = run_child(
            args, "naive", ["--candidates", str(candidates), "--naive-limit", str(args.naive_limit)]
        )
    per_set_naive = naive["seconds"] / naive["candidate_sets"]
    naive_all = per_set_naive * engine["candidate_sets"]
    validation = engine["seconds_parts"]["validation"]
    report = {
        "model": "tiny random llama (3 layers)"
        if args.quick
        else f"{args.shape}-shaped llama, random weights"
        if args.shape
        else args.model,
        "max_drop": args.max_drop,
        "workload": "depthscope prune defaults"
        + (f" (quick data: {QUICK})" if args.quick or args.shape else "")
        + (f", --text-n {args.text_n}" if args.text_n else ""),
        "criteria": list(settings_for(args).criteria),
        "candidate_sets": engine["candidate_sets"],
        "engine_seconds_total": engine["seconds"],
        "engine_seconds": engine["seconds_parts"],
        "naive_seconds_measured": naive["seconds"],
        "naive_sets_measured": naive["candidate_sets"],
        "naive_seconds_all_sets": round(naive_all, 2),
        "naive_extrapolated": naive["candidate_sets"] < engine["candidate_sets"],
        "validation_speedup": round(naive_all / max(validation, 1e-9), 2),
        "max_relative_difference": max_difference(engine, naive),
        "peak_rss_mb": {"engine": engine["peak_rss_mb"], "naive": naive["peak_rss_mb"]},
        "best": engine["best"],
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
        },
    }
    name = "prune_quick" if args.quick else f"prune_{args.shape}" if args.shape else "prune"
    out = RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(
        f"{report['model']}, K={args.max_drop}, {engine['candidate_sets']} layer sets: "
        f"engine {engine['seconds']:.1f} s in all "
        f"(criteria {engine['seconds_parts']['criteria']:.1f} s, "
        f"validation {validation:.1f} s), naive validation {naive_all:.1f} s "
        f"({naive['candidate_sets']} sets measured) -> {report['validation_speedup']}x; "
        f"peak RSS engine {engine['peak_rss_mb']:.0f} MB, naive {naive['peak_rss_mb']:.0f} MB; "
        f"max relative difference {report['max_relative_difference']:.1e}"
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
