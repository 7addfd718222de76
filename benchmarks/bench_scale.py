"""Cost of the main job's analyses against model size: a size curve and the exponent in depth.

    python benchmarks/bench_scale.py                      # 135M, 270M, 1B shapes + a depth series
    python benchmarks/bench_scale.py --shapes 8B --offload-cap 8   # 8B bf16, CPU memory capped
    python benchmarks/bench_scale.py --quick              # tiny shapes: a smoke run

Every model is a Llama built from a config with random weights (no download: speed and memory do
not depend on trained weights). Each shape runs in a process of its own (its peak RSS is its
own): one prompt of ``--tokens`` random ids through contributions, current and future effects
(whole layers), the logit lens and local effects, each timed. Before running, the process states
depthscope's memory estimate (:func:`depthscope.run.memory_plan.estimate_run`), so the measured peak
checks it. The depth series keeps the 135M shape's width and varies its layer count, so the
fitted exponent of seconds against L isolates depth: the effect sweeps replay ``L(L+1)/2`` layer
passes per token (exponent 2), the logit lens and contributions one pass per layer (exponent 1).
``--shapes 8B`` builds the Llama-3.1-8B shape in bf16, saves it to a temporary folder and loads
it with accelerate offloading what does not fit in ``--offload-cap`` GiB of CPU memory to disk.

Writes benchmarks/results/scale.json (``scale_quick.json`` with ``--quick``) and, unless
``--quick``, docs/figures/scaling_cost.png.
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

import numpy as np
import torch
import transformers as tf

import depthscope as ds

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
FIGURE = ROOT / "docs" / "figures" / "scaling_cost"
ANALYSES = ("contributions", "current-effects", "future-effects", "logit-lens", "local-effects")
SMOLLM2 = dict(  # smollm2-135m's shape
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_attention_heads=9,
    num_key_value_heads=3,
    num_hidden_layers=30,
    tie_word_embeddings=True,
)
SHAPES = {
    "135M": SMOLLM2,
    "270M": dict(  # gemma3-270m's widths in a Llama (its 262k vocabulary included)
        vocab_size=262144,
        hidden_size=640,
        intermediate_size=2048,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        num_hidden_layers=18,
        tie_word_embeddings=True,
    ),
    "1B": dict(  # Llama 3.2 1B
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_attention_heads=32,
        num_key_value_heads=8,
        num_hidden_layers=16,
        tie_word_embeddings=True,
    ),
    "8B": dict(  # Llama 3.1 8B
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_attention_heads=32,
        num_key_value_heads=8,
        num_hidden_layers=32,
    ),
    **{f"135M-L{n}": {**SMOLLM2, "num_hidden_layers": n} for n in (8, 15)},
}
QUICK = {
    "tiny": dict(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=4,
    ),
    **{
        f"tiny-L{n}": dict(
            vocab_size=512,
            hidden_size=64,
            intermediate_size=128,
            num_attention_heads=4,
            num_key_value_heads=2,
            num_hidden_layers=n,
        )
        for n in (2, 8)
    },
}
DEFAULT = ("135M", "135M-L8", "135M-L15", "270M", "1B")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def shaped(shape: dict, dtype: torch.dtype):
    torch.manual_seed(0)
    config = tf.LlamaConfig(max_position_embeddings=4096, **shape)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return tf.LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)


def build(label: str, shape: dict, dtype: torch.dtype, offload_cap: float | None, folder: Path):
    """The shaped model in memory, or (with a cap) loaded with disk offload from a checkpoint
    that another process built and saved, so this process's peak memory is the offloaded run's."""
    if offload_cap is None:
        model = shaped(shape, dtype)
        return ds.LoadedModel.from_model(model.eval().requires_grad_(False), None, name="shaped")
    command = [sys.executable, __file__, "--child", label, "--save", str(folder / "model")]
    command += ["--quick"] if label in QUICK else []
    subprocess.run(command, check=True)
    loaded = tf.AutoModelForCausalLM.from_pretrained(
        folder / "model",
        dtype=dtype,
        device_map="auto",
        max_memory={"cpu": f"{offload_cap}GiB"},
        offload_folder=str(folder / "offload"),
    )
    return ds.LoadedModel.from_model(loaded.eval().requires_grad_(False), None, name="shaped")


def child(label: str, shape: dict, tokens: int, offload_cap: float | None) -> dict:
    """One shape's run (in its own process)."""
    from depthscope.run.memory_plan import estimate_run

    dtype = torch.bfloat16 if offload_cap is not None else torch.float32
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        lm = build(label, shape, dtype, offload_cap, Path(tmp))
        built = time.perf_counter() - started
        ids = torch.randint(
            3, shape["vocab_size"], (1, tokens), generator=torch.Generator().manual_seed(0)
        )
        prompts = ids.tolist()
        estimate = estimate_run(lm.model, [tokens], prompt_batch=1, batch_size=64)
        rss_loaded = peak_rss_gb()
        out = {
            "label": label,
            "shape": shape,
            "dtype": str(dtype).removeprefix("torch."),
            "offload_cap_gib": offload_cap,
            "parameters": sum(p.numel() for p in lm.model.parameters()),
            "layers": shape["num_hidden_layers"],
            "tokens": tokens,
            "build_seconds": round(built, 1),
            "estimate_gb": round(estimate.total / 1e9, 3),
            "peak_rss_after_load_gb": round(rss_loaded, 3),
            "analyses": {},
        }
        ds.analyze(lm, "logit-lens", [prompts[0][:8]])  # warm-up: first-call costs untimed
        for name in ANALYSES:
            settings = (
                {"parts": ("layer",)} if name in ("current-effects", "future-effects") else {}
            )
            began = time.perf_counter()
            ds.analyze(lm, name, prompts, **settings)
            seconds = time.perf_counter() - began
            out["analyses"][name] = {
                "seconds": round(seconds, 3),
                "seconds_per_token": round(seconds / tokens, 5),
            }
        out["peak_rss_gb"] = round(peak_rss_gb(), 3)
    return out


