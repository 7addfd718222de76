"""Logit lens (spec E5): how far each layer's input, read out by the final head, is from the output.

For the input ``h_l`` of every layer (row 0 is the embedding), ``q_l = softmax(head(h_l))`` is
compared with the model's output ``P``: ``KL(q_l ‖ P)`` (direction configurable) and the overlap of
the top-k token sets (k=5). Positions are processed in chunks so ``[layers, tokens, vocab]`` is
never held at once. Averaging follows the paper: mean over a prompt's tokens, then mean over
prompts (``weighting="token"`` weights prompts by length instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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
    """Per-position KL and top-k overlap between lens and final log-distributions ``[M, V]``."""
    if direction == "lens||final":
        kl = (lens_logp.exp() * (lens_logp - final_logp)).sum(-1)
    else:
        kl = (final_logp.exp() * (final_logp - lens_logp)).sum(-1)
    lens_topk = lens_logp.topk(k, dim=-1).indices
    overlap = (lens_topk[:, :, None] == final_topk[:, None, :]).any(-1).sum(-1).float() / k
    return kl, overlap


@register
class LogitLens(Analysis):
    name = "logit-lens"
    description = "KL and top-k overlap of each layer's logit-lens prediction with the output (E5)"
    Settings = LogitLensSettings

    def new_state(self) -> dict:
        return {"kl": Mean(), "overlap": Mean(), "n_prompts": 0, "n_tokens": 0}

    @torch.no_grad()
    def update(self, state: dict, batch: PromptBatch) -> None:
        adapter = self.lm.adapter
        trace = batch.trace
        n_layers = trace.n_layers
        k, direction = self.settings.k, self.settings.kl_direction
        chunk = max(1, CHUNK_ELEMENTS // vocab_size(adapter))
        self.options.progress.start(f"{self.name} batch", len(batch.prompt_ids))
        for row, _ in batch:
            length = batch.length(row)
            kl_sum = torch.zeros(n_layers, dtype=torch.float64)
            overlap_sum = torch.zeros(n_layers, dtype=torch.float64)
            for start in range(0, length, chunk):
                stop = min(start + chunk, length)
                final_logp = log_probs(adapter, trace.resid[n_layers, row, start:stop])
                final_topk = final_logp.topk(k, dim=-1).indices
                for layer in range(n_layers):
                    lens_logp = log_probs(adapter, trace.resid[layer, row, start:stop])
                    kl, overlap = lens_metrics(lens_logp, final_logp, final_topk, k, direction)
                    kl_sum[layer] += kl.sum().double().cpu()
                    overlap_sum[layer] += overlap.sum().double().cpu()
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
