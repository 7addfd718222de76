"""What a tuned lens's training cost, against the unembedding FLOP bound, from its own record.

    depthscope lens train smollm2-135m --out runs/lens/smollm2-135m   # the measured run
    python benchmarks/bench_lens.py runs/lens/smollm2-135m [more lens folders]

Training is dominated by the readout of every boundary: per token and boundary the forward
unembedding (``2·d·V`` FLOPs) and its backward (twice that), plus the translator (``6·d²``). The
script divides that work by this machine's measured fp32 matmul peak to get the time a perfect
implementation would need, and compares it with the seconds ``lens.json`` recorded; it also
states the held-out result (boundaries where the tuned lens's KL is below the logit lens's).
Writes ``benchmarks/results/lens.json``. Run it alone: it measures the machine's peak.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from machine import matmul_peak  # benchmarks/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "lens.json"


def summarise(folder: Path, peak: float, vocab: dict[str, int]) -> dict:
    record = json.loads((folder / "lens.json").read_text())
    model = record["model"]
    d, layers = model["d_model"], model["n_layers"]
    v = vocab.get(model["name"])
    held = record["heldout"]["kl_lens_final"]
    logit, tuned = np.asarray(held["logit"]), np.asarray(held["tuned"])
    doc = {
        "model": model["name"],
        "tokens": record["tokens"],
        "seconds": record["seconds"],
        "tokens_per_s": round(record["tokens"] / record["seconds"], 2),
        "heldout_tokens": record["heldout"]["tokens"],
        "tuned_below_logit": f"{int((tuned < logit).sum())} of {logit.size} boundaries",
        "mean_heldout_kl": {
            "logit": round(float(logit.mean()), 3),
            "tuned": round(float(tuned.mean()), 3),
        },
    }
    if v:
        flops = record["tokens"] * layers * (3 * 2 * d * v + 6 * d * d)
        bound = flops / peak
        doc.update(
            {
                "vocab": v,
                "flop_bound_s": round(bound, 1),
                "ratio_to_bound": round(record["seconds"] / bound, 2),
            }
        )
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("lenses", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    peak = matmul_peak()
    vocab = {"smollm2-135m": 49152, "gemma3-270m": 262144}
    doc = {
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "threads": torch.get_num_threads(),
        "lenses": [summarise(folder, peak, vocab) for folder in args.lenses],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    for entry in doc["lenses"]:
        print(json.dumps(entry))
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
