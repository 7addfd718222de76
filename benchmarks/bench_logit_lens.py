"""The logit lens against its FLOP bound, streamed over vocabulary tiles vs materialised, in one run.

    python benchmarks/bench_logit_lens.py                 # smollm2-135m, 10 and 40 prompts
    python benchmarks/bench_logit_lens.py --prompts 10
    python benchmarks/bench_logit_lens.py --quick         # tiny random model (smoke)

The bound is the unembedding's matmul alone (``2 · L · tokens · d · V`` FLOPs at this machine's
measured fp32 matmul peak). Each prompt is traced once, outside the timing; then the analysis's
lens (``lens_prompt``, streamed over vocabulary tiles) and the lens as it ran before tiling —
log-softmax of each ``[rows, V]`` block, then KL and top-k read from it (``lens_metrics``) — are
timed on the same residuals and blocks. Writes
``benchmarks/results/logit_lens.json`` (``logit_lens_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from machine import best_of, matmul_peak  # noqa: E402

from depthscope.analyses.logit_lens import lens_metrics, lens_prompt  # noqa: E402
from depthscope.data.prompts import PromptSet  # noqa: E402
from depthscope.data.sources import load_examples  # noqa: E402
from depthscope.engine.batch import pad_batch  # noqa: E402
from depthscope.engine.outputs import CHUNK_ELEMENTS, log_probs, vocab_size  # noqa: E402
from depthscope.engine.trace import trace  # noqa: E402
from depthscope.models.loading.loader import load_model  # noqa: E402

K = 5


@torch.no_grad()
def residuals(lm, prompts: PromptSet) -> list[torch.Tensor]:
    """Each prompt's clean residuals ``[L+1, T, d]``, traced once, outside the timing."""
    return [
        trace(lm.adapter, pad_batch([list(ids)], 0)).resid[:, 0, : len(ids)]
        for ids in prompts.sequences
    ]


@torch.no_grad()
def streamed(lm, resids: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per prompt the mean KL per boundary, as the analysis computes it (``lens_prompt``)."""
    return [lens_prompt(lm.adapter, r, K, "lens||final").kl_sum / r.shape[1] for r in resids]


@torch.no_grad()
def materialised(lm, resids: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per prompt the mean KL per boundary, by the pre-tiling computation."""
    adapter, sums = lm.adapter, []
    budget = max(1, CHUNK_ELEMENTS // vocab_size(adapter))
    for resid in resids:
        n_layers, length = resid.shape[0] - 1, resid.shape[1]
        positions = min(length, budget)
        per_block = max(1, budget // positions)
        kl_sum = torch.zeros(n_layers, dtype=torch.float64)
        for start in range(0, length, positions):
            stop = min(start + positions, length)
            final = log_probs(adapter, resid[n_layers, start:stop])
            final_topk = final.topk(K, dim=-1).indices
            for first in range(0, n_layers, per_block):
                last = min(first + per_block, n_layers)
                block = resid[first:last, start:stop]
                lens = log_probs(adapter, block.reshape(-1, block.shape[-1])).view(
                    last - first, stop - start, -1
                )
                kl, _ = lens_metrics(
                    lens, final.unsqueeze(0), final_topk.unsqueeze(0), K, "lens||final"
                )
                kl_sum[first:last] += kl.sum(-1).double()
        sums.append(kl_sum / length)
    return sums


def workload(lm, prompts: PromptSet, peak: float, repeats: int) -> dict:
    tokens = sum(len(s) for s in prompts.sequences)
    vocab = vocab_size(lm.adapter)
    bound = 2 * lm.n_layers * tokens * lm.d_model * vocab / peak
    resids = residuals(lm, prompts)
    lens_s, got = best_of(lambda: streamed(lm, resids), repeats)
    naive_s, expected = best_of(lambda: materialised(lm, resids), repeats)
    return {
        "prompts": len(prompts),
        "tokens": tokens,
        "vocab": vocab,
        "flop_bound_s": round(bound, 3),
        "streamed_lens_s": round(lens_s, 3),
        "materialised_lens_s": round(naive_s, 3),
        "streamed_ratio_to_bound": round(lens_s / bound, 3),
        "materialised_ratio_to_bound": round(naive_s / bound, 3),
        "speedup": round(naive_s / lens_s, 3),
        "max_abs_diff_kl": float((torch.stack(got) - torch.stack(expected)).abs().max()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", default="10,40", help="comma-separated prompt counts")
    parser.add_argument("--repeats", type=int, default=2, help="best of N (default: 2)")
    parser.add_argument("--quick", action="store_true", help="tiny random model, 2 prompts")
    args = parser.parse_args(argv)
    if args.quick:
        from tiny_models import save_tiny_model_dir

        model = str(save_tiny_model_dir(Path(tempfile.mkdtemp())))
        counts, name = [2], "tiny random llama"
    else:
        model, counts, name = args.model, [int(n) for n in args.prompts.split(",")], args.model
    lm = load_model(model, progress=False)
    peak = matmul_peak()
    report: dict = {
        "model": name,
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "data": "builtin:arith-words",
        "workloads": [],
    }
    for n in counts:
        prompts = PromptSet.from_examples(lm.tokenizer, load_examples("builtin:arith-words", n))
        found = workload(lm, prompts, peak, args.repeats)
        report["workloads"].append(found)
        print(
            f"{name}, {n} prompts, {found['tokens']} tokens: streamed {found['streamed_lens_s']} s "
            f"({found['streamed_ratio_to_bound']}x the bound {found['flop_bound_s']} s), "
            f"materialised {found['materialised_lens_s']} s "
            f"({found['materialised_ratio_to_bound']}x); {found['speedup']}x; "
            f"max |dKL| {found['max_abs_diff_kl']:.1e}",
            flush=True,
        )
    out = (
        ROOT
        / "benchmarks"
        / "results"
        / ("logit_lens_quick.json" if args.quick else "logit_lens.json")
    )
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
