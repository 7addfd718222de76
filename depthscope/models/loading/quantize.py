"""Quantised weights through bitsandbytes (``--quantize int8|nf4``), as the paper ran Llama 70B.

The paper loaded its largest model with LLM.int8 (Dettmers et al. 2022); ``nf4`` is QLoRA's 4-bit
NormalFloat (Dettmers et al. 2023). Only the linear layers' weights are quantised: activations,
residuals and every measurement stay in the compute dtype (fp32 by default), so an analysis of a
quantised model differs from fp32 by the quantisation error of the weights alone. Checked before
the weights load, each refusal is one line with what would work instead.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from depthscope.core.errors import DepthscopeError

if TYPE_CHECKING:  # the option's choices are read by --help, which imports no torch
    import torch

KINDS = ("int8", "nf4")


def check_quantize(kind: str | None, spec: str) -> None:
    """Refuse an unknown kind, a missing bitsandbytes and GGUF files (already quantised)."""
    if kind is None:
        return
    if kind not in KINDS:
        raise DepthscopeError(f"--quantize {kind!r}: choose int8 or nf4")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise DepthscopeError(
            f"--quantize {kind} needs bitsandbytes (pip install bitsandbytes); without it, load "
            "the model in --dtype bfloat16 or offload layers with --device-map"
        )
    if str(spec).endswith(".gguf"):
        raise DepthscopeError(
            f"--quantize {kind}: {spec} is a GGUF file, already quantised and dequantised on "
            "load; drop --quantize or give the original Hugging Face checkpoint"
        )


def quantization_config(kind: str, compute_dtype: torch.dtype):
    """transformers' BitsAndBytesConfig for ``kind``, computing in ``compute_dtype``."""
    from transformers import BitsAndBytesConfig  # heavy: imported only when quantising

    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype
    )
