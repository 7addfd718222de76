"""Will the weights fit? Checked from the config before a byte of them loads.

A 70B model in fp32 on a 24 GB machine would otherwise be killed by the kernel minutes into its
load, with no message. The parameter count comes from the model built on PyTorch's ``meta``
device (shapes, no storage); the bytes from the dtype or the quantisation; the memory from what
the system (CPU) or the GPU can still give. A refusal names the options that would fit.
"""

from __future__ import annotations

import torch

from depthscope.core.errors import DepthscopeError

GB = 1e9
HEADROOM = 1.1  # weights plus the loader's transient copies
BYTES_PER_PARAMETER = {"int8": 1.0, "nf4": 0.5}  # linear weights; the rest is small beside them


def parameter_count(config) -> int | None:
    """Parameters of the model ``config`` describes (None when it cannot be built on ``meta``)."""
    from transformers import AutoModelForCausalLM  # heavy: imported only when a model is loaded

    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception:  # an unknown or custom architecture: the load itself will say more
        return None
    return sum(p.numel() for p in model.parameters())


def free_bytes(device: str) -> int | None:
    """What ``device`` can still hold: free GPU memory, or the RAM available to this process."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return None
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    if device == "cpu":
        import psutil  # a dependency of accelerate

        return int(psutil.virtual_memory().available)
    return None


def weights_bytes(parameters: int, dtype: torch.dtype, quantize: str | None) -> float:
    per = BYTES_PER_PARAMETER.get(quantize, torch.empty((), dtype=dtype).element_size())
    return parameters * per


def check_weights_fit(
    config, dtype: torch.dtype, device: str, quantize: str | None, spec: str, available=None
) -> None:
    """Refuse, before loading, weights that cannot fit on ``device`` (one line, what would)."""
    parameters = parameter_count(config)
    free = free_bytes(device) if available is None else available
    if not parameters or not free:
        return
    need = weights_bytes(parameters, dtype, quantize)
    if need * HEADROOM <= free:
        return
    options = []
    for label, other_dtype, other_quantize in (
        ("--dtype bfloat16", torch.bfloat16, None),
        ("--quantize int8", dtype, "int8"),
        ("--quantize nf4", dtype, "nf4"),
    ):
        smaller = weights_bytes(parameters, other_dtype, other_quantize)
        if smaller < need and smaller * HEADROOM <= free:
            options.append(f"{label} ({smaller / GB:.1f} GB)")
    options.append("--device-map auto (offloads what does not fit to CPU memory or disk)")
    kind = f"{quantize} weights" if quantize else str(dtype).removeprefix("torch.")
    raise DepthscopeError(
        f"{spec} has {parameters / 1e9:.2f} B parameters: {need / GB:.1f} GB in {kind}, but "
        f"{device} has {free / GB:.1f} GB free; load it with " + " or ".join(options)
    )
