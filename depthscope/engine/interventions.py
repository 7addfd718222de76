"""Interventions: small vectorised edits of the residual stream, one parameter set per replay row.

Each class holds per-row tensors (indexed by the caller's row number) and implements
``edit(ctx, site, value)`` for :func:`depthscope.engine.replay.replay`. Edits never modify a tensor
in place, so they are safe under autograd.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from depthscope.engine.replay import EditContext

PARTS = ("layer", "attention", "mlp")


def position_mask(seq_len: int, start: int, stop: int | None = None) -> torch.Tensor:
    """Boolean ``[T]`` mask of positions ``[start, stop)``."""
    mask = torch.zeros(seq_len, dtype=torch.bool)
    mask[start:stop] = True
    return mask


def _rows_at(layers: torch.Tensor, ctx: EditContext) -> torch.Tensor:
    return layers.to(ctx.rows.device)[ctx.rows] == ctx.layer


@dataclass
class Knockout:
    """Remove layer ``layers[i]``'s part ``part`` for row ``i`` at positions ``positions[i]``.

    ``part="layer"`` skips the layer (its output := its input); ``"attention"``/``"mlp"`` zero what
    that sublayer adds (after attention is zeroed, the same layer's MLP recomputes on ``h_l``).
    """

    layers: torch.Tensor  # [n] long
    positions: torch.Tensor  # [n, T] bool
    part: str = "layer"

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {self.part!r}")

    def edit(self, ctx: EditContext, site: str, value: torch.Tensor) -> torch.Tensor | None:
        wanted = "output" if self.part == "layer" else self.part
        if site != wanted:
            return None
        hit = _rows_at(self.layers, ctx)
        if not bool(hit.any()):
            return None
        mask = (hit[:, None] & self.positions.to(value.device)[ctx.rows])[..., None]
        replacement = ctx.resid_in if self.part == "layer" else torch.zeros_like(value)
        return torch.where(mask, replacement, value)


@dataclass
class RemoveContribution:
    """Local (non-propagated) effect of layer ``layers[i]``: every later layer reads ``h_l - c_s``.

    From layer ``s`` on, row ``i``'s layer outputs are overwritten with the clean outputs minus
    ``s``'s clean contribution at ``positions[i]`` and the clean outputs elsewhere, so changes never
    propagate: each layer sees exactly the clean residual with ``c_s`` removed (paper §3.4, Fig. 5).
    """

    layers: torch.Tensor  # [n] long
    positions: torch.Tensor  # [n, T] bool
    contributions: torch.Tensor  # [n, T, d]: c_{layers[i]} of the clean run
    clean_outputs: torch.Tensor  # [L, T, d]: h_{l+1} of the clean run

    def edit(self, ctx: EditContext, site: str, value: torch.Tensor) -> torch.Tensor | None:
        if site != "output":
            return None
        rows = ctx.rows
        mask = self.positions.to(value.device)[rows][..., None]
        removed = torch.where(mask, self.contributions[rows], torch.zeros_like(value))
        return self.clean_outputs[ctx.layer].unsqueeze(0) - removed


@dataclass
class Replace:
    """Set ``site`` of layer ``layers[i]`` to ``values[i]`` (at ``positions[i]``, default all)."""

    site: str  # "attention", "mlp" or "output"
    layers: torch.Tensor  # [n] long
    values: torch.Tensor  # [n, T, d]
    positions: torch.Tensor | None = None  # [n, T] bool

    def edit(self, ctx: EditContext, site: str, value: torch.Tensor) -> torch.Tensor | None:
        if site != self.site:
            return None
        hit = _rows_at(self.layers, ctx)
        if not bool(hit.any()):
            return None
        mask = hit[:, None].expand(-1, value.shape[1])
        if self.positions is not None:
            mask = mask & self.positions.to(value.device)[ctx.rows]
        return torch.where(mask[..., None], self.values[ctx.rows].to(value.dtype), value)


@dataclass
class SkipLayers:
    """Remove, for row ``i``, every layer ``l`` with ``skipped[i, l]``: its output := its input.

    The layers are skipped at all positions, so a row computes exactly what the model with those
    layers deleted computes (layer pruning without retraining). Start each row's replay at its
    first skipped layer (:meth:`starts`): everything before it is the clean prefix of the trace.
    """

    skipped: torch.Tensor  # [n, L] bool

    def starts(self) -> torch.Tensor:
        """Per row, the first skipped layer (``L`` for a row that skips nothing)."""
        n_layers = self.skipped.shape[1]
        index = torch.arange(n_layers, device=self.skipped.device).expand_as(self.skipped)
        return torch.where(self.skipped, index, n_layers).amin(dim=1).long()

    def edit(self, ctx: EditContext, site: str, value: torch.Tensor) -> torch.Tensor | None:
        if site != "output":
            return None
        hit = self.skipped.to(ctx.rows.device)[ctx.rows, ctx.layer]
        if not bool(hit.any()):
            return None
        return torch.where(hit[:, None, None], ctx.resid_in, value)
