"""Trace: one clean forward pass that records the residual stream and how to re-run any layer.

For every layer ``l`` the trace holds the residual entering it ``h_l``, what attention added
``a_l``, what the MLP added ``m_l``, the residual leaving it ``h_{l+1}``, and the exact arguments
(masks, position embeddings, ...) the model passed to that layer, so that :mod:`replay` can
re-run layers ``j..L-1`` from an edited residual without recomputing anything before ``j``.

On a model dispatched over several devices (or offloaded), every recorded tensor is brought to one
home device, where the input embedding computes (:mod:`depthscope.models.devices`); the layer
arguments stay where the model made them and are moved to each layer's device on replay.

What a hook keeps is the model's own tensor (no copy), unless the model changes it in place after
the hook: Falcon adds ``mlp_output += attention_output``, which would turn a kept ``m_l`` into
``m_l + a_l``. Each kept tensor's version counter tells; a trace that sees one change marks the
adapter (``copy_sites``), is taken again, and from then on the hooks keep copies — a cost paid
only by the families that need it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from depthscope.engine.batch import Batch
from depthscope.engine.hooks import site_hooks
from depthscope.models.adapters import BoundAdapter, first_tensor
from depthscope.models.devices import home_device


def select_row(value: object, row: int, batch: int, n: int) -> object:
    """Take batch row ``row`` of a captured argument and expand it to ``n`` rows.

    Tensors of rank >= 2 whose leading dimension is the batch are sliced; leading dimension 1
    (broadcast across the batch) is kept; anything else (flags, caches, 1-D positions) passes as is.
    """
    if isinstance(value, torch.Tensor):
        if value.dim() < 2:
            return value
        if value.shape[0] == batch and batch > 1:
            value = value[row : row + 1]
        if value.shape[0] == 1 and n != 1:
            value = value.expand(n, *value.shape[1:])
        return value
    if isinstance(value, tuple | list):
        return type(value)(select_row(v, row, batch, n) for v in value)
    if isinstance(value, dict):
        return {k: select_row(v, row, batch, n) for k, v in value.items()}
    return value


@dataclass
class LayerCall:
    """The non-residual arguments one decoder layer received in the clean pass."""

    args: tuple
    kwargs: dict
    batch: int

    def for_rows(self, row: int, n: int) -> tuple[tuple, dict]:
        """Arguments for ``n`` variants of batch row ``row`` run as one batch."""
        return (
            select_row(self.args, row, self.batch, n),
            select_row(self.kwargs, row, self.batch, n),
        )


@dataclass
class Trace:
    """Everything a clean pass recorded. Residuals are ``[L+1, B, T, d]``, sublayers ``[L, B, T, d]``."""

    input_ids: torch.Tensor
    valid: torch.Tensor
    resid: torch.Tensor
    attn: torch.Tensor | None
    mlp: torch.Tensor | None
    calls: list[LayerCall]
    logits: torch.Tensor | None = None
    mlp_in: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return int(self.resid.shape[0]) - 1

    @property
    def batch_size(self) -> int:
        return int(self.resid.shape[1])

    @property
    def seq_len(self) -> int:
        return int(self.resid.shape[2])

    @property
    def lengths(self) -> list[int]:
        return self.valid.sum(dim=1).tolist()

    def contribution(
        self, layer: int, row: int | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """``c_l = h_{l+1} - h_l``: what layer ``l`` added (for one row, or all).

        ``dtype=torch.float32`` subtracts in fp32: for a bf16/fp16 model that is the exact
        difference of the stored residuals, where a half-precision subtraction rounds again.
        """
        after, before = self.resid[layer + 1], self.resid[layer]
        if row is not None:
            after, before = after[row], before[row]
        if dtype is not None:
            after, before = after.to(dtype), before.to(dtype)
        return after - before

    def contributions(self, row: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """All layers' contributions for one row: ``[L, T, d]`` (``dtype`` as in :meth:`contribution`)."""
        r = self.resid[:, row]
        if dtype is not None:
            r = r.to(dtype)
        return r[1:] - r[:-1]


class _StopForward(Exception):
    """Raised after the final norm input is captured, so the unembedding is not computed."""


