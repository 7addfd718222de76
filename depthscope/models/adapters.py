"""Architecture adapters: where each part of a decoder-only LM lives, and what it adds to the residual.

An adapter is declarative. It names, as attribute paths, the decoder layers, the final norm and,
relative to one decoder layer, the module whose output is *exactly* what the
attention sublayer adds to the residual stream (``attn_out``), the same for the MLP (``mlp_out``),
and the module whose first input is the residual the MLP branch reads (``mlp_in``). Everything the
engine does (capture, skip, zero, replace) is expressed through those three hook points, so the
model's own layer code runs unchanged and a new family costs one entry here plus one test.

A site may list alternatives, ``"linear_attn|self_attn"``: each layer uses the first one it has
(hybrid stacks whose layers name their token mixer differently). ``final_norm=""`` means the
unembedding reads the last residual itself (GPT-1). ``packing=False`` keeps the engine from
packing several split points of a prompt into one sequence (mixers that carry state along it).

Families differ only in those names:
- Llama/Mistral/Qwen2/Qwen3/Phi-3/Gemma 1: the attention and MLP module outputs are added;
- Gemma 2/3, OLMo 2: a norm is applied *after* each sublayer, and the norm's output is added;
- GPT-NeoX, Phi-1/2, GPT-J: parallel blocks, both branches read the same input and are added together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import reduce

import torch
from torch import nn

from depthscope.core.errors import DepthscopeError


@dataclass(frozen=True)
class Adapter:
    """Where the residual-stream pieces of one architecture family live."""

    family: str
    model_types: tuple[str, ...]
    layers: str
    final_norm: str
    attn_out: str
    mlp_out: str
    mlp_in: str
    parallel: bool | Callable[[object], bool] = False
    # whether several split points of a prompt may share one packed sequence
    # (engine/packing.py); discovery turns it off for layers a packed replay does not reproduce
    # (state-space and convolution mixers carry state across the packed segments)
    packing: bool = True

    def is_parallel(self, config: object) -> bool:
        return self.parallel(config) if callable(self.parallel) else self.parallel


def _llama_like(family: str, *model_types: str) -> Adapter:
    return Adapter(
        family=family,
        model_types=model_types,
        layers="model.layers",
        final_norm="model.norm",
        attn_out="self_attn",
        mlp_out="mlp",
        mlp_in="post_attention_layernorm",
    )


def _post_norm(family: str, *model_types: str, mlp_in: str) -> Adapter:
    return Adapter(
        family=family,
        model_types=model_types,
        layers="model.layers",
        final_norm="model.norm",
        attn_out="post_attention_layernorm",
        mlp_out="post_feedforward_layernorm",
        mlp_in=mlp_in,
    )


ADAPTERS: tuple[Adapter, ...] = (
    _llama_like("llama", "llama"),
    _llama_like("mistral", "mistral"),
    _llama_like("qwen2", "qwen2"),
    _llama_like("qwen3", "qwen3"),
    _llama_like("phi3", "phi3"),
    _llama_like("gemma", "gemma"),
    _post_norm("gemma2", "gemma2", mlp_in="pre_feedforward_layernorm"),
    _post_norm("gemma3", "gemma3_text", "gemma3", mlp_in="pre_feedforward_layernorm"),
    _post_norm("olmo2", "olmo2", mlp_in="mlp"),
    Adapter(
        family="gpt2",
        model_types=("gpt2",),
        layers="transformer.h",
        final_norm="transformer.ln_f",
        attn_out="attn",
        mlp_out="mlp",
        mlp_in="ln_2",
    ),
    Adapter(
        family="gpt_neox",
        model_types=("gpt_neox",),
        layers="gpt_neox.layers",
        final_norm="gpt_neox.final_layer_norm",
        attn_out="attention",
        mlp_out="mlp",
        mlp_in="post_attention_layernorm",
        parallel=lambda config: bool(getattr(config, "use_parallel_residual", True)),
    ),
    Adapter(
        family="phi",
        model_types=("phi",),
        layers="model.layers",
        final_norm="model.final_layernorm",
        attn_out="self_attn",
        mlp_out="mlp",
        mlp_in="input_layernorm",
        parallel=True,
    ),
    Adapter(
        family="gptj",
        model_types=("gptj",),
        layers="transformer.h",
        final_norm="transformer.ln_f",
        attn_out="attn",
        mlp_out="mlp",
        mlp_in="ln_1",
        parallel=True,
    ),
    # depthscope's weight-shared σ-MoE Transformer (depthscope/models/shared_moe.py): per-layer
    # identity sites, so hooks fire once per unrolled layer although blocks are shared.
    Adapter(
        family="depthscope_shared",
        model_types=("depthscope_shared",),
        layers="model.layers",
        final_norm="model.norm",
        attn_out="attn_out",
        mlp_out="mlp_out",
        mlp_in="mlp_in",
    ),
)

SUPPORTED_FAMILIES = tuple(a.family for a in ADAPTERS)
_REGISTERED: list[Adapter] = []  # added by register_adapter, consulted before the built-in table
_DISCOVERED: list[
    Adapter
] = []  # found from a model's module tree (models/discovery.py), this session

# Where an adapter came from, as run.json's ``load_check.adapter.source`` says it.
SOURCES = ("registered", "table", "discovered")


def register_adapter(adapter: Adapter) -> Adapter:
    """Teach depthscope a new architecture: models whose ``config.model_type`` is one of
    ``adapter.model_types`` use it (before the built-in table and any discovered adapter). Every
    load proves it (``docs/extending.md``)."""
    if not isinstance(adapter, Adapter):
        raise TypeError("register_adapter takes an Adapter")
    _REGISTERED.insert(0, adapter)
    return adapter


def remember_discovered(adapter: Adapter) -> Adapter:
    """Keep a discovered adapter for the rest of the session (after the table and registered
    ones), so a model of the same type (a pruned copy, a second load) is not searched again."""
    _DISCOVERED.insert(0, adapter)
    return adapter


def module_at(root: nn.Module, path: str) -> nn.Module:
    """The submodule of ``root`` at the dotted ``path`` (``"model.layers"``)."""
    return reduce(getattr, path.split("."), root)


def _site(layer: nn.Module, path: str) -> nn.Module:
    """The module at ``path`` in one decoder layer; ``"a|b"`` is the first of ``a``, ``b`` that
    the layer has (stacks whose layers name their mixer differently: ``linear_attn|self_attn``)."""
    for option in path.split("|"):
        try:
            module = module_at(layer, option)
        except AttributeError:
            continue
        if module is not None:
            return module
    raise AttributeError(f"{type(layer).__name__} has none of {path!r}")


def _causal_lm_class(model_type: str) -> str | None:
    # heavy: transformers' auto mappings, needed only when a model type is not in the table
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)


def lookup_adapter(model: nn.Module) -> tuple[Adapter, str] | None:
    """The adapter for ``model`` and its source, or None: a registered adapter for its
    ``config.model_type``, then the table's, then the table's entry whose transformers class
    ``model`` is (EXAONE 3 and InternLM3 are ``LlamaForCausalLM`` under their own model types),
    then one discovered earlier in this session."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for adapter in _REGISTERED:
        if model_type in adapter.model_types:
            return adapter, "registered"
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter, "table"
    name = type(model).__name__
    for adapter in ADAPTERS:
        if any(_causal_lm_class(t) == name for t in adapter.model_types):
            return adapter, "table"
    for adapter in _DISCOVERED:
        if model_type in adapter.model_types:
            return adapter, "discovered"
    return None


