"""A weight-shared (universal) Transformer with σ-MoE feed-forward layers: our CPU analogue of MoEUT.

MoEUT (paper §3.5, App. E) stacks ``L`` layers made of ``L / G`` repeats of a group of ``G``
distinct layers (18 = 9 × 2), with SwitchHead attention and σ-MoE feed-forward blocks, and needs
Triton kernels. This model keeps what matters for depth usage — the same weights reused at every
repeat, a sparse σ-MoE FFN (:mod:`depthscope.models.sigma_moe`), pre-LN, RoPE — and uses plain
multi-head attention instead of SwitchHead. It is an analogue, not MoEUT.

It is a ``transformers`` ``PreTrainedModel`` with its own ``model_type`` (``depthscope_shared``),
registered with ``AutoConfig``/``AutoModelForCausalLM`` when this module is imported, so a folder
written by ``save_pretrained`` loads with ``AutoModelForCausalLM.from_pretrained`` and
``depthscope.models.loading.loader.load_model``.

Layer positions vs. shared weights: the ``G`` blocks holding the weights live in
``model.blocks``; ``model.layers`` holds one :class:`LayerPosition` per unrolled layer, which runs
its block but owns the three sites depthscope hooks (``attn_out``, ``mlp_in``, ``mlp_out``:
parameter-free identities). A hook on position 5 therefore fires only for position 5, although
its weights are those of positions 1, 3, 7, ...
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from depthscope.models.sigma_moe import SigmaMoE

MODEL_TYPE = "depthscope_shared"


class SharedConfig(PretrainedConfig):
    """Sizes of the shared σ-MoE Transformer (``group_size`` distinct layers, repeated)."""

    model_type = MODEL_TYPE

    def __init__(
        self,
        vocab_size: int = 193,
        hidden_size: int = 128,
        num_hidden_layers: int = 8,
        group_size: int = 2,
        num_attention_heads: int = 4,
        n_experts: int = 32,
        expert_size: int = 64,
        experts_per_token: int = 4,
        max_position_embeddings: int = 2048,
        rope_theta: float = 10000.0,
        layer_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        moe_entropy_weight: float = 0.01,
        tie_word_embeddings: bool = False,
        **kwargs,
    ) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.group_size = group_size
        self.num_attention_heads = num_attention_heads
        self.n_experts = n_experts
        self.expert_size = expert_size
        self.experts_per_token = experts_per_token
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.moe_entropy_weight = moe_entropy_weight
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
        if hidden_size % num_attention_heads:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        if num_hidden_layers % group_size:
            raise ValueError("num_hidden_layers must be a multiple of group_size")


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def rotary_embeddings(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)`` of shape ``[B, T, head_dim]`` for integer ``positions`` ``[B, T]``."""
    inv_freq = 1.0 / theta ** (
        torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim
    )
    angles = positions.float()[..., None] * inv_freq
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


class Attention(nn.Module):
    """Causal multi-head self-attention with rotary position embeddings."""

    def __init__(self, config: SharedConfig) -> None:
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=False)
        self.out = nn.Linear(config.hidden_size, config.hidden_size, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        batch, seq, width = x.shape
        q, k, v = (
            part.view(batch, seq, self.n_heads, -1).transpose(1, 2)
            for part in self.qkv(x).chunk(3, dim=-1)
        )
        cos, sin = (t.unsqueeze(1) for t in position_embeddings)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if attention_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask)
        return self.out(y.transpose(1, 2).reshape(batch, seq, width))


class SharedBlock(nn.Module):
    """The weights of one distinct layer: pre-LN attention and pre-LN σ-MoE."""

    def __init__(self, config: SharedConfig) -> None:
        super().__init__()
        eps = config.layer_norm_eps
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=eps)
        self.attention = Attention(config)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=eps)
        self.ffn = SigmaMoE(
            config.hidden_size, config.n_experts, config.expert_size, config.experts_per_token
        )


