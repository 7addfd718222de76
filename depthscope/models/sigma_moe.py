"""σ-MoE feed-forward layer in pure PyTorch (Csordás et al. 2023; the FFN of MoEUT, paper §3.5).

Each token picks its ``k`` experts by the largest sigmoid gates ``σ(x W_sel)``, and the layer
returns ``Σ_e σ_e · ReLU(x K_e) V_e`` over those experts. MoEUT runs this with Triton kernels; here
every expert is one small matmul over the tokens that chose it, which is what a CPU can do. The
paper's entropy regularisation of the selection (weight 0.01) is kept: in training mode each call
records ``-H(mean_tokens softmax(x W_sel))`` in :attr:`aux_losses`, and the model adds it to the
loss.
"""

from __future__ import annotations

import torch
from torch import nn


class SigmaMoE(nn.Module):
    """``n_experts`` ReLU experts of ``expert_size`` units, ``k`` active per token, sigmoid gates."""

    def __init__(self, d_model: int, n_experts: int, expert_size: int, k: int) -> None:
        super().__init__()
        if not 1 <= k <= n_experts:
            raise ValueError(f"experts per token must be in [1, {n_experts}], got {k}")
        self.k = k
        self.selection = nn.Parameter(torch.empty(n_experts, d_model))
        self.keys = nn.Parameter(torch.empty(n_experts, d_model, expert_size))
        self.values = nn.Parameter(torch.empty(n_experts, expert_size, d_model))
        self.aux_losses: list[torch.Tensor] = []

    @property
    def n_experts(self) -> int:
        return int(self.keys.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        logits = flat @ self.selection.t()  # [N, E]
        gates, chosen = torch.sigmoid(logits).topk(self.k, dim=-1)  # [N, k]
        out = torch.zeros_like(flat)
        for expert in range(self.n_experts):
            token, slot = (chosen == expert).nonzero(as_tuple=True)
            if token.numel() == 0:
                continue
            hidden = torch.relu(flat[token] @ self.keys[expert])
            out = out.index_add(0, token, (hidden @ self.values[expert]) * gates[token, slot, None])
        if self.training and torch.is_grad_enabled():
            usage = torch.softmax(logits, dim=-1).mean(dim=0)
            self.aux_losses.append((usage * torch.log(usage.clamp_min(1e-12))).sum())
        return out.reshape(x.shape)
