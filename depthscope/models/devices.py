"""Which device each part of a (possibly dispatched) model computes on, and moving values there.

A model loaded with ``device_map`` (accelerate's ``dispatch_model``) may keep its layers on several
GPUs, on the CPU, or offloaded to CPU memory or disk with a hook that moves the weights in just
before the layer runs (its parameters then sit on the ``meta`` device in between). The engine keeps
every measurement on one *home* device (where the input embedding computes) and runs each layer
on that layer's *execution* device: the hook's ``execution_device`` if accelerate placed the layer,
else the device of its parameters. For an undispatched model all of this is the identity.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from depthscope.core.errors import DepthscopeError


def _hooks(module: nn.Module) -> list:
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        return []
    return list(getattr(hook, "hooks", None) or [hook])  # a SequentialHook holds several


def execution_device(module: nn.Module, fallback: torch.device | str | None = None) -> torch.device:
    """Where ``module`` computes: accelerate's execution device, else its parameters' device.

    The hook may sit on the module itself (``dispatch_model`` places whole layers) or on its
    submodules (``cpu_offload`` hooks every module that holds weights).
    """
    for part in module.modules():  # the module itself first
        for hook in _hooks(part):
            device = getattr(hook, "execution_device", None)
            if device is not None:
                return torch.device(device)  # an int means that CUDA device
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.device.type != "meta":
            return tensor.device
    if fallback is not None:
        return torch.device(fallback)
    raise DepthscopeError(
        f"{type(module).__name__} has its weights offloaded (meta device) without an accelerate "
        f"hook that brings them in; load the model with --device-map instead of moving weights by hand"
    )


def home_device(model: nn.Module) -> torch.device:
    """The device where token ids go in and where the engine keeps measurements."""
    return execution_device(model.get_input_embeddings(), fallback="cpu")


def to_device(value: object, device: torch.device) -> object:
    """``value`` with every tensor in it (nested tuples, lists, dicts) on ``device``.

    Tensors already there are returned as they are, so this costs nothing on one device.
    """
    if isinstance(value, torch.Tensor):
        return value if value.device == device else value.to(device)
    if isinstance(value, tuple | list):
        return type(value)(to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value
