"""Which layers to remove: one ranking (or block choice) per criterion.

- ``future-effect`` (this paper, §3.2, Fig. 17b): the layer's future output change
  ``O[s] = max_p ‖P[p] − P̄[p]‖₂`` over future tokens when ``s`` is skipped on past tokens;
  the smallest go first. ``current-effect`` is the same measured at the skipped tokens (Fig. 17a).
- ``block-influence`` (ShortGPT, Men et al. 2024): ``BI_l = 1 − mean_t cos(h_l[t], h_{l+1}[t])``
  over all tokens of the calibration prompts; the smallest go first.
- ``angular`` (Gromov et al. 2024): for a block of ``n`` layers starting at ``l``,
  ``d(l, n) = mean_x arccos(cos(h_l[T], h_{l+n}[T])) / π`` at each prompt's final token ``T``;
  removing ``n`` layers removes the block ``[l*, l*+n)`` with ``l* = argmin_l d(l, n)``.
- ``random``: a seeded permutation; the baseline every criterion must beat.

Ranked criteria remove nested sets (the first ``k`` of the ranking); ``angular`` chooses a
contiguous block per ``k``, so its sets need not be nested.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from depthscope.core.progress import Progress
from depthscope.engine.batch import pad_batch, pad_id
from depthscope.engine.trace import trace
from depthscope.experiments.prune.surgery import kept_layers, pruned_copy
from depthscope.models.loading.loader import LoadedModel


@dataclass
class Calibration:
    """Residual statistics of the calibration prompts that Block Influence and angular need."""

    block_influence: np.ndarray  # [L]: 1 − token-mean cos(h_l, h_{l+1})
    last_token_resid: np.ndarray  # [N, L+1, d]: each prompt's final-token residual per boundary
    n_tokens: int

    def angular_distance(self, n: int) -> np.ndarray:
        """``d(l, n)`` for every block start ``l = 0 .. L−n`` (mean over prompts)."""
        resid = self.last_token_resid
        a, b = resid[:, : resid.shape[1] - n], resid[:, n:]
        cos = (a * b).sum(-1) / np.maximum(
            np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12
        )
        return (np.arccos(np.clip(cos, -1.0, 1.0)) / np.pi).mean(axis=0)


@torch.no_grad()
def calibrate(
    lm: LoadedModel, sequences: Sequence[Sequence[int]], progress: Progress | None = None
) -> Calibration:
    """One clean pass per prompt: Block Influence sums over all tokens, final-token residuals."""
    progress = progress or Progress()
    progress.start("calibration prompts", len(sequences))
    n_layers = lm.n_layers
    cos_sum = torch.zeros(n_layers, dtype=torch.float64)
    n_tokens = 0
    last = []
    for ids in sequences:
        traced = trace(lm.adapter, pad_batch([list(ids)], pad_id(lm.tokenizer)), sublayers=False)
        resid = traced.resid[:, 0].float()  # [L+1, T, d]
        cos = torch.nn.functional.cosine_similarity(resid[:-1], resid[1:], dim=-1)  # [L, T]
        cos_sum += cos.sum(dim=1).double().cpu()
        n_tokens += int(resid.shape[1])
        last.append(resid[:, -1].double().cpu().numpy())
        progress.advance(1)
    return Calibration(
        block_influence=(1.0 - cos_sum / max(n_tokens, 1)).numpy(),
        last_token_resid=np.stack(last),
        n_tokens=n_tokens,
    )


def ranking(scores: Sequence[float]) -> list[int]:
    """Layers from least to most important (lowest score first; ties keep layer order)."""
    return [int(i) for i in np.argsort(np.asarray(scores, dtype=float), kind="stable")]


def random_ranking(n_layers: int, seed: int) -> list[int]:
    return [int(i) for i in np.random.default_rng(seed).permutation(n_layers)]


def angular_block(calibration: Calibration, n: int) -> list[int]:
    """The ``n`` contiguous layers whose removal Gromov et al.'s rule chooses."""
    distances = calibration.angular_distance(n)
    start = int(np.argmin(distances))
    return list(range(start, start + n))


@torch.no_grad()
def iterative_block_influence(
    lm: LoadedModel, sequences: Sequence[Sequence[int]], max_drop: int, progress: Progress
) -> tuple[dict[int, list[int]], list[list[float]]]:
    """Block Influence re-measured after each removal: remove the lowest-BI layer of the model
    as pruned so far, then recompute BI on the pruned model (the iterative variant SLEB and
    ShortGPT's follow-ups compare with the one-shot ranking)."""
    removed: list[int] = []
    sets, scores = {}, []
    for k in range(1, max_drop + 1):
        current = (
            LoadedModel.from_model(pruned_copy(lm, removed), lm.tokenizer, name=lm.name)
            if removed
            else lm
        )
        influence = calibrate(current, sequences).block_influence.tolist()
        kept = kept_layers(lm.n_layers, removed)
        removed.append(kept[int(np.argmin(influence))])
        sets[k] = sorted(removed)
        scores.append([round(v, 6) for v in influence])
        progress.advance(1)
    return sets, scores


def removal_sets(
    criterion: str, max_drop: int, *, order: list[int] | None, calibration: Calibration | None
) -> dict[int, list[int]]:
    """``{k: sorted layers removed}`` for ``k = 1 .. max_drop``."""
    if criterion == "angular":
        assert calibration is not None
        return {k: angular_block(calibration, k) for k in range(1, max_drop + 1)}
    assert order is not None
    return {k: sorted(order[:k]) for k in range(1, max_drop + 1)}
