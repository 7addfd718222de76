"""A run's memory before it starts: ``--batch-size auto`` and the estimate printed before a CPU run.

- :func:`auto_batch_size` starts from what fits the free GPU memory (``torch.cuda.mem_get_info``),
  using :func:`row_bytes`, the memory one replay row needs through one layer.
- :func:`estimate_run` adds the runtime, weights, the clean trace of the largest prompt batch, the
  replay batch and the output-distribution blocks, to print before a long CPU run;
  ``benchmarks/bench_scale.py`` sets it beside the measured peak RSS of each model shape.

The estimates are upper-bound style sums of the tensors the engine and the model hold at once;
they do not model the allocator's caching, so leave headroom (``fraction``). The replay batch
itself halves on out-of-memory during the run (:mod:`depthscope.engine.adaptive_batch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from depthscope.core.errors import DepthscopeError
from depthscope.engine.outputs import CHUNK_ELEMENTS  # floats per [positions, vocab] block
from depthscope.models.adapters import text_config
from depthscope.models.devices import home_device

# Python, PyTorch, transformers and depthscope themselves: the peak RSS after importing the CLI
# (0.42 GB on CPU with torch 2.13 and transformers 5.25).
RUNTIME_BYTES = 400 * 10**6
MAX_AUTO_BATCH = 1024
CPU_DEFAULT_BATCH = 64
GB = 1e9


@dataclass(frozen=True)
class ModelShape:
    """The sizes that set activation memory."""

    n_layers: int
    d_model: int
    d_ff: int
    n_heads: int
    vocab: int
    dtype_bytes: int

    @classmethod
    def of(cls, model: torch.nn.Module, dtype: torch.dtype | None = None) -> ModelShape:
        config = text_config(model.config)
        d_model = int(_first(config, ("hidden_size", "n_embd", "d_model")))
        d_ff = _first(config, ("intermediate_size", "n_inner", "ffn_dim"), None) or 4 * d_model
        heads = int(_first(config, ("num_attention_heads", "n_head"), 1))
        if dtype is None:
            dtype = model.get_input_embeddings().weight.dtype
        return cls(
            n_layers=int(_first(config, ("num_hidden_layers", "n_layer"))),
            d_model=d_model,
            d_ff=int(d_ff),
            n_heads=heads,
            vocab=int(config.vocab_size),
            dtype_bytes=torch.empty((), dtype=dtype).element_size(),
        )


def _first(config: object, names: Sequence[str], default: object = ...) -> object:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    if default is ...:
        raise DepthscopeError(
            f"model config has none of {', '.join(names)}, so batches cannot be sized; give the "
            f"config transformers' standard name {names[0]} (e.g. through its attribute_map)"
        )
    return default


def row_bytes(shape: ModelShape, seq_len: int) -> int:
    """Peak bytes one replay row of ``seq_len`` tokens needs while one layer runs.

    In the model's dtype: residual in/out and the sublayer values kept for measuring (~4 d),
    q/k/v and attention output (~4 d), the MLP's gate/up/activation (3 d_ff), attention scores
    (heads × T; materialised by eager and math attention). In fp32: the engine's measurement
    temporaries (~4 d).
    """
    per_token = shape.dtype_bytes * (8 * shape.d_model + 3 * shape.d_ff + shape.n_heads * seq_len)
    per_token += 4 * 4 * shape.d_model
    return per_token * seq_len


def logit_bytes(shape: ModelShape, seq_len: int) -> int:
    """Output distributions: one prompt's clean probabilities plus one working block (fp32)."""
    return 4 * (seq_len * shape.vocab + 3 * CHUNK_ELEMENTS)


def batch_size_for(free_bytes: int, shape: ModelShape, seq_len: int, fraction: float = 0.7) -> int:
    """Rows that fit in ``fraction`` of ``free_bytes`` after the output blocks (1..1024)."""
    budget = free_bytes * fraction - logit_bytes(shape, seq_len)
    rows = int(budget // max(row_bytes(shape, seq_len), 1))
    return max(1, min(MAX_AUTO_BATCH, rows))


def auto_batch_size(
    model: torch.nn.Module, seq_len: int, device: torch.device | str | None = None
) -> int:
    """``--batch-size auto``: what fits the free memory of a CUDA device; 64 elsewhere.

    With a dispatched model the tightest device counts (the one with the least free memory).
    """

    device = torch.device(device) if device is not None else home_device(model)
    if device.type != "cuda" or not torch.cuda.is_available():
        return CPU_DEFAULT_BATCH
    gpus = {p.device.index for p in model.parameters() if p.device.type == "cuda"} or {
        device.index or 0
    }
    free = min(torch.cuda.mem_get_info(gpu)[0] for gpu in gpus)
    return batch_size_for(free, ModelShape.of(model), seq_len)


# ---------------------------------------------------------------- a planned run


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a planned run holds at its peak, by part."""

    weights: int
    trace: int
    replay: int
    logits: int
    runtime: int = RUNTIME_BYTES

    @property
    def total(self) -> int:
        return self.runtime + self.weights + self.trace + self.replay + self.logits

    def describe(self, available: int | None = None) -> str:
        """One line for the user, with a warning when it exceeds ``available``."""
        parts = (
            f"runtime {self.runtime / GB:.2f}, weights {self.weights / GB:.2f}, "
            f"trace {self.trace / GB:.2f}, replays {self.replay / GB:.2f}, "
            f"output blocks {self.logits / GB:.2f} GB"
        )
        line = f"memory estimate: {self.total / GB:.2f} GB at the peak ({parts})"
        if available is None:
            return line
        line += f"; {available / GB:.1f} GB available"
        if self.total > available:
            line += (
                " — too much: lower --batch-size, use fewer or shorter prompts, or --dtype bfloat16"
            )
        return line


def trace_bytes(shape: ModelShape, batch: int, seq_len: int) -> int:
    """A clean trace with sublayers: residuals ``[L+1]`` plus attention and MLP ``[L]`` each."""
    return (3 * shape.n_layers + 1) * batch * seq_len * shape.d_model * shape.dtype_bytes


def estimate_run(
    model: torch.nn.Module,
    prompt_lengths: Sequence[int],
    *,
    prompt_batch: int,
    batch_size: int,
) -> MemoryEstimate:
    """Peak memory of running analyses over prompts of these lengths (before running them)."""
    if not prompt_lengths:
        raise DepthscopeError("no prompts to estimate memory for")
    shape = ModelShape.of(model)
    batches = [
        prompt_lengths[i : i + prompt_batch] for i in range(0, len(prompt_lengths), prompt_batch)
    ]
    longest = max(prompt_lengths)
    weights = sum(
        p.numel() * p.element_size() for p in model.parameters() if p.device.type != "meta"
    )
    return MemoryEstimate(
        weights=int(weights),
        trace=max(trace_bytes(shape, len(b), max(b)) for b in batches),
        replay=batch_size * row_bytes(shape, longest),
        logits=logit_bytes(shape, longest),
    )


def available_memory() -> int:
    """Bytes of RAM the system can still give this process."""
    import psutil  # a dependency of accelerate

    return int(psutil.virtual_memory().available)
