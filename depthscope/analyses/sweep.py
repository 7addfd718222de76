"""Sweeps: for one prompt, many single-layer interventions as rows of a few replays.

Row ``i`` intervenes on layer ``layers[i]`` (and starts there, so earlier layers are never
recomputed). While the replay runs, an observer turns each layer's recomputed contribution into
the relative change against the clean contribution, maxed over the row's measured positions,
so no per-layer activations are kept. Output-distribution changes are computed only at the
measured positions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from depthscope.analyses.base import Progress
from depthscope.analyses.outputs import OutputComparer
from depthscope.engine.replay import Intervention, LayerStep, replay
from depthscope.engine.stats import masked_max, safe_ratio
from depthscope.engine.trace import Trace
from depthscope.models.adapters import BoundAdapter


@dataclass
class SweepRows:
    """Per-row intervention layer, intervened positions and measured positions."""

    layers: torch.Tensor  # [n] long
    positions: torch.Tensor  # [n, T] bool
    measured: torch.Tensor  # [n, T] bool

    def __len__(self) -> int:
        return int(self.layers.numel())

    def take(self, index: torch.Tensor) -> SweepRows:
        return SweepRows(self.layers[index], self.positions[index], self.measured[index])


InterventionFactory = Callable[[SweepRows], Intervention]


@dataclass
class SweepResult:
    effect: torch.Tensor  # [n, L]: relative change of each layer's contribution
    output_change: torch.Tensor | None  # [n]


def sweep(
    adapter: BoundAdapter,
    trace: Trace,
    prompt: int,
    rows: SweepRows,
    make_intervention: InterventionFactory,
    *,
    read_before_edit: bool,
    outputs: OutputComparer | None,
    batch_size: int,
    progress: Progress,
) -> SweepResult:
    """Run ``rows`` in chunks of ``batch_size`` and measure each layer's relative change.

    ``read_before_edit`` chooses which contribution is compared: the layer's own recomputed
    output (local effects, spec E6) or the output after the intervention overwrote it (skips,
    spec E3/E4, where a skipped layer's contribution is 0 at the skipped positions).
    """
    n_layers = trace.n_layers
    clean = trace.contributions(prompt).float()  # [L, T, d]
    clean_norm = clean.norm(dim=-1)  # [L, T]
    effect = torch.zeros(len(rows), n_layers, dtype=torch.float32, device=clean.device)
    change = None if outputs is None else torch.zeros(len(rows), device=clean.device)
    order = torch.argsort(rows.layers, stable=True)
    for chunk in order.split(batch_size):
        part = rows.take(chunk)

        def observe(step: LayerStep, part: SweepRows = part, chunk: torch.Tensor = chunk) -> None:
            out = step.out_raw if read_before_edit else step.resid_out
            recomputed = (out - step.resid_in).float()
            diff = (recomputed - clean[step.layer]).norm(dim=-1)
            rel = safe_ratio(diff, clean_norm[step.layer])
            effect[chunk[step.rows], step.layer] = masked_max(rel, part.measured[step.rows])

        finals = replay(
            adapter,
            trace,
            prompt,
            part.layers,
            intervention=make_intervention(part),
            observe=observe,
        )
        if outputs is not None:
            change[chunk] = outputs.max_change(finals, part.measured)
        progress.advance(int(chunk.numel()))
    return SweepResult(effect=effect, output_change=change)