def unsupported(model: nn.Module, why: str = "") -> DepthscopeError:
    """The one line that refuses an architecture no adapter describes (``why``: what discovery
    found, if it ran)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return DepthscopeError(
        f"unsupported architecture {type(model).__name__} (model_type={model_type!r})"
        f"{': ' + why if why else ''}; depthscope's table has "
        f"{', '.join(SUPPORTED_FAMILIES)} — describe it with depthscope.Adapter and "
        f"depthscope.register_adapter (docs/extending.md)"
    )


def find_adapter(model: nn.Module) -> Adapter:
    """The adapter for ``model`` (:func:`lookup_adapter`); one clear line if there is none.
    Discovering one needs a forward pass: :func:`depthscope.models.discovery.bind` does that."""
    found = lookup_adapter(model)
    if found is None:
        raise unsupported(model)
    return found[0]


def text_config(config: object) -> object:
    """The config of the language model itself: a multimodal wrapper's text config (Gemma 3,
    Fuyu, ... keep ``hidden_size``, ``num_hidden_layers`` and ``vocab_size`` there), else
    ``config``."""
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def first_tensor(output: object) -> torch.Tensor:
    """The hidden-state tensor of a module output (attention modules return ``(out, weights)``)."""
    return output[0] if isinstance(output, tuple | list) else output


class BoundAdapter:
    """An adapter resolved against one model instance: module handles plus the unembedding."""

    def __init__(self, model: nn.Module, adapter: Adapter | None = None) -> None:
        self.model = model
        self.spec = adapter or find_adapter(model)
        try:
            self.layers: list[nn.Module] = list(module_at(model, self.spec.layers))
            # "" for a model without a final norm (GPT-1: post-norm layers); found by discovery
            self.final_norm = (
                module_at(model, self.spec.final_norm) if self.spec.final_norm else nn.Identity()
            )
            self.unembed_module = model.get_output_embeddings()
            self.attn_out = [_site(layer, self.spec.attn_out) for layer in self.layers]
            self.mlp_out = [_site(layer, self.spec.mlp_out) for layer in self.layers]
            self.mlp_in = [_site(layer, self.spec.mlp_in) for layer in self.layers]
        except AttributeError as exc:
            raise DepthscopeError(
                f"{type(model).__name__} does not have the layout of the {self.spec.family} "
                f"adapter ({exc}); the model may be a variant that needs its own adapter"
            ) from exc
        config = text_config(model.config)
        self.parallel = self.spec.is_parallel(config)
        self.softcap: float | None = getattr(config, "final_logit_softcapping", None) or getattr(
            config, "logits_soft_cap", None
        )
        self.logit_scale: float | None = getattr(config, "logit_scale", None)
        # True once a trace saw the model change a hooked tensor in place after its hook (Falcon's
        # ``mlp_output += attention_output``): the engine then keeps copies (engine/trace.py)
        self.copy_sites = False

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def layer_weights(self) -> int:
        """Weights of one decoder layer: its multiply-adds per token, attention scores aside."""
        return max(sum(p.numel() for p in self.layers[0].parameters()), 1)

    @property
    def unembed_cost(self) -> float:
        """Unembedding one position, in decoder layers' worth of weights (about 8 for smollm2-135m's
        49k vocabulary); for estimating work only."""
        return self.unembed_module.weight.numel() / self.layer_weights

    def layer_pass_cost(self, tokens: int) -> float:
        """One token through one layer of a ``tokens``-long sequence, in units of the layer's
        weights: 1 plus attention's scores and mixing (``2 · tokens · d`` multiply-adds)."""
        d = self.unembed_module.weight.shape[1]
        return 1.0 + 2.0 * tokens * d / self.layer_weights

    @property
    def family(self) -> str:
        return self.spec.family

    def logits(self, resid: torch.Tensor) -> torch.Tensor:
        """Final norm, unembedding and the family's logit post-processing, as the model's head does."""
        return self._post(self.unembed_module(self.final_norm(resid))).to(resid.device)

    def _post(self, logits: torch.Tensor) -> torch.Tensor:
        if self.logit_scale is not None:
            logits = logits * self.logit_scale
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def logit_tiles(self, resid: torch.Tensor, tile: int) -> Iterator[tuple[int, torch.Tensor]]:
        """The logits of ``resid`` as ``(first vocabulary id, [rows, ≤ tile] logits)`` pieces, so a
        consumer that reduces over the vocabulary keeps each piece in cache. A head that is not a
        plain ``nn.Linear`` with its weight in memory (quantised, offloaded, dispatched) gives
        the whole vocabulary as one piece, exactly as :meth:`logits`."""
        head = self.unembed_module
        plain = (
            type(head) is nn.Linear
            and head.weight.device.type != "meta"
            and head.weight.device == resid.device
            and not hasattr(head, "_hf_hook")
        )
        if not plain or tile >= head.weight.shape[0]:
            yield 0, self.logits(resid)
            return
        normed = self.final_norm(resid).to(head.weight.dtype)
        for first in range(0, head.weight.shape[0], tile):
            weight = head.weight[first : first + tile]
            bias = None if head.bias is None else head.bias[first : first + tile]
            yield first, self._post(torch.nn.functional.linear(normed, weight, bias))
