"""The two from-scratch architectures of E11, at laptop scale (paper §3.5, App. E).

- ``transformer``: a stock GPT-NeoX with sequential (not parallel) residuals, full rotary
  embeddings and a ReLU FFN of width 4d, i.e. the paper's pre-LN / RoPE / ReLU Transformer, in an
  architecture every ``transformers`` release since 4.x loads without depthscope.
- ``shared``: the weight-shared σ-MoE Transformer of :mod:`depthscope.models.shared_moe`, our
  CPU analogue of MoEUT. By default its experts are sized so that it has about as many parameters as
  the Transformer of the same depth and width (as MoEUT is parameter-matched to its baseline), with
  ``k·expert_size = 2d`` active FFN units per token (MoEUT 244M: 16 · 128 = 2 · 1024).
"""

from __future__ import annotations

import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from depthscope.experiments.training.recipes import ARCHS as ARCHS  # re-exported
from depthscope.experiments.training.recipes import ModelSize
from depthscope.models.shared_moe import SharedConfig, SharedForCausalLM


def transformer_config(size: ModelSize, vocab_size: int, pad_id: int, eos_id: int) -> GPTNeoXConfig:

    config = GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=size.d_model,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        intermediate_size=4 * size.d_model,
        hidden_act="relu",
        use_parallel_residual=False,
        max_position_embeddings=size.max_len,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "partial_rotary_factor": 1.0,
        },
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        initializer_range=0.02,
        hidden_dropout=0.0,
        attention_dropout=0.0,
    )
    # transformers 4.x reads the rotary fraction and base from these names
    config.rotary_pct = 1.0
    config.rotary_emb_base = 10000
    return config


def shared_config(size: ModelSize, vocab_size: int, pad_id: int, eos_id: int) -> SharedConfig:

    n_experts, k = size.experts()
    return SharedConfig(
        vocab_size=vocab_size,
        hidden_size=size.d_model,
        num_hidden_layers=size.layers,
        group_size=size.group_size,
        num_attention_heads=size.heads,
        n_experts=n_experts,
        expert_size=size.expert_size,
        experts_per_token=k,
        max_position_embeddings=size.max_len,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
    )


def build_model(
    arch: str, size: ModelSize, vocab_size: int, pad_id: int, eos_id: int, seed: int
) -> torch.nn.Module:
    """A freshly initialised fp32 model; the same seed gives the same weights."""
    size.check(arch)
    torch.manual_seed(seed)
    if arch == "transformer":
        return GPTNeoXForCausalLM(transformer_config(size, vocab_size, pad_id, eos_id))

    return SharedForCausalLM(shared_config(size, vocab_size, pad_id, eos_id))


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
