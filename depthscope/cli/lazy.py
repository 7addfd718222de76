"""A command's handler, imported only when the command runs: how ``depthscope --help`` stays light.

Each command's parser module (``depthscope/cli/<command>.py``) imports only light modules (its
arguments, their help and defaults, checks of option values) and names its handler::

    parser.set_defaults(handler=Handler("depthscope.cli.handlers.maps:run_map", check=check))

When the command runs, ``check(args)`` (light, optional) comes first, so an option the command
refuses (``-n 0``) is answered without importing torch, transformers or matplotlib; then the
module before the colon is imported and the function after it is called with ``args`` and
returns the exit status. ``depthscope --help``, ``depthscope COMMAND --help`` and a refused
option never import a handler module.

This is the package's one way of importing a module named by a string (apart from the lazy front
door, ``depthscope/__init__.py``): ``tests/test_layers.py`` reads every ``Handler("...")`` as an
import of its module (it must not climb a layer) and refuses other imports by name; the handler
modules sit in :mod:`depthscope.cli.handlers`. ``tests/cli/test_light_cli.py`` resolves every
command's handler and checks what ``--help`` imports.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Handler:
    """``"package.module:function"``, imported and called when the command runs, after ``check``."""

    target: str
    check: Callable[[argparse.Namespace], None] | None = None

    def __post_init__(self) -> None:
        module, colon, name = self.target.partition(":")
        if not (module and colon and name.isidentifier()):
            raise ValueError(f"a handler is named 'package.module:function', got {self.target!r}")

    def load(self) -> Callable[[argparse.Namespace], int]:
        """The handler function (its module is imported now)."""
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)

    def run(self, args: argparse.Namespace) -> int:
        """Import the handler and run it (without ``check``)."""
        return self.load()(args)

    def __call__(self, args: argparse.Namespace) -> int:
        """``check``, then the handler: what the command does; returns the exit status."""
        if self.check is not None:
            self.check(args)
        return self.run(args)
