"""How a tuned lens is trained (``depthscope lens train``), as plain data: no torch to import.

``depthscope lens train --help`` shows these defaults and a setting the run refuses is answered
before anything heavy loads; :mod:`depthscope.experiments.lens` trains with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from depthscope.core.errors import DepthscopeError


@dataclass(frozen=True)
class LensSettings:
    """How a lens is trained (all recorded in ``lens.json``)."""

    data: str = "builtin:text"
    tokens: int = 16384  # training tokens
    heldout_tokens: int = 2048  # tokens scored at the end, from texts not trained on
    seq_len: int = 128
    batch: int = 4  # windows per step
    lr: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 10

    def check(self) -> None:
        for name in ("tokens", "heldout_tokens", "seq_len", "batch", "checkpoint_every"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise DepthscopeError(f"{flag} must be at least 1 (got {getattr(self, name)})")
        if not self.lr > 0:
            raise DepthscopeError(f"--lr must be positive (got {self.lr})")

    @property
    def steps(self) -> int:
        return max(1, math.ceil(self.tokens / (self.batch * self.seq_len)))