class LayerPosition(nn.Module):
    """Unrolled layer ``index``: runs shared block ``index % G`` through its own hook sites.

    The block is held by reference, not registered as a submodule (its parameters belong to
    ``model.blocks``), so the weights are stored once and moved with the model.
    """

    def __init__(self, block: SharedBlock, index: int) -> None:
        super().__init__()
        object.__setattr__(self, "_block", block)
        self.index = index
        self.attn_out = nn.Identity()  # output: what attention adds to the residual
        self.mlp_in = nn.Identity()  # input: the residual the MLP branch reads
        self.mlp_out = nn.Identity()  # output: what the MLP adds to the residual

    @property
    def block(self) -> SharedBlock:
        return self._block

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        block = self.block
        attn = block.attention(
            block.attention_norm(hidden_states), position_embeddings, attention_mask
        )
        hidden_states = hidden_states + self.attn_out(attn)
        mlp = block.ffn(block.ffn_norm(self.mlp_in(hidden_states)))
        return hidden_states + self.mlp_out(mlp)


@dataclass
class SharedCausalLMOutput(ModelOutput):
    """Logits, optional LM loss, hidden states, and the σ-MoE selection regulariser (training)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    aux_loss: torch.Tensor | None = None


class SharedPreTrainedModel(PreTrainedModel):
    config_class = SharedConfig
    base_model_prefix = "model"
    _no_split_modules = ["SharedBlock"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        out_std = std / (2 * self.config.num_hidden_layers) ** 0.5
        if isinstance(module, Attention):
            module.qkv.weight.normal_(0.0, std)
            module.out.weight.normal_(0.0, out_std)
        elif isinstance(module, SigmaMoE):
            module.selection.normal_(0.0, std)
            module.keys.normal_(0.0, std)
            module.values.normal_(0.0, out_std)
        elif isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, std)
        elif isinstance(module, nn.LayerNorm) and module.weight is not None:
            module.weight.fill_(1.0)
            module.bias.zero_()


class SharedModel(SharedPreTrainedModel):
    """Embedding, ``G`` shared blocks unrolled to ``L`` layer positions, final LayerNorm."""

    def __init__(self, config: SharedConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.blocks = nn.ModuleList(SharedBlock(config) for _ in range(config.group_size))
        self.layers = nn.ModuleList(
            LayerPosition(self.blocks[i % config.group_size], i)
            for i in range(config.num_hidden_layers)
        )
        # The paper's final LayerNorm has no affine parameters (App. E).
        self.norm = nn.LayerNorm(
            config.hidden_size, eps=config.layer_norm_eps, elementwise_affine=False
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value


def _attention_mask(mask: torch.Tensor | None, seq: int) -> torch.Tensor | None:
    """None for all-valid inputs (plain causal attention), else causal AND key-valid ``[B,1,T,T]``.

    A query always sees itself, so fully padded rows stay finite.
    """
    if mask is None or bool(mask.all()):
        return None
    causal = torch.ones(seq, seq, dtype=torch.bool, device=mask.device).tril()
    allowed = causal[None] & mask.bool()[:, None, :]
    allowed |= torch.eye(seq, dtype=torch.bool, device=mask.device)[None]
    return allowed[:, None]


class SharedForCausalLM(SharedPreTrainedModel):
    """The shared σ-MoE Transformer with an untied LM head."""

    def __init__(self, config: SharedConfig) -> None:
        super().__init__(config)
        self.model = SharedModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> SharedCausalLMOutput:
        inner = self.model
        hidden = inner.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        batch, seq = hidden.shape[:2]
        if position_ids is None:
            position_ids = torch.arange(seq, device=hidden.device)[None]
        heads = self.config.num_attention_heads
        rotary = rotary_embeddings(
            position_ids, self.config.hidden_size // heads, self.config.rope_theta, hidden.dtype
        )
        mask = _attention_mask(attention_mask, seq)
        for block in inner.blocks:
            block.ffn.aux_losses.clear()
        states = []
        for layer in inner.layers:
            states.append(hidden)
            hidden = layer(hidden, position_embeddings=rotary, attention_mask=mask)
        hidden = inner.norm(hidden)
        logits = self.lm_head(hidden)
        aux = [loss for block in inner.blocks for loss in block.ffn.aux_losses]
        aux_loss = self.config.moe_entropy_weight * torch.stack(aux).mean() if aux else None
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                labels[:, 1:].reshape(-1),
                ignore_index=-100,
            )
        return SharedCausalLMOutput(
            loss=loss,
            logits=logits,
            hidden_states=(*states, hidden) if output_hidden_states else None,
            aux_loss=aux_loss,
        )


AutoConfig.register(MODEL_TYPE, SharedConfig, exist_ok=True)
AutoModelForCausalLM.register(SharedConfig, SharedForCausalLM, exist_ok=True)
