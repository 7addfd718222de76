"""Output distributions at chosen positions, computed in chunks so [positions, vocab] stays small."""

from __future__ import annotations

import torch

from depthscope.engine.stats import masked_max, masked_sum
from depthscope.models.adapters import BoundAdapter

CHUNK_ELEMENTS = 1 << 24  # floats per [positions, vocab] block (64 MB in fp32)


def _chunk_rows(vocab: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(vocab, 1))


def log_probs(adapter: BoundAdapter, resid: torch.Tensor) -> torch.Tensor:
    """fp32 log-softmax of the model's logits for residuals ``[M, d]`` (pre-final-norm)."""
    return torch.log_softmax(adapter.logits(resid).float(), dim=-1)


def probs(adapter: BoundAdapter, resid: torch.Tensor) -> torch.Tensor:
    """fp32 output distribution for residuals ``[M, d]`` (pre-final-norm)."""
    return torch.softmax(adapter.logits(resid).float(), dim=-1)


def vocab_size(adapter: BoundAdapter) -> int:
    weight = adapter.unembed_module.weight
    return int(weight.shape[0])


def output_change(variant: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``‖P̄ − P‖₂`` per position: L2 distance between output distributions ``[..., V]``.

    The paper's output change (§3.2, Fig. 17), chosen over KL for its clearer plots. ``variant`` is
    overwritten (no second ``[positions, vocab]`` buffer).
    """
    return variant.sub_(clean).norm(dim=-1)


class OutputComparer:
    """Compares variant output distributions with the clean one of a single prompt.

    The clean probabilities of all (valid) positions are computed once; variant rows are then
    unembedded only at the positions where they are measured.
    """

    def __init__(self, adapter: BoundAdapter, clean_final: torch.Tensor) -> None:
        self.adapter = adapter
        self.rows_per_chunk = _chunk_rows(vocab_size(adapter))
        chunks = [
            log_probs(adapter, part).exp() for part in clean_final.split(self.rows_per_chunk, dim=0)
        ]
        self.clean_probs = torch.cat(chunks, dim=0)  # [T, V]

    @torch.no_grad()
    def max_change(self, finals: torch.Tensor, measured: torch.Tensor) -> torch.Tensor:
        """Max over measured positions of ``‖P̄[p] − P[p]‖₂`` (0 where nothing is measured).

        ``measured`` is ``[n, T]`` (result ``[n]``) or groups ``[n, G, T]`` (result ``[n, G]``);
        each (row, position) is unembedded once however many groups measure it.
        """
        return self.compare(finals, measured)[0]

    @torch.no_grad()
    def compare(
        self, finals: torch.Tensor, measured: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Max and sum over measured positions of ``‖P̄[p] − P[p]‖₂``, from one unembedding of
        each measured (row, position); shapes as :meth:`max_change`."""
        grouped = measured.dim() == 3
        groups = measured if grouped else measured[:, None, :]
        rows, positions = groups.any(dim=1).nonzero(as_tuple=True)
        change = torch.zeros(
            groups.shape[0], groups.shape[2], dtype=torch.float32, device=finals.device
        )
        for start in range(0, int(rows.numel()), self.rows_per_chunk):
            r = rows[start : start + self.rows_per_chunk]
            p = positions[start : start + self.rows_per_chunk]
            change[r, p] = output_change(probs(self.adapter, finals[r, p]), self.clean_probs[p])
        largest = masked_max(change[:, None, :], groups)
        total = masked_sum(change[:, None, :], groups)
        return (largest, total) if grouped else (largest[:, 0], total[:, 0])