def fitted_exponents(rows: list[dict]) -> dict:
    """Per analysis, the least-squares slope of log seconds against log L over rows of one width."""
    out = {}
    layers = np.log([r["layers"] for r in rows])
    for name in ANALYSES:
        seconds = np.log([r["analyses"][name]["seconds"] for r in rows])
        slope, _ = np.polyfit(layers, seconds, 1)
        out[name] = round(float(slope), 2)
    return out


def draw(doc: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_size, by_depth) = plt.subplots(1, 2, figsize=(10, 4))
    sizes = [r for r in doc["runs"] if r["label"] in doc["size_series"]]
    depths = [r for r in doc["runs"] if r["label"] in doc["depth_series"]]
    for name in ANALYSES:
        by_size.loglog(
            [r["parameters"] for r in sizes],
            [r["analyses"][name]["seconds"] / r.get("tokens", 64) for r in sizes],
            "o-",
            label=name,
        )
        by_depth.loglog(
            [r["layers"] for r in depths],
            [r["analyses"][name]["seconds"] for r in depths],
            "o-",
            label=f"{name} (slope {doc['exponent_in_layers'][name]})",
        )
    by_size.set(xlabel="parameters", ylabel="seconds per token of one prompt")
    offloaded = [r["label"] for r in sizes if r.get("offload_cap_gib")]
    note = f"; {', '.join(offloaded)}: bf16, offloaded" if offloaded else ""
    by_size.set_title(f"by model size (random weights, fp32{note}, 2 CPU cores)", fontsize=9)
    by_depth.set(xlabel="layers (width of the 135M shape)", ylabel="seconds")
    by_depth.set_title("by depth at fixed width: fitted exponent in L", fontsize=9)
    by_size.legend(fontsize=7)
    by_depth.legend(fontsize=7)
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(f"{FIGURE}.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=",".join(DEFAULT), help=f"from {', '.join(SHAPES)}")
    parser.add_argument("--tokens", type=int, default=64, help="tokens of the one prompt")
    parser.add_argument("--offload-cap", type=float, default=None, help="GiB of CPU memory (8B)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes (smoke run)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--save", default=None, help=argparse.SUPPRESS)  # build, save, exit
    args = parser.parse_args()
    table = QUICK if args.quick else SHAPES
    if args.save:
        shaped(table[args.child], torch.bfloat16).save_pretrained(args.save)
        return
    if args.child:
        cap = args.offload_cap if args.child == "8B" else None
        print(json.dumps(child(args.child, table[args.child], args.tokens, cap)))
        return
    labels = list(QUICK) if args.quick else [s.strip() for s in args.shapes.split(",") if s.strip()]
    out = RESULTS / ("scale_quick.json" if args.quick else "scale.json")
    previous = json.loads(out.read_text()) if out.exists() and not args.quick else {}
    runs = {r["label"]: r for r in previous.get("runs", [])}
    for label in labels:
        command = [sys.executable, __file__, "--child", label, "--tokens", str(args.tokens)]
        command += ["--quick"] if args.quick else []
        if args.offload_cap is not None:
            command += ["--offload-cap", str(args.offload_cap)]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        runs[label] = json.loads(done.stdout.strip().splitlines()[-1])
        r = runs[label]
        r["tokens"] = args.tokens
        print(
            f"{label}: {r['parameters'] / 1e6:.0f}M parameters, {r['layers']} layers: "
            + ", ".join(f"{n} {v['seconds']:.1f} s" for n, v in r["analyses"].items())
            + f"; peak RSS {r['peak_rss_gb']:.2f} GB (estimated {r['estimate_gb']:.2f} GB)"
        )
    base = "tiny" if args.quick else "135M"
    depth_series = [label for label in runs if label == base or label.startswith(f"{base}-L")]
    depth_series.sort(key=lambda label: runs[label]["layers"])
    doc = {
        "tokens": sorted({r.get("tokens", args.tokens) for r in runs.values()}),
        "weights": "random (built from configs; speed and memory do not depend on the values)",
        "runs": list(runs.values()),
        "size_series": [label for label in runs if label not in depth_series or label == base],
        "depth_series": depth_series,
        "exponent_in_layers": fitted_exponents([runs[label] for label in depth_series]),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"exponent of seconds in L at fixed width: {doc['exponent_in_layers']}")
    if not args.quick:
        draw(doc)
        print(f"figure: {FIGURE}.png")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