class _Keeper:
    """Keeps hooked tensors on the home device; copies them if asked, else notes their version so
    that an in-place change made later by the model is noticed (:meth:`changed`)."""

    def __init__(self, home: torch.device, copy: bool) -> None:
        self.home = home
        self.copy = copy
        self.kept: list[tuple[torch.Tensor, int]] = []

    def __call__(self, value: torch.Tensor) -> torch.Tensor:
        kept = value.detach().to(self.home)
        if self.copy:
            return kept.clone()
        self.kept.append((kept, kept._version))
        return kept

    def changed(self) -> bool:
        return any(kept._version != version for kept, version in self.kept)


class _SublayerRecorder:
    def __init__(self, n_layers: int, keep_mlp_in: bool, keep: _Keeper) -> None:
        self.keep = keep
        self.values: dict[str, list[torch.Tensor | None]] = {
            "attention": [None] * n_layers,
            "mlp": [None] * n_layers,
            "mlp_in": [None] * n_layers,
        }
        self.keep_mlp_in = keep_mlp_in

    def on_site(self, layer: int, site: str, value: torch.Tensor) -> None:
        if site != "mlp_in" or self.keep_mlp_in:
            self.values[site][layer] = self.keep(value)
        return None


def _layer_hooks(
    adapter: BoundAdapter, resid: list, calls: list, batch: int, keep: _Keeper
) -> list:
    handles = []
    for index, layer in enumerate(adapter.layers):

        def pre_hook(module, args, kwargs, index=index):
            hidden = args[0] if args else kwargs["hidden_states"]
            rest_kwargs = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            resid[index] = keep(hidden)
            calls[index] = LayerCall(tuple(args[1:]), rest_kwargs, batch)

        def post_hook(module, args, kwargs, output, index=index):
            resid[index + 1] = keep(first_tensor(output))

        handles.append(layer.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(layer.register_forward_hook(post_hook, with_kwargs=True))
    return handles


@torch.no_grad()
def trace(
    adapter: BoundAdapter,
    batch: Batch,
    *,
    sublayers: bool = True,
    logits: bool = False,
    keep_mlp_in: bool = False,
) -> Trace:
    """Run the model once on ``batch`` and record the residual stream and each layer's arguments.

    ``logits=True`` also keeps the model's own output logits (``[B, T, V]``; large for big
    vocabularies). Without it the forward pass stops after the last layer.
    """
    model = adapter.model
    home = home_device(model)
    batch = batch.to(home)
    n = adapter.n_layers
    resid: list[torch.Tensor | None] = [None] * (n + 1)
    calls: list[LayerCall | None] = [None] * n
    keep = _Keeper(home, copy=adapter.copy_sites)
    recorder = _SublayerRecorder(n, keep_mlp_in, keep)
    handles = _layer_hooks(adapter, resid, calls, batch.size, keep)
    if not logits:
        handles.append(adapter.final_norm.register_forward_pre_hook(_raise_stop))
    output = None
    try:
        with (
            site_hooks(adapter) as hooks,
            hooks.handling(recorder),
            contextlib.suppress(_StopForward),
        ):
            output = model(
                input_ids=batch.input_ids,
                attention_mask=batch.valid.long(),
                use_cache=False,
            )
    finally:
        for handle in handles:
            handle.remove()
    if keep.changed():  # the model edited a kept tensor in place: keep copies, trace again
        adapter.copy_sites = True
        return trace(adapter, batch, sublayers=sublayers, logits=logits, keep_mlp_in=keep_mlp_in)
    stack = _stack_or_none
    return Trace(
        input_ids=batch.input_ids,
        valid=batch.valid,
        resid=torch.stack(resid),
        attn=stack(recorder.values["attention"]) if sublayers else None,
        mlp=stack(recorder.values["mlp"]) if sublayers else None,
        calls=list(calls),
        logits=None if output is None else output.logits.detach().to(home),
        mlp_in=stack(recorder.values["mlp_in"]) if keep_mlp_in else None,
    )


def _raise_stop(module, args):
    raise _StopForward


def _stack_or_none(values: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    return None if any(v is None for v in values) else torch.stack(list(values))
