"""The logit lens's per-row KL and top-k, computed over vocabulary tiles with an online softmax.

Materialising ``[rows, vocab]`` log-probabilities and then reading them again for the KL and the
top-k makes the lens memory-bound: every pass streams a block far larger than the cache. Here
each ``[rows, tile]`` piece of logits is reduced while it is in cache — a running maximum ``m``,
``S = Σ e^{z−m}`` and the KL's sum, rescaled when ``m`` grows (as flash attention does for its
softmax) — and only ``k`` candidates per tile are kept for the top-k. The result equals the
materialised computation (``analyses.logit_lens.lens_metrics``) up to float rounding; the test
compares them.

On CPU the tile is small (2 048 ids): the head's ``[tile, d]`` weight piece and the ``[rows,
tile]`` logits then both stay in L3, and the matmul runs at the machine's GEMM peak, where the
whole vocabulary at once reached about three quarters of it (``benchmarks/bench_logit_lens.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from depthscope.models.adapters import BoundAdapter

TILE = 8192  # vocabulary ids per piece on accelerators: fewer, larger kernels
CPU_TILE = 2048  # on CPU: [a few hundred rows, tile] logits and the [tile, d] weight stay in L3


def tile_for(device: torch.device) -> int:
    return CPU_TILE if device.type == "cpu" else TILE


def final_log_probs(
    adapter: BoundAdapter, resid: torch.Tensor, tile: int | None = None
) -> torch.Tensor:
    """fp32 log-softmax of the logits of ``resid`` ``[M, d]``, computed tile by tile: the full
    vocabulary in one matmul of a few dozen rows runs at a third of the tiled speed on CPU."""
    size = tile or tile_for(resid.device)
    pieces = [z.float() for _, z in adapter.logit_tiles(resid, size)]
    return torch.log_softmax(torch.cat(pieces, dim=-1), dim=-1)


@dataclass
class FinalRows:
    """The model's own output at the positions of a block: what each lens row is compared with."""

    logp: torch.Tensor  # [T, V] log-probabilities
    topk: torch.Tensor  # [T, k] top-k token ids
    probs: torch.Tensor | None = None  # [T, V], only for KL(final ‖ lens)
    neg_entropy: torch.Tensor | None = None  # [T]: Σ p log p, only for KL(final ‖ lens)

    @classmethod
    def of(cls, logp: torch.Tensor, k: int, direction: str) -> FinalRows:
        rows = cls(logp, logp.topk(k, dim=-1).indices)
        if direction != "lens||final":
            rows.probs = logp.exp()
            rows.neg_entropy = (rows.probs * logp).sum(-1)
        return rows


@dataclass
class StreamedLens:
    kl: torch.Tensor  # [B, T]
    overlap: torch.Tensor  # [B, T]
    top_ids: torch.Tensor  # [B, T, max(k, top)], most probable first
    top_logp: torch.Tensor  # [B, T, max(k, top)]


def streamed_lens(
    adapter: BoundAdapter,
    block: torch.Tensor,
    final: FinalRows,
    k: int,
    direction: str,
    top: int = 0,
    tile: int | None = None,
) -> StreamedLens:
    """KL between each row of ``block`` ``[B, T, d]`` read through the model's head and the final
    distribution of its position, the top-k overlap with the final top-k, and the ``max(k, top)``
    most probable tokens, without holding ``[B, T, V]``. ``tile``: vocabulary ids per piece
    (default: :func:`tile_for` the block's device)."""
    n_blocks, length, d = block.shape
    tile = tile or tile_for(block.device)
    keep = max(k, top)
    lens_first = direction == "lens||final"
    m = total = acc = None
    values, ids = [], []
    for first, logits in adapter.logit_tiles(block.reshape(-1, d), tile):
        z = logits.float().view(n_blocks, length, -1)
        width = z.shape[-1]
        best = z.topk(min(keep, width), dim=-1)  # sorted: its first value is the tile's maximum
        values.append(best.values)
        ids.append(best.indices + first)
        tile_max = best.values[..., 0]
        grown = tile_max if m is None else torch.maximum(m, tile_max)
        e = torch.sub(z, grown[..., None]).exp_()
        if lens_first:  # Σ e^{z−m} (z − log p_final): rescaled with S
            term = torch.linalg.vecdot(e, z.sub_(final.logp[:, first : first + width]))
        else:  # Σ p_final z: does not depend on m
            term = torch.linalg.vecdot(final.probs[:, first : first + width], z)
        if m is None:
            total, acc = e.sum(-1), term
        else:
            scale = torch.exp(m - grown)
            total = total * scale + e.sum(-1)
            acc = (acc * scale if lens_first else acc) + term
        m = grown
    lse = m + total.log()
    # lens‖final: Σ p (z − lse − log p_final), Σ p = 1; final‖lens: Σ p_f log p_f − Σ p_f (z − lse)
    kl = acc / total - lse if lens_first else final.neg_entropy - acc + lse
    candidates = torch.cat(values, dim=-1)
    chosen = candidates.topk(keep, dim=-1)
    top_ids = torch.cat(ids, dim=-1).gather(-1, chosen.indices)
    lens_topk = top_ids[..., :k]
    hits = (lens_topk[..., :, None] == final.topk[None, :, None, :]).any(-1).sum(-1)
    return StreamedLens(kl, hits.float() / k, top_ids, chosen.values - lse[..., None])
