"""Coverage: every decoder-only causal-LM type of the installed transformers, tiny and random,
loaded through ``LoadedModel.from_model`` so the load-time proof runs on each.

For each ``model_type`` of ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES``: is it a decoder-only text
stack (else why not), can a tiny random model be built offline from its own config class (the
defaults with the sizes shrunk: 4 layers, hidden 64, 4 heads, vocabulary 128, MoE with 4 experts
of which 2 per token; else the builder's one-line error), and then what depthscope does with it:
``proven`` (with the adapter's source: table / discovered), ``refused`` (the one-line refusal) or
``crashed`` (an exception that is not a one-line :class:`DepthscopeError`: a bug).

    python benchmarks/arch_coverage.py --out docs/reference/coverage.json   # the whole sweep
    python benchmarks/arch_coverage.py --types mixtral,olmoe                 # some types, printed
    python docs/make_findings.py --coverage docs/reference/coverage.json  # the docs' table

The sweep takes a few minutes on a CPU (each model is a few hundred thousand weights).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import logging
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

LAYERS = 4
SHRUNK = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "vocab_size": 128,
    "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32,
    "num_experts": 4,
    "num_local_experts": 4,
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
    "n_shared_experts": 1,
    "first_k_dense_replace": 1,
    "n_group": 1,
    "topk_group": 1,
    "rotary_dim": 8,
}
# set even where the default is None (the model derives them otherwise from default sizes)
ALWAYS = (
    "head_dim",
    "num_key_value_heads",
    "n_routed_experts",
    "n_shared_experts",
    "num_experts_per_tok",
)
MAX_WEIGHTS = 100_000_000  # a shrunk model larger than this keeps a default size somewhere
NOT_DECODER_ONLY = {  # types the heuristics below do not catch
    "trocr": "decoder half of an encoder-decoder (cross-attention)",
    "git": "image-text model with a BERT-style encoder stack",
    "xlnet": "permutation LM (two-stream attention), not a left-to-right decoder stack",
    "moshi": "speech/audio token decoder",
    "musicgen": "speech/audio token decoder",
    "musicgen_melody": "speech/audio token decoder",
    "moss_transcribe_diarize": "speech/audio token decoder",
}


def _first_line(exc: BaseException) -> str:
    from depthscope.core.errors import first_line

    text = first_line(exc, 200, fallback="")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def decoder_only_reason(model_type: str) -> str | None:
    """Why a causal-LM type is not a decoder-only text stack (None if it is)."""
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    if model_type in NOT_DECODER_ONLY:
        return NOT_DECODER_ONLY[model_type]
    try:
        default = CONFIG_MAPPING[model_type]()
    except Exception:  # judged when it is built
        return None
    if getattr(default, "is_encoder_decoder", False):
        return "decoder half of an encoder-decoder (cross-attention)"
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "encoder architecture (BERT-style) run as a decoder"
    return None


def shrunk_kwargs(default) -> dict:
    """The config's own defaults with the sizes shrunk; lists and patterns with one entry per
    layer cut to the first ``LAYERS``; sub-configs (a wrapper's text and vision parts) shrunk
    the same way."""
    from transformers import PretrainedConfig

    n_default = _read(default, "num_hidden_layers")
    kwargs = {}
    for key, value in SHRUNK.items():
        if isinstance(getattr(type(default), key, None), property):
            continue  # derived from other sizes (Falcon's head_dim)
        if _read(default, key) is not None or (key in ALWAYS and _has(default, key)):
            kwargs[key] = value
    if _read(default, "qk_rope_head_dim") is not None:  # multi-head latent attention: its own
        kwargs.pop("head_dim", None)  # head sizes, and as many key/value heads as query heads
        if "num_key_value_heads" in kwargs:
            kwargs["num_key_value_heads"] = kwargs["num_attention_heads"]
    if n_default is not None:
        kwargs["num_hidden_layers"] = LAYERS
        for key, value in vars(default).items():
            if isinstance(value, list | str) and len(value) == n_default and n_default > 1:
                kwargs[key] = value[:LAYERS]
    for key, value in vars(default).items():
        if isinstance(value, PretrainedConfig) and shrunk_kwargs(value):
            kwargs[key] = value.to_dict() | shrunk_kwargs(value)
    vocab = kwargs.get("vocab_size")
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        token = _read(default, key)
        if vocab and isinstance(token, int) and token >= vocab:
            kwargs[key] = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}[key]
    return kwargs


def _read(config, key: str):
    """``config.key``, or None where it is missing or only defined per layer (Gemma 4)."""
    try:
        return getattr(config, key, None)
    except Exception:
        return None


def _has(config, key: str) -> bool:
    try:
        return hasattr(config, key)
    except Exception:
        return False


def build(model_type: str):
    """A tiny random fp32 model of ``model_type`` (its causal-LM class, seeded)."""
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM

    config_cls = CONFIG_MAPPING[model_type]
    kwargs = shrunk_kwargs(config_cls())
    config = config_cls(**kwargs)
    with torch.device("meta"):
        shape = AutoModelForCausalLM.from_config(config)
    weights = sum(p.numel() for p in shape.parameters())
    if weights > MAX_WEIGHTS:
        raise ValueError(f"{weights / 1e6:.0f}M weights after shrinking (a size stays default)")
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def check(model_type: str) -> dict:
    """Build ``model_type`` and load it through ``LoadedModel.from_model``; the record."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from depthscope.core.errors import DepthscopeError
    from depthscope.models.loading.loader import LoadedModel

    entry = {"model_type": model_type, "class": MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]}
    reason = decoder_only_reason(model_type)
    if reason:
        return entry | {"decoder_only": False, "status": "not decoder-only", "reason": reason}
    entry["decoder_only"] = True
    started = time.perf_counter()
    try:
        model = build(model_type)
    except Exception as exc:
        return entry | {"built": False, "status": "not built", "reason": _first_line(exc)}
    try:  # the tiny model's own forward pass, without depthscope
        with torch.no_grad():
            model(input_ids=torch.tensor([[3, 5, 7, 11, 13, 17]]), use_cache=False)
    except Exception as exc:
        return entry | {
            "built": False,
            "status": "not built",
            "reason": f"its own forward pass fails: {_first_line(exc)}",
        }
    entry["built"] = True
    entry["weights"] = sum(p.numel() for p in model.parameters())
    try:
        lm = LoadedModel.from_model(model, None, name=f"tiny-{model_type}")
    except DepthscopeError as exc:
        text = str(exc)
        status = "refused" if "\n" not in text else "crashed"
        return entry | {"status": status, "refusal": text, "seconds": _since(started)}
    except Exception as exc:  # a traceback escaping depthscope: a bug the test reports
        return entry | {"status": "crashed", "reason": _first_line(exc), "seconds": _since(started)}
    record = lm.identity["load_check"]
    spec = lm.adapter.spec
    return entry | {
        "status": "proven",
        "source": record["adapter"]["source"],
        "family": spec.family,
        "adapter": {
            "layers": spec.layers,
            "final_norm": spec.final_norm,
            "attn_out": spec.attn_out,
            "mlp_out": spec.mlp_out,
            "mlp_in": spec.mlp_in,
            "parallel": lm.adapter.parallel,
        },
        "residual_identity": record["residual_identity"]["max_rel"],
        "replay_layers": record["replay_layers"]["max_rel"],
        "replay_logits": record["replay_logits"]["max_rel"],
        "copies_sublayers": record["copies_sublayers"],
        "packing": lm.adapter.spec.packing,
        "seconds": _since(started),
    }


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 2)


