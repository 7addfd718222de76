"""The load-time proof: on the model as loaded, the adapter's pieces rebuild the model exactly.

An adapter says which module outputs are what each sublayer adds to the residual stream. Whether
that holds for *this* model — its weights, its dtype, the installed transformers' layer code, a
user's registered adapter — is checked once, on a short probe batch, with the engine's own
:func:`~depthscope.engine.trace.trace` and :func:`~depthscope.engine.replay.replay`:

1. **residual identity**: for every layer ``l``, ``h_{l+1} = h_l + a_l + m_l`` as captured;
2. **clean replay**: re-running the layers from the captured residual, then the adapter's final
   norm, unembedding and logit post-processing, gives the model's own logits.

Errors are measured per token as ``‖x − y‖ / ‖y‖`` (the relative error of the token's vector;
so a token with a huge residual does not hide an error at the others), the largest over the probe's
real tokens; the largest absolute element error is kept beside it. A model whose error exceeds
the tolerance of its dtype is refused in one line naming the layer and the size of the mismatch:
a depth measurement must never rest on a decomposition that does not add up.
"""

from __future__ import annotations

import time

import torch

from depthscope.core.errors import DepthscopeError, first_line
from depthscope.engine.batch import Batch, pad_batch
from depthscope.engine.replay import replay
from depthscope.engine.trace import Trace, trace
from depthscope.models.adapters import BoundAdapter

# Allowed relative error per token, by the dtype the model computes in. A wrong site is off by
# the size of a sublayer's output, i.e. O(0.1–1) relative; rounding is orders of magnitude below:
# - float32 (24-bit significand, ε = 6e-8): the identity sums three terms in another order
#   (parallel blocks), and the replay runs a batch of one where the trace ran two, so other matmul
#   kernels round differently; both stay near 1e-6 even after 30 layers. 1e-4 leaves room for
#   deep models and GPU kernels and still catches any missing term.
# - bfloat16 (8-bit significand, one rounding ≤ 2^-9 ≈ 0.2 %): the layer rounds h + a and then
#   + m in bf16 where the check adds in fp32, and every replayed layer may round differently
#   from the traced one; a few roundings accumulate to about 1 %. 5e-2 is five times that.
# - float16 (11-bit significand, 2^-12 per rounding): the same with 8× finer rounding, 1e-2.
TOLERANCES: dict[torch.dtype, float] = {
    torch.float32: 1e-4,
    torch.float64: 1e-8,
    torch.bfloat16: 5e-2,
    torch.float16: 1e-2,
}
# Quantised linear weights (bitsandbytes int8/nf4) compute in the dtype, but LLM.int8 picks its
# outlier columns from the batch, so a replayed batch of one may round other columns: looser.
QUANTIZED_TOLERANCE = 1e-1
PROBE_LENGTHS = (16, 9)  # two prompts of different lengths, so padding and row slicing take part
PROBE_SEED = 0
SKIP_SWITCH = "--no-load-check / load_check=False"  # how a user skips the proof
AT_YOUR_RISK = f"pass {SKIP_SWITCH} at your own risk"


class ProofError(DepthscopeError):
    """A refused proof, with what failed kept apart for callers that try several adapters
    (:mod:`depthscope.models.discovery`): ``check`` is ``"trace"``, ``"sites"``, ``"identity"``,
    ``"replay"`` or ``"logits"``; ``layer`` the first layer over the tolerance (None for the
    head or a pass that could not run); ``error`` its relative error."""

    def __init__(
        self, message: str, check: str, layer: int | None = None, error: float | None = None
    ) -> None:
        super().__init__(message)
        self.check, self.layer, self.error = check, layer, error


def tolerance(dtype: torch.dtype, quantized: bool = False) -> float:
    """The relative error per token the proof allows for a model computing in ``dtype``."""
    base = TOLERANCES.get(dtype, TOLERANCES[torch.bfloat16])
    return max(base, QUANTIZED_TOLERANCE) if quantized else base


def probe_batch(vocab: int, max_len: int | None = None) -> Batch:
    """The probe: fixed pseudo-random token ids below ``vocab`` (the same batch every time)."""
    generator = torch.Generator().manual_seed(PROBE_SEED)
    lengths = [min(n, max_len) if max_len else n for n in PROBE_LENGTHS]
    ids = [torch.randint(0, vocab, (n,), generator=generator).tolist() for n in lengths]
    return pad_batch(ids, pad_id=0)


def token_errors(actual: torch.Tensor, expected: torch.Tensor, valid: torch.Tensor) -> dict:
    """``{"max_abs", "max_rel"}`` of ``actual`` against ``expected`` (``[..., T, d]``) over the
    real tokens ``valid`` (``[..., T]``): the largest element error and the largest per-token
    ``‖actual − expected‖ / ‖expected‖``, computed in fp32."""
    diff = (actual.float() - expected.float())[valid]
    if diff.numel() == 0:
        return {"max_abs": 0.0, "max_rel": 0.0}
    scale = expected.float()[valid].norm(dim=-1).clamp_min(torch.finfo(torch.float32).tiny)
    return {
        "max_abs": float(diff.abs().max()),
        "max_rel": float((diff.norm(dim=-1) / scale).max()),
    }


def identity_errors(tr: Trace) -> list[dict]:
    """Per layer, how far the captured ``h_l + a_l + m_l`` is from the layer's output ``h_{l+1}``."""
    return [
        token_errors(
            tr.resid[layer].float() + tr.attn[layer].float() + tr.mlp[layer].float(),
            tr.resid[layer + 1],
            tr.valid,
        )
        for layer in range(tr.n_layers)
    ]


