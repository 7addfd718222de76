"""Replay: re-run layers ``j..L-1`` of one traced prompt from an edited residual, many variants at once.

Each variant is one batch row. A row joins the batch at its own start layer ``j`` (with the clean
residual ``h_j`` or a residual the caller supplies) and is carried to the end, so an L-row sweep in
which row ``s`` departs at layer ``s`` costs about L²/2 layer evaluations instead of L², and no
layer before a row's start is ever recomputed. An :class:`Intervention` may edit, per row, what
attention or the MLP adds, or a layer's output; an observer sees every layer's inputs and outputs.

On a dispatched model each layer runs on its own device; interventions and observers always see
tensors on the trace's (home) device, so they never deal with placement
(:mod:`depthscope.models.devices`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from depthscope.engine.hooks import site_hooks
from depthscope.engine.trace import Trace
from depthscope.models.adapters import BoundAdapter, first_tensor
from depthscope.models.devices import execution_device, to_device


@dataclass
class EditContext:
    """Where an edit happens: the layer, the caller's indices of the active rows, their input."""

    layer: int
    rows: torch.Tensor  # [n] long, indices into the caller's variant list
    resid_in: torch.Tensor  # [n, T, d]


@dataclass
class LayerStep(EditContext):
    """What an observer sees after a layer: sublayer values as added, raw and edited outputs."""

    attn: torch.Tensor | None
    mlp: torch.Tensor | None
    out_raw: torch.Tensor  # the layer's own output, before any "output" edit
    resid_out: torch.Tensor  # the residual passed on (after edits)


class Intervention(Protocol):
    """Edits one site (``"attention"``, ``"mlp"`` or ``"output"``) for the active rows."""

    def edit(self, ctx: EditContext, site: str, value: torch.Tensor) -> torch.Tensor | None:
        """Return the edited value (same shape) or None to leave it unchanged."""


Observer = Callable[[LayerStep], None]


class _ReplayHandler:
    def __init__(
        self, intervention: Intervention | None, record: bool, home: torch.device, copy: bool
    ) -> None:
        self.intervention = intervention
        self.home = home
        self.record = record
        self.copy = copy  # the layer edits its sublayers' outputs in place (trace's copy_sites)
        self.ctx: EditContext | None = None
        self.values: dict[str, torch.Tensor] = {}

    def on_site(self, layer: int, site: str, value: torch.Tensor) -> torch.Tensor | None:
        if site == "mlp_in":
            return None
        new = None
        at_home = value.to(self.home)
        if self.intervention is not None and self.ctx is not None:
            new = self.intervention.edit(self.ctx, site, at_home)
        if self.record:
            kept = at_home if new is None else new
            self.values[site] = kept.clone() if self.copy else kept
        return None if new is None else new.to(value.device)


def _as_long(values: Sequence[int] | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.long).reshape(-1)


def replay(
    adapter: BoundAdapter,
    trace: Trace,
    prompt: int,
    starts: Sequence[int] | torch.Tensor,
    *,
    resid: torch.Tensor | None = None,
    intervention: Intervention | None = None,
    observe: Observer | None = None,
    record_sublayers: bool = False,
) -> torch.Tensor:
    """Re-run variants of batch row ``prompt`` of ``trace`` and return their final residuals.

    ``starts[i]`` is the first layer row ``i`` recomputes (``L`` means none: the row's residual is
    final already). ``resid[i]`` (``[n, T, d]``) replaces the clean residual the row starts from.
    Rows are returned in the caller's order as ``[n, T, d]``, before the final norm; pass them to
    ``adapter.logits`` at the positions you need. Autograd follows the caller's grad mode.
    """
    starts_t = _as_long(starts)
    n_rows = int(starts_t.numel())
    n_layers = trace.n_layers
    if n_rows == 0:
        return trace.resid.new_zeros((0, trace.seq_len, trace.resid.shape[-1]))
    if int(starts_t.min()) < 0 or int(starts_t.max()) > n_layers:
        raise ValueError(f"start layers must lie in [0, {n_layers}], got {starts_t.tolist()}")
    if resid is not None and resid.shape[0] != n_rows:
        raise ValueError(f"resid has {resid.shape[0]} rows for {n_rows} variants")
    order = torch.argsort(starts_t, stable=True)
    sorted_starts = starts_t[order]

    def start_residuals(members: torch.Tensor, layer: int) -> torch.Tensor:
        if resid is not None:
            return resid[members]
        clean = trace.resid[layer, prompt]
        return clean.unsqueeze(0).expand(int(members.numel()), *clean.shape).clone()

    home = trace.resid.device
    handler = _ReplayHandler(
        intervention,
        record=record_sublayers or observe is not None,
        home=home,
        copy=adapter.copy_sites,
    )
    hidden: torch.Tensor | None = None
    first = int(sorted_starts[0])
    with site_hooks(adapter) as hooks, hooks.handling(handler):
        for layer in range(first, n_layers):
            joining = order[sorted_starts == layer]
            if joining.numel():
                new = start_residuals(joining, layer)
                hidden = new if hidden is None else torch.cat([hidden, new.to(hidden.device)])
            active = order[: hidden.shape[0]]
            hidden = _run_layer(adapter, trace, prompt, layer, hidden, active, handler, observe)
    if hidden is not None:
        hidden = hidden.to(home)
    finals = _gather_finals(trace, prompt, order, sorted_starts, hidden, resid, n_layers)
    out = torch.empty_like(finals)
    out[order] = finals
    return out


def _run_layer(
    adapter: BoundAdapter,
    trace: Trace,
    prompt: int,
    layer: int,
    hidden: torch.Tensor,
    active: torch.Tensor,
    handler: _ReplayHandler,
    observe: Observer | None,
) -> torch.Tensor:
    home = handler.home
    module = adapter.layers[layer]
    device = execution_device(module, fallback=home)
    resid_in = hidden.to(home)
    ctx = EditContext(layer=layer, rows=active, resid_in=resid_in)
    handler.ctx = ctx
    handler.values = {}
    args, kwargs = trace.calls[layer].for_rows(prompt, hidden.shape[0])
    args, kwargs = to_device((args, kwargs), device)
    out_raw = first_tensor(module(hidden.to(device), *args, **kwargs))
    out_home = out_raw.to(home)
    out = out_home
    if handler.intervention is not None:
        edited = handler.intervention.edit(ctx, "output", out_home)
        if edited is not None:
            out = edited
    if observe is not None:
        observe(
            LayerStep(
                layer=layer,
                rows=active,
                resid_in=resid_in,
                attn=handler.values.get("attention"),
                mlp=handler.values.get("mlp"),
                out_raw=out_home,
                resid_out=out,
            )
        )
    handler.ctx = None
    return out if out is not out_home else out_raw


def _gather_finals(
    trace: Trace,
    prompt: int,
    order: torch.Tensor,
    sorted_starts: torch.Tensor,
    hidden: torch.Tensor | None,
    resid: torch.Tensor | None,
    n_layers: int,
) -> torch.Tensor:
    """Final residuals in sorted order: replayed rows, then rows that started at ``L``."""
    idle = order[sorted_starts == n_layers]
    parts = [] if hidden is None else [hidden]
    if idle.numel():
        if resid is not None:
            parts.append(resid[idle])
        else:
            clean = trace.resid[n_layers, prompt]
            parts.append(clean.unsqueeze(0).expand(int(idle.numel()), *clean.shape))
    return torch.cat(parts, dim=0)
