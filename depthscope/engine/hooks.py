"""The three hook points through which the engine sees and edits a decoder layer.

For every layer, ``attention`` fires on the module whose output is what attention adds to the
residual, ``mlp`` on the one whose output the MLP adds, and ``mlp_in`` (a pre-hook) on the module
that reads the MLP branch's input. A single active :class:`SiteHandler` receives each event and
may return a replacement value; with no handler the hooks are inert, so the model behaves exactly
as without depthscope.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import torch

from depthscope.models.adapters import BoundAdapter, first_tensor


class SiteHandler(Protocol):
    def on_site(self, layer: int, site: str, value: torch.Tensor) -> torch.Tensor | None:
        """Called with a sublayer's value; return a tensor to replace it, or None to keep it."""


def _replace_first(output: object, value: torch.Tensor) -> object:
    if isinstance(output, tuple):
        return (value, *output[1:])
    if isinstance(output, list):
        return [value, *output[1:]]
    return value


class SiteHooks:
    """Hooks installed on a model's sublayer sites, dispatching to the current handler."""

    def __init__(self, adapter: BoundAdapter) -> None:
        self.adapter = adapter
        self.handler: SiteHandler | None = None
        self._handles: list = []

    def _output_hook(self, layer: int, site: str):
        def hook(module, inputs, output):
            if self.handler is None:
                return None
            new = self.handler.on_site(layer, site, first_tensor(output))
            return None if new is None else _replace_first(output, new)

        return hook

    def _input_hook(self, layer: int):
        def hook(module, args, kwargs):
            if self.handler is not None:
                value = args[0] if args else next(iter(kwargs.values()))
                self.handler.on_site(layer, "mlp_in", value)
            return None

        return hook

    def install(self) -> None:
        a = self.adapter
        for layer in range(a.n_layers):
            self._handles.append(
                a.attn_out[layer].register_forward_hook(self._output_hook(layer, "attention"))
            )
            self._handles.append(
                a.mlp_out[layer].register_forward_hook(self._output_hook(layer, "mlp"))
            )
            self._handles.append(
                a.mlp_in[layer].register_forward_pre_hook(self._input_hook(layer), with_kwargs=True)
            )

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @contextmanager
    def handling(self, handler: SiteHandler) -> Iterator[None]:
        """Route site events to ``handler`` for the duration of the block."""
        previous, self.handler = self.handler, handler
        try:
            yield
        finally:
            self.handler = previous


@contextmanager
def site_hooks(adapter: BoundAdapter) -> Iterator[SiteHooks]:
    """Install hooks for the duration of a block; they are always removed afterwards."""
    hooks = SiteHooks(adapter)
    hooks.install()
    try:
        yield hooks
    finally:
        hooks.remove()
