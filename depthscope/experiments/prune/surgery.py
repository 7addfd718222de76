"""Delete decoder layers from a model (no retraining) and save it so ``transformers`` reloads it.

The kept layers are renumbered 0..L−k−1 and the config follows: ``num_hidden_layers`` and every
per-layer list (a list with one entry per layer, such as Gemma 3's and Qwen's ``layer_types``)
keep only the kept layers' entries, so each kept layer keeps its attention type.
"""

from __future__ import annotations

import copy
from collections.abc import Collection
from pathlib import Path

import torch
from torch import nn

from depthscope.core.errors import DepthscopeError
from depthscope.models.adapters import BoundAdapter, module_at
from depthscope.models.loading.loader import LoadedModel

# Lists whose length may equal the layer count by coincidence but that are not per layer.
NOT_PER_LAYER = frozenset({"architectures", "bad_words_ids", "suppress_tokens"})


def kept_layers(n_layers: int, removed: Collection[int]) -> list[int]:
    """The layers that stay, in order; a clear error for an impossible removal."""
    bad = sorted(int(i) for i in removed if not 0 <= int(i) < n_layers)
    if bad:
        raise DepthscopeError(f"cannot remove layers {bad}: the model has layers 0..{n_layers - 1}")
    kept = [i for i in range(n_layers) if i not in set(int(r) for r in removed)]
    if not kept:
        raise DepthscopeError("cannot remove every layer; keep at least one")
    return kept


def per_layer_keys(config: object, n_layers: int) -> list[str]:
    """Config attributes holding one entry per layer."""
    return [
        key
        for key, value in vars(config).items()
        if not key.startswith("_")
        and key not in NOT_PER_LAYER
        and isinstance(value, list | tuple)
        and len(value) == n_layers
    ]


def update_config(config: object, kept: list[int], n_layers: int) -> list[str]:
    """Shrink ``config`` (a multimodal one's text config) to ``kept``; returns the lists cut."""
    target = config.get_text_config() if hasattr(config, "get_text_config") else config
    keys = per_layer_keys(target, n_layers)
    for key in keys:
        value = getattr(target, key)
        setattr(target, key, type(value)(value[i] for i in kept))
    target.num_hidden_layers = len(kept)
    return keys


def pruned_copy(lm: LoadedModel, removed: Collection[int]) -> nn.Module:
    """A copy of ``lm.model`` without the ``removed`` decoder layers (the original is untouched)."""
    n_layers = lm.n_layers
    kept = kept_layers(n_layers, removed)
    model = copy.deepcopy(lm.model)
    path = lm.adapter.spec.layers
    parent_path, _, name = path.rpartition(".")
    parent = module_at(model, parent_path) if parent_path else model
    layers = getattr(parent, name)
    setattr(parent, name, nn.ModuleList([layers[i] for i in kept]))
    for new_index, layer in enumerate(getattr(parent, name)):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    update_config(model.config, kept, n_layers)
    BoundAdapter(model, lm.adapter.spec)  # the copy must still have the adapter's layout
    return model


def save_pruned(lm: LoadedModel, removed: Collection[int], folder: Path) -> Path:
    """Write the model without ``removed`` layers (and the tokenizer) with ``save_pretrained``."""
    return write_pruned(lm, pruned_copy(lm, removed), removed, folder)


def write_pruned(lm: LoadedModel, model, removed: Collection[int], folder: Path, **record) -> Path:
    """Save ``model`` (``lm`` without ``removed``, perhaps healed) and ``lm``'s tokenizer, with a
    record of the pruning (and ``record``'s extra fields) in its config."""
    model.config.depthscope_pruning = {
        "original_layers": lm.n_layers,
        "removed_layers": sorted(int(i) for i in removed),
        "kept_layers": kept_layers(lm.n_layers, removed),
        **record,
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        model.save_pretrained(folder)
    if lm.tokenizer is not None:
        lm.tokenizer.save_pretrained(folder)
    return folder