def summarize(entries: list[dict]) -> dict:
    decoder = [e for e in entries if e.get("decoder_only")]
    built = [e for e in decoder if e.get("built")]
    proven = [e for e in built if e["status"] == "proven"]
    return {
        "types": len(entries),
        "decoder_only": len(decoder),
        "built": len(built),
        "proven": len(proven),
        "proven_table": sum(e.get("source") == "table" for e in proven),
        "proven_discovered": sum(e.get("source") == "discovered" for e in proven),
        "refused": sum(e["status"] == "refused" for e in built),
        "crashed": sum(e["status"] == "crashed" for e in built),
        "proven_fraction": round(len(proven) / len(built), 4) if built else 0.0,
    }


def sweep(types: list[str] | None = None, progress: bool = True) -> dict:
    """Check every causal-LM type (or ``types``); the document ``--out`` writes."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names = sorted(types or MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    entries = []
    logging.getLogger("transformers").setLevel(logging.ERROR)
    for name in names:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            entry = check(name)
        entries.append(entry)
        gc.collect()
        if progress:
            note = entry.get("source") or entry.get("refusal") or entry.get("reason") or ""
            print(f"{name:28s} {entry['status']:16s} {note[:110]}", flush=True)
    return {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "layers": LAYERS,
        "shrunk": SHRUNK,
        "summary": summarize(entries),
        "types": entries,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the JSON document here")
    parser.add_argument("--types", help="comma-separated model types (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    doc = sweep(args.types.split(",") if args.types else None)
    print(json.dumps(doc["summary"]))
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
