"""Effective depth: where along the depth a profile's importance sits, with no threshold.

For a profile ``y`` over indices ``i`` (layers, or residual boundaries for the lens) and an
importance ``w_i ≥ 0`` read from it, the effective depth is the importance-weighted mean index as
a relative depth::

    effective depth = (Σ_i i · w_i / Σ_i w_i) / L

It is the paper's depth score (§4, ``Σ_s s · e_s / Σ_s e_s``) applied to a verdict profile: no
constant decides what "matters", so it moves smoothly with the profile and can be compared across
models of any depth. A model whose first ``c`` of ``L`` layers matter equally (and the rest not at
all) has effective depth ``(c − 1) / 2L``; equal importance everywhere gives about 0.5.

The importance each profile offers (its card's ``Profile.importance``):

- ``value``: the profile itself (effects, output changes, relative contributions, the lens's KL:
  how much is still left to change);
- ``one-minus``: ``1 − y`` (the lens's top-k overlap: the share of the output's top-k not yet
  found);
- ``dissimilarity``: ``(1 − y) / 2`` (a cosine: how far the layer writes from the residual's
  direction).
"""

from __future__ import annotations

import numpy as np

IMPORTANCE = {
    "value": "the profile itself",
    "one-minus": "1 − the profile",
    "dissimilarity": "(1 − the profile) / 2",
}


def importance(rows: np.ndarray, kind: str) -> np.ndarray:
    rows = np.asarray(rows, dtype=float)
    if kind == "value":
        weights = rows
    elif kind == "one-minus":
        weights = 1.0 - rows
    elif kind == "dissimilarity":
        weights = (1.0 - rows) / 2.0
    else:
        raise ValueError(f"importance must be one of {', '.join(IMPORTANCE)}, got {kind!r}")
    return np.clip(weights, 0.0, None)


def effective_depth(rows: np.ndarray, kind: str, n_layers: int) -> np.ndarray:
    """Per row: the importance-weighted mean index over ``n_layers`` (NaN entries skipped; NaN
    where a row has no importance at all)."""
    rows = np.atleast_2d(np.asarray(rows, dtype=float))
    weights = importance(rows, kind)
    finite = np.isfinite(weights)
    weights = np.where(finite, weights, 0.0)
    index = np.arange(rows.shape[1], dtype=float)
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weights @ index / total / n_layers, np.nan)
