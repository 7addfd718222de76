"""Logit lens (spec E5): how far each layer's input, read out by the final head, is from the output.

For the input ``h_l`` of every layer (row 0 is the embedding), ``q_l = softmax(head(h_l))`` is
compared with the model's output ``P``: ``KL(q_l ‖ P)`` (direction configurable) and the overlap of
the top-k token sets (k=5). Work is done in blocks of (layers × positions) sized so that at most
``CHUNK_ELEMENTS`` vocabulary entries exist at once: ``[layers, tokens, vocab]`` is never held.
Averaging follows the paper: mean over a prompt's tokens, then mean over prompts
(``weighting="token"`` weights prompts by length instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from depthscope.analyses.base import Analysis, PromptBatch, register
from depthscope.analyses.outputs import CHUNK_ELEMENTS, log_probs, vocab_size
from depthscope.engine.stats import Mean

DIRECTIONS = ("lens||final", "final||lens")
WEIGHTINGS = ("prompt", "token")


@dataclass
class LogitLensSettings:
    k: int = 5
    kl_direction: str = "lens||final"
    weighting: str = "prompt"

    def __post_init__(self) -> None:
        if self.kl_direction not in DIRECTIONS:
            raise ValueError(f"kl_direction must be one of {DIRECTIONS}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}")
        if self.k < 1:
            raise ValueError("k must be >= 1")


def lens_metrics(
    lens_logp: torch.Tensor,
    final_logp: torch.Tensor,
    final_topk: torch.Tensor,
    k: int,
    direction: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row KL and top-k overlap between lens and final log-distributions ``[..., V]``."""
    if direction == "lens||final":
        kl = F.kl_div(final_logp, lens_logp, reduction="none", log_target=True).sum(-1)
    else:
        kl = F.kl_div(lens_logp, final_logp, reduction="none", log_target=True).sum(-1)
    lens_topk = lens_logp.topk(k, dim=-1).indices
    overlap = (lens_topk[..., :, None] == final_topk[..., None, :]).any(-1).sum(-1).float() / k
    return kl, overlap


def lens_prompt(
    adapter, resid: torch.Tensor, k: int, direction: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer sums over positions of KL and overlap for one prompt's residuals ``[L+1, T, d]``."""
    n_layers, length = resid.shape[0] - 1, resid.shape[1]
    budget = max(1, CHUNK_ELEMENTS // vocab_size(adapter))
    positions = min(length, budget)
    layers_per_block = max(1, budget // positions)
    kl_sum = torch.zeros(n_layers, dtype=torch.float64)
    overlap_sum = torch.zeros(n_layers, dtype=torch.float64)
    for start in range(0, length, positions):
        stop = min(start + positions, length)
        final_logp = log_probs(adapter, resid[n_layers, start:stop])
        final_topk = final_logp.topk(k, dim=-1).indices
        for first in range(0, n_layers, layers_per_block):
            last = min(first + layers_per_block, n_layers)
            block = resid[first:last, start:stop]
            lens_logp = log_probs(adapter, block.reshape(-1, block.shape[-1])).view(
                last - first, stop - start, -1
            )
            kl, overlap = lens_metrics(
                lens_logp, final_logp.unsqueeze(0), final_topk.unsqueeze(0), k, direction
            )
            kl_sum[first:last] += kl.sum(-1).double().cpu()
            overlap_sum[first:last] += overlap.sum(-1).double().cpu()
    return kl_sum, overlap_sum


@register
class LogitLens(Analysis):
    name = "logit-lens"
    description = "KL and top-k overlap of each layer's logit-lens prediction with the output (E5)"
    Settings = LogitLensSettings

    def new_state(self) -> dict:
        return {"kl": Mean(), "overlap": Mean(), "n_prompts": 0, "n_tokens": 0}

    @torch.no_grad()
    def update(self, state: dict, batch: PromptBatch) -> None:
        trace = batch.trace
        self.options.progress.start(f"{self.name} batch", len(batch.rows))
        for row, _ in batch:
            length = batch.length(row)
            kl_sum, overlap_sum = lens_prompt(
                self.lm.adapter,
                trace.resid[:, row, :length],
                self.settings.k,
                self.settings.kl_direction,
            )
            if self.settings.weighting == "prompt":
                state["kl"].add(kl_sum / length, 1)
                state["overlap"].add(overlap_sum / length, 1)
            else:
                state["kl"].add(kl_sum, length)
                state["overlap"].add(overlap_sum, length)
            state["n_prompts"] += 1
            state["n_tokens"] += length
            self.options.progress.advance(1)

    def finish(self, state: dict) -> dict:
        return {"kl": state["kl"].value, "topk_overlap": state["overlap"].value}
