"""Residuals at every layer boundary of a model, at chosen token positions only.

One clean trace per batch of texts; only the aligned positions leave the function, so memory
holds one batch's trace (``(L+1)·B·T·d`` floats) and never all tokens of the run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from depthscope.engine.batch import pad_batch, pad_id
from depthscope.engine.trace import trace
from depthscope.models.loading.loader import LoadedModel


@torch.no_grad()
def collect_residuals(
    lm: LoadedModel,
    sequences: Sequence[Sequence[int]],
    positions: Sequence[Sequence[int]],
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``[L+1, n, d]`` float32: boundary 0 = embedding output, ``L`` = last layer output (pre-norm).

    Rows are the ``positions`` of every sequence, in order (sequence 0's first, ...).
    """
    batch = pad_batch([list(s) for s in sequences], pad_id(lm.tokenizer))
    resid = trace(lm.adapter, batch, sublayers=False).resid  # [L+1, B, T, d]
    rows = torch.cat(
        [torch.full((len(p),), b, dtype=torch.long) for b, p in enumerate(positions)]
    ).to(resid.device)
    cols = torch.cat([torch.as_tensor(list(p), dtype=torch.long) for p in positions]).to(
        resid.device
    )
    picked = resid[:, rows, cols].float()
    return picked if device is None else picked.to(device)