def replay_errors(adapter: BoundAdapter, tr: Trace) -> tuple[list[dict], dict]:
    """Each prompt replayed from layer 0 with its clean residual: per layer, the replayed residual
    against the traced one, and the replayed logits against the model's (worst over prompts)."""
    per_layer: list[list[dict]] = [[] for _ in range(tr.n_layers)]
    logits = []
    for row in range(tr.batch_size):
        valid = tr.valid[row : row + 1]

        def observe(step, row=row, valid=valid):
            out = step.resid_out
            per_layer[step.layer].append(
                token_errors(out, tr.resid[step.layer + 1, row : row + 1], valid)
            )

        final = replay(adapter, tr, row, [0], observe=observe)
        logits.append(token_errors(adapter.logits(final), tr.logits[row : row + 1], valid))
    return [_worst(errors) for errors in per_layer], _worst(logits)


def _worst(errors: list[dict]) -> dict:
    return {key: max((e[key] for e in errors), default=0.0) for key in ("max_abs", "max_rel")}


def _rounded(errors: dict) -> dict:
    return {key: float(f"{value:.3g}") for key, value in errors.items()}


def _first_over(errors: list[dict], limit: float) -> int | None:
    return next((i for i, e in enumerate(errors) if not e["max_rel"] <= limit), None)


def _sites(adapter: BoundAdapter) -> str:
    spec = adapter.spec
    return f"attn_out={spec.attn_out!r}, mlp_out={spec.mlp_out!r}"


@torch.no_grad()
def prove(
    adapter: BoundAdapter,
    vocab: int,
    *,
    name: str = "the model",
    quantized: bool = False,
    max_len: int | None = None,
) -> dict:
    """Prove ``adapter`` on its model (see the module's docstring) and return the record that
    ``run.json`` keeps; refuse the model in one line if a check fails."""
    return prove_traced(adapter, vocab, name=name, quantized=quantized, max_len=max_len)[0]


@torch.no_grad()
def prove_traced(
    adapter: BoundAdapter,
    vocab: int,
    *,
    name: str = "the model",
    quantized: bool = False,
    max_len: int | None = None,
) -> tuple[dict, Trace]:
    """:func:`prove`, also returning the probe's clean trace (with logits), for a caller that
    checks more on it without tracing the probe again (discovery's packing check)."""
    started = time.perf_counter()
    dtype = adapter.model.get_input_embeddings().weight.dtype
    limit = tolerance(dtype, quantized)
    batch = probe_batch(vocab, max_len)
    what = f"the {adapter.family} adapter does not describe {name}"
    try:
        tr = trace(adapter, batch, logits=True)
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError) as exc:
        if isinstance(exc, torch.OutOfMemoryError):
            raise
        first = first_line(exc)
        raise ProofError(f"{what}: its probe pass could not be traced ({first})", "trace") from exc
    if tr.attn is None or tr.mlp is None:
        raise ProofError(
            f"{what}: a sublayer site ({_sites(adapter)}) did not run in every layer's forward "
            f"pass, so what the layers add cannot be captured",
            "sites",
        )
    dtype_name = str(dtype).removeprefix("torch.")
    allowed = f"{limit:g} allowed in {dtype_name}{' (quantised)' if quantized else ''}"

    def mismatch(e: dict) -> str:
        return f"relative error {e['max_rel']:.3g} > {allowed}; max abs {e['max_abs']:.3g}"

    identity = identity_errors(tr)
    bad = _first_over(identity, limit)
    if bad is not None:
        e = identity[bad]
        raise ProofError(
            f"{what}: at layer {bad} the captured attention and MLP outputs ({_sites(adapter)}) "
            f"do not add up to the layer's output ({mismatch(e)}); describe the layer with its "
            f"own adapter (docs/architectures.md) or {AT_YOUR_RISK}",
            "identity",
            bad,
            e["max_rel"],
        )
    layers, logits = replay_errors(adapter, tr)
    bad = _first_over(layers, limit)
    if bad is not None:
        e = layers[bad]
        raise ProofError(
            f"{what}: replaying layer {bad} with the arguments the model passed it does not "
            f"reproduce its output ({mismatch(e)}); {AT_YOUR_RISK}",
            "replay",
            bad,
            e["max_rel"],
        )
    if not logits["max_rel"] <= limit:
        raise ProofError(
            f"{what}: its final norm and unembedding applied to the last residual do not give "
            f"the model's logits ({mismatch(logits)}); the model's head scales or transforms the "
            f"logits in a way the adapter does not know; {AT_YOUR_RISK}",
            "logits",
            None,
            logits["max_rel"],
        )
    worst = max(range(len(identity)), key=lambda i: identity[i]["max_rel"], default=0)
    record = {
        "status": "passed",
        "dtype": dtype_name,
        "tolerance": limit,
        "probe": {"prompts": len(batch.lengths), "tokens": list(batch.lengths), "seed": PROBE_SEED},
        "residual_identity": {**_rounded(_worst(identity)), "worst_layer": worst},
        "replay_layers": _rounded(_worst(layers)),
        "replay_logits": _rounded(logits),
        "copies_sublayers": adapter.copy_sites,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return record, tr


def skipped(reason: str = SKIP_SWITCH) -> dict:
    """The record of a load whose proof was skipped on request."""
    return {"status": "skipped", "reason": reason}
