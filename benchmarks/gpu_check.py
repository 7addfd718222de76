"""One command for a GPU machine: correctness against CPU fp32, speed and memory at 1B/8B shapes.

    python benchmarks/gpu_check.py                 # on one H100/H200: under 8 minutes
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu.json   # tiny shapes on the CPU (CI)

Needs only PyTorch and depthscope (no download: every model is built from a config with random
weights, which speed and memory do not care about). It checks

1. **equality**: future effects and the logit lens of tiny models of three families (Llama,
   Gemma 3, GPT-NeoX), on the device in bf16 against the CPU in fp32, within bf16 tolerance;
2. **the main job at scale**: contributions, current and future effects, the logit lens and local
   effects on Llama-3.2-1B- and Llama-3.1-8B-shaped models in bf16: tokens/s per analysis, the
   future-effect sweep's fraction of the device's measured bf16 matmul peak, peak device memory;
3. **batches**: ``--batch-size auto`` (what :func:`depthscope.run.memory_plan.auto_batch_size` picks)
   and the out-of-memory retry (the device limited to a fraction of its memory, results unchanged);
4. **int8**: with bitsandbytes present, the logit lens of a tiny Llama with LLM.int8 weights on
   the device (fp32 compute) against the CPU in fp32, within ``INT8_TOLERANCE`` (what
   ``--quantize int8`` loads); without it, said so.

Results go to ``benchmarks/results/gpu.json`` (``--out`` to change), naming the device. The dry run
does all of it with tiny shapes on the CPU (bf16 on the CPU against fp32), so CI proves the script
runs; its numbers say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import transformers as tf
from machine import matmul_peak  # benchmarks/machine.py, beside this script
from torch.utils.flop_counter import FlopCounterMode

import depthscope as ds
from depthscope.engine.adaptive_batch import AdaptiveBatch
from depthscope.run.memory_plan import auto_batch_size

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu.json"
ANALYSES = ("contributions", "current-effects", "future-effects", "logit-lens", "local-effects")
BF16_TOLERANCE = 0.05  # max |bf16 − fp32| relative to the fp32 profile's scale

TINY = dict(
    vocab_size=97,
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    num_hidden_layers=4,
    max_position_embeddings=256,
)
SHAPES = {  # the paper's model family at two sizes (Llama 3.2 1B, Llama 3.1 8B), random weights
    "1B": dict(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_attention_heads=32,
        num_key_value_heads=8,
        num_hidden_layers=16,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    ),
    "8B": dict(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_attention_heads=32,
        num_key_value_heads=8,
        num_hidden_layers=32,
        max_position_embeddings=4096,
    ),
}
DRY_SHAPES = {
    "1B": {**TINY, "num_hidden_layers": 6, "vocab_size": 512},
    "8B": {**TINY, "hidden_size": 96, "num_hidden_layers": 8, "vocab_size": 512},
}


def family_model(family: str, device: str, dtype: torch.dtype, seed: int = 0):
    """A tiny random model of ``family`` on ``device`` in ``dtype`` (same weights for a seed)."""
    torch.manual_seed(seed)
    if family == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**TINY))
    elif family == "gemma3":
        config = tf.Gemma3TextConfig(**TINY, head_dim=16, sliding_window=8)
        model = tf.Gemma3ForCausalLM(config)
    else:
        neox = {k: v for k, v in TINY.items() if k != "num_key_value_heads"}
        model = tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(**neox))
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return ds.LoadedModel.from_model(model, None, name=f"tiny-{family}")


def prompts(vocab: int, lengths: list[int], seed: int = 0) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=generator).tolist() for n in lengths]


def relative_error(got, want) -> float:
    got, want = (
        torch.as_tensor(got, dtype=torch.float64),
        torch.as_tensor(want, dtype=torch.float64),
    )
    finite = torch.isfinite(want)
    scale = float(want[finite].abs().max()) or 1.0
    return float((got[finite] - want[finite]).abs().max()) / scale


def check_equality(device: str, dtype: torch.dtype) -> dict:
    """Tiny models of three families: ``device``/``dtype`` against the CPU in fp32."""
    ids = prompts(TINY["vocab_size"], [24, 17])
    out = {}
    for family in ("llama", "gemma3", "gpt_neox"):
        reference = family_model(family, "cpu", torch.float32)
        tested = family_model(family, device, dtype)
        errors = {}
        for name, keys in (
            ("future-effects", ("effect", "output_change")),
            ("logit-lens", ("kl",)),
        ):
            want = (
                ds.analyze(reference, name, ids, parts=("layer",))
                if name != "logit-lens"
                else ds.analyze(reference, name, ids)
            )
            got = (
                ds.analyze(tested, name, ids, parts=("layer",))
                if name != "logit-lens"
                else ds.analyze(tested, name, ids)
            )
            for key in keys:
                errors[f"{name}.{key}"] = relative_error(got.data[key], want.data[key])
        out[family] = {"max_relative_error": errors, "ok": max(errors.values()) <= BF16_TOLERANCE}
    return out


INT8_TOLERANCE = 0.1  # as tests/models/test_quantize.py holds on the CPU


def check_int8(device: str) -> dict:
    """The logit lens of a tiny Llama loaded in int8 on ``device`` against fp32 on the CPU."""
    import tempfile

    from depthscope.models.loading.quantize import quantization_config

    reference = family_model("llama", "cpu", torch.float32)
    ids = prompts(TINY["vocab_size"], [24, 17])
    with tempfile.TemporaryDirectory() as folder:
        reference.model.save_pretrained(folder)
        model = tf.AutoModelForCausalLM.from_pretrained(
            folder,
            dtype=torch.float32,
            device_map={"": device},
            quantization_config=quantization_config("int8", torch.float32),
        )
    quantized = ds.LoadedModel.from_model(model.eval().requires_grad_(False), None, name="int8")
    want = ds.analyze(reference, "logit-lens", ids).data["kl"]
    got = ds.analyze(quantized, "logit-lens", ids).data["kl"]
    error = relative_error(got, want)
    return {"logit_lens_kl_relative_error": error, "ok": 0 < error <= INT8_TOLERANCE}


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def shaped_model(shape: dict, device: str, dtype: torch.dtype):
    """A Llama of ``shape`` with random weights, built directly on the device in ``dtype``."""
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = tf.LlamaForCausalLM(tf.LlamaConfig(**shape))
    finally:
        torch.set_default_dtype(previous)
    return ds.LoadedModel.from_model(model.eval().requires_grad_(False), None, name="shaped")


def check_scale(
    label: str, shape: dict, device: str, dtype: torch.dtype, peak: float, n: int
) -> dict:
    """The main job's analyses on one shape: seconds, tokens/s, sweep efficiency, peak memory."""
    lm = shaped_model(shape, device, dtype)
    ids = prompts(shape["vocab_size"], [n, n])
    tokens = sum(len(p) for p in ids)
    batch = auto_batch_size(lm.model, n) if device.startswith("cuda") else 64
    out = {
        "shape": shape,
        "parameters": sum(p.numel() for p in lm.model.parameters()),
        "tokens": tokens,
        "batch_size_auto": batch,
        "analyses": {},
    }
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for name in ANALYSES:
        settings = (
            {"parts": ("layer",)} if name.endswith("effects") and name != "local-effects" else {}
        )
        synchronize(device)
        start = time.perf_counter()
        if name == "future-effects":
            counter = FlopCounterMode(display=False)
            with counter:
                ds.analyze(lm, name, ids, batch_size=batch, **settings)
            flops = counter.get_total_flops()
        else:
            ds.analyze(lm, name, ids, batch_size=batch, **settings)
            flops = None
        synchronize(device)
        seconds = time.perf_counter() - start
        entry = {"seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 2)}
        if flops:
            entry["fraction_of_peak"] = round(flops / seconds / peak, 3)
            entry["gflop"] = round(flops / 1e9, 1)
        out["analyses"][name] = entry
    if device.startswith("cuda"):
        out["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    del lm
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def check_out_of_memory_retry(device: str, dtype: torch.dtype) -> dict:
    """Results with a device too small for the requested batch equal the unconstrained ones."""
    lm = family_model("llama", device, dtype)
    ids = prompts(TINY["vocab_size"], [32])
    want = ds.analyze(lm, "future-effects", ids, parts=("layer",), batch_size=64)
    original = AdaptiveBatch.run
    limit = {"rows": 3, "refused": 0}

    def small_device(self, total, step):  # a device that fits at most 3 replay rows at once
        def guarded(start, stop):
            if stop - start > limit["rows"]:
                limit["refused"] += 1
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return step(start, stop)

        return original(self, total, guarded)

    AdaptiveBatch.run = small_device
    try:
        got = ds.analyze(lm, "future-effects", ids, parts=("layer",), batch_size=64)
    finally:
        AdaptiveBatch.run = original
    error = relative_error(got.data["effect"], want.data["effect"])
    return {
        "simulated_rows_limit": limit["rows"],
        "chunks_refused": limit["refused"],
        "max_relative_error": error,
        "ok": error < 1e-3 and limit["refused"] > 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--tokens", type=int, default=128, help="tokens per prompt at scale")
    args = parser.parse_args(argv)
    device = "cpu" if args.dry_run else "cuda"
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; run with --dry-run on a CPU", file=sys.stderr)
        return 2
    dtype = torch.bfloat16
    started = time.perf_counter()
    name = "cpu (dry run)" if args.dry_run else torch.cuda.get_device_name(0)
    peak = matmul_peak(256 if args.dry_run else 8192, 5, device, dtype)
    doc = {
        "device": name,
        "dry_run": args.dry_run,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "dtype": "bfloat16",
        "bf16_matmul_peak_tflops": round(peak / 1e12, 4),
        "equality": check_equality(device, dtype),
        "out_of_memory_retry": check_out_of_memory_retry(device, dtype),
        "scale": {},
    }
    shapes = DRY_SHAPES if args.dry_run else SHAPES
    tokens = 24 if args.dry_run else args.tokens
    for label, shape in shapes.items():
        doc["scale"][label] = check_scale(label, shape, device, dtype, peak, tokens)
        print(f"{label}: {json.dumps(doc['scale'][label]['analyses'])}")
    try:
        import bitsandbytes  # noqa: F401  (optional: checked when present)

        doc["int8"] = check_int8(device)
    except ImportError:
        doc["int8"] = {"skipped": "bitsandbytes not installed (pip install bitsandbytes)"}
    doc["seconds"] = round(time.perf_counter() - started, 1)
    doc["ok"] = (
        all(v["ok"] for v in doc["equality"].values())
        and doc["out_of_memory_retry"]["ok"]
        and doc["int8"].get("ok", True)
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    for family, entry in doc["equality"].items():
        print(
            f"equality {family}: {'ok' if entry['ok'] else 'FAILED'} {entry['max_relative_error']}"
        )
    print(f"out-of-memory retry: {'ok' if doc['out_of_memory_retry']['ok'] else 'FAILED'}")
    print(f"int8: {doc['int8']}")
    print(f"{name}: done in {doc['seconds']} s; results in {args.out}")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
