"""depthscope beside the tools its users would otherwise use: nnsight and TransformerLens.

    pip install -e ".[peers]"          # nnsight and transformer_lens (never needed by depthscope)
    python benchmarks/bench_peers.py [--model smollm2-135m] [--prompts 10]

The same two analyses are written the way a user of each peer would write them, run on the same
model and prompts in the same process, timed one after the other (each after one untimed warm-up
call), and their numbers compared with depthscope's:

- **logit lens** over the prompts (the paper's code, written with nnsight: save every layer's
  input in one trace, apply the final norm and the unembedding, KL to the output): per layer the
  token-mean ``KL(lens ‖ final)`` of each prompt, averaged over prompts, and the top-5 overlap;
- **future effects of skipping each layer** on one prompt: for every layer ``s`` and each of
  depthscope's split points ``t``, the layer's output at positions ``[1, t)`` replaced by its input
  (the layer skipped on past tokens), and the change of the output distribution at ``[t, T)``,
  ``max ‖P̄ − P‖₂`` over positions and split points: one forward pass per (layer, split).

Results go to ``benchmarks/results/peers.json`` and a table in benchmarks/README.md. Run it alone
on the machine: the ratios are measured in one run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import time
from pathlib import Path

import nnsight
import torch
import torch.nn.functional as F
from machine import matmul_peak  # benchmarks/machine.py, beside this script
from nnsight import LanguageModel
from transformer_lens import TransformerBridge
from transformers import AutoModelForCausalLM, AutoTokenizer

import depthscope as ds
from depthscope.data.prompts import PromptSet
from depthscope.data.sources import load_examples
from depthscope.models.loading.zoo import fetch_builtin

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "peers.json"
K = 5


def timed(fn):
    """Seconds of one call, after an untimed warm-up call: first-call costs (kernel selection,
    lazy imports, graph tracing) are not what a user running many prompts pays."""
    fn()
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def lens_from_states(states: list[torch.Tensor], final_logits: torch.Tensor, readout) -> tuple:
    """Per layer: token-mean KL(lens ‖ final) and top-5 overlap of one prompt (``states[l]``:
    the input of layer ``l``, ``[T, d]``)."""
    final = F.log_softmax(final_logits.float(), -1)
    final_top = final.topk(K, -1).indices
    kl, overlap = [], []
    for h in states:
        lens = F.log_softmax(readout(h).float(), -1)
        kl.append(float((lens.exp() * (lens - final)).sum(-1).mean()))
        top = lens.topk(K, -1).indices
        overlap.append(
            float((top[:, :, None] == final_top[:, None, :]).any(-1).sum(-1).float().mean() / K)
        )
    return kl, overlap


def mean_over_prompts(rows: list[list[float]]) -> list[float]:
    return torch.tensor(rows, dtype=torch.float64).mean(0).tolist()


# ---------------------------------------------------------------- nnsight


def nnsight_lens(model: LanguageModel, hf, prompts: list[list[int]]) -> dict:
    kls, overlaps = [], []
    for ids in prompts:
        with torch.no_grad(), model.trace(torch.tensor([ids])):
            states = nnsight.save([])
            for layer in model.model.layers:
                states.append(layer.input)
            logits = model.lm_head.output.save()
        readout = lambda h: hf.lm_head(hf.model.norm(h))  # noqa: E731
        kl, overlap = lens_from_states([s[0] for s in states], logits[0], readout)
        kls.append(kl)
        overlaps.append(overlap)
    return {"kl": mean_over_prompts(kls), "topk_overlap": mean_over_prompts(overlaps)}


def nnsight_future_effects(model: LanguageModel, ids: list[int], splits: list[int]) -> list[float]:
    with torch.no_grad(), model.trace(torch.tensor([ids])):
        clean = model.lm_head.output.save()
    clean_p = F.softmax(clean[0].float(), -1)
    changes = []
    for s in range(len(model.model.layers)):
        worst = 0.0
        for t in splits:
            with torch.no_grad(), model.trace(torch.tensor([ids])):
                layer = model.model.layers[s]
                layer.output[:, 1:t] = layer.input[:, 1:t]  # skipped on past tokens only
                edited = model.lm_head.output.save()
            p = F.softmax(edited[0, t:].float(), -1)
            worst = max(worst, float((p - clean_p[t:]).norm(dim=-1).max()))
        changes.append(worst)
    return changes


# ---------------------------------------------------------------- TransformerLens


def lens_lens(bridge: TransformerBridge, prompts: list[list[int]]) -> dict:
    kls, overlaps = [], []
    layers = bridge.cfg.n_layers
    for ids in prompts:
        with torch.no_grad():
            logits, cache = bridge.run_with_cache(
                torch.tensor([ids]), names_filter=lambda name: name.endswith("hook_resid_pre")
            )
            states = [cache[f"blocks.{layer}.hook_resid_pre"][0] for layer in range(layers)]
            kl, overlap = lens_from_states(
                states, logits[0], lambda h: bridge.unembed(bridge.ln_final(h[None]))[0]
            )
        kls.append(kl)
        overlaps.append(overlap)
    return {"kl": mean_over_prompts(kls), "topk_overlap": mean_over_prompts(overlaps)}


def lens_future_effects(
    bridge: TransformerBridge, ids: list[int], splits: list[int]
) -> list[float]:
    tokens = torch.tensor([ids])
    with torch.no_grad():
        clean_p = F.softmax(bridge(tokens)[0].float(), -1)
    changes = []
    for s in range(bridge.cfg.n_layers):
        worst = 0.0
        for t in splits:
            kept = {}

            def keep_input(resid, hook, kept=kept):
                kept["input"] = resid.clone()
                return resid

            def skip_past(resid, hook, t=t, kept=kept):
                resid[:, 1:t] = kept["input"][:, 1:t]
                return resid

            hooks = [
                (f"blocks.{s}.hook_resid_pre", keep_input),
                (f"blocks.{s}.hook_resid_post", skip_past),
            ]
            with torch.no_grad():
                logits = bridge.run_with_hooks(tokens, fwd_hooks=hooks)
            p = F.softmax(logits[0, t:].float(), -1)
            worst = max(worst, float((p - clean_p[t:]).norm(dim=-1).max()))
        changes.append(worst)
    return changes


def max_difference(a, b) -> float:
    return float(
        (torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64))
        .abs()
        .max()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    folder = fetch_builtin(args.model, progress=False)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    lm = ds.load_model(args.model, progress=False)
    examples = load_examples("builtin:arith-words", args.prompts)
    prompts = PromptSet.from_examples(lm.tokenizer, examples).sequences
    tokens = sum(len(p) for p in prompts)
    peak = matmul_peak()
    d, vocab, layers = lm.d_model, lm.adapter.unembed_module.weight.shape[0], lm.n_layers
    bound = tokens * layers * 2 * d * vocab / peak  # the lens's unembeddings, nothing else

    doc: dict = {
        "model": args.model,
        "machine": {"cpu": platform.machine(), "threads": torch.get_num_threads()},
        "versions": {
            "torch": torch.__version__,
            "nnsight": nnsight.__version__,
            "transformer_lens": importlib.metadata.version("transformer_lens"),
        },
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "timing": "each tool: one untimed warm-up call, then one timed call",
        "logit_lens": {"prompts": len(prompts), "tokens": tokens, "flop_bound_s": round(bound, 2)},
    }

    # logit lens: depthscope, nnsight, TransformerLens
    seconds, result = timed(lambda: ds.analyze(lm, "logit-lens", prompts))
    ours = {"kl": result.data["kl"].tolist(), "topk_overlap": result.data["topk_overlap"].tolist()}
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    model = LanguageModel(hf, tokenizer=tokenizer)
    nn_seconds, nn_lens = timed(lambda: nnsight_lens(model, hf, prompts))
    bridge = TransformerBridge.boot_transformers(str(folder), device="cpu", tokenizer=tokenizer)
    tl_seconds, tl_lens = timed(lambda: lens_lens(bridge, prompts))
    doc["logit_lens"].update(
        {
            "depthscope_s": round(seconds, 2),
            "depthscope_ratio_to_bound": round(seconds / bound, 2),
            "nnsight_s": round(nn_seconds, 2),
            "transformer_lens_s": round(tl_seconds, 2),
            "speedup_vs_nnsight": round(nn_seconds / seconds, 2),
            "speedup_vs_transformer_lens": round(tl_seconds / seconds, 2),
            "max_abs_diff_kl": {
                "nnsight": max_difference(nn_lens["kl"], ours["kl"]),
                "transformer_lens": max_difference(tl_lens["kl"], ours["kl"]),
            },
            "max_abs_diff_overlap": {
                "nnsight": max_difference(nn_lens["topk_overlap"], ours["topk_overlap"]),
                "transformer_lens": max_difference(tl_lens["topk_overlap"], ours["topk_overlap"]),
            },
        }
    )

    # future effects of skipping each layer, one prompt
    ids = prompts[0]
    seconds, result = timed(lambda: ds.analyze(lm, "future-effects", [ids], parts=("layer",)))
    splits = [int(t) for t in result.data["split_points"][0]]
    ours = result.data["output_change"].tolist()
    nn_seconds, nn_changes = timed(lambda: nnsight_future_effects(model, ids, splits))
    tl_seconds, tl_changes = timed(lambda: lens_future_effects(bridge, ids, splits))
    doc["future_effects"] = {
        "prompt_tokens": len(ids),
        "split_points": splits,
        "forward_passes_of_the_peers": layers * len(splits),
        "depthscope_s": round(seconds, 2),
        "nnsight_s": round(nn_seconds, 2),
        "transformer_lens_s": round(tl_seconds, 2),
        "speedup_vs_nnsight": round(nn_seconds / seconds, 2),
        "speedup_vs_transformer_lens": round(tl_seconds / seconds, 2),
        "max_abs_diff_output_change": {
            "nnsight": max_difference(nn_changes, ours),
            "transformer_lens": max_difference(tl_changes, ours),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
