"""Sweeps: for one prompt, one intervention per layer, all run as rows of a few replays.

A :class:`Sweep` says what is done to layer ``s`` (its intervention) and what is measured at every
later layer ``l`` (a function of the clean and the changed contribution, by default the relative
change) and at the output (the change of the output distribution). A :class:`Window` says where:
split points ``t`` (intervene on ``[front, t)``, measure on ``[t, T)``) or all positions.

Row ``i`` intervenes on layer ``layers[i]`` (and starts there, so earlier layers are never
recomputed). While the replay runs, an observer turns each layer's contribution into the measure
against the clean contribution, maxed over the row's measured positions (the paper's
aggregation) and summed over them (for the position mean, which does not saturate the way a max
does), so no per-layer activations are kept. Output-distribution changes are computed only at the
measured positions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from depthscope.core.progress import Progress
from depthscope.engine.adaptive_batch import AdaptiveBatch, as_batches
from depthscope.engine.outputs import OutputComparer
from depthscope.engine.prefix_packing import PackedPrompt, pack_prompt
from depthscope.engine.replay import Intervention, LayerStep, replay
from depthscope.engine.stats import masked_max, masked_sum, relative_change
from depthscope.engine.trace import Trace
from depthscope.models.adapters import BoundAdapter


@dataclass
class SweepRows:
    """Per-row intervention layer, intervened positions, and groups of measured positions.

    ``measured[i, g]`` is the g-th set of positions measured for row ``i``; effects are maxed
    within each group separately (one group per split point when splits are packed in one row).
    """

    layers: torch.Tensor  # [n] long
    positions: torch.Tensor  # [n, T] bool
    measured: torch.Tensor  # [n, G, T] bool

    def __len__(self) -> int:
        return int(self.layers.numel())

    def take(self, index: torch.Tensor) -> SweepRows:
        return SweepRows(self.layers[index], self.positions[index], self.measured[index])

    def to(self, device: torch.device) -> SweepRows:
        return SweepRows(
            self.layers.to(device), self.positions.to(device), self.measured.to(device)
        )


InterventionFactory = Callable[[SweepRows, Trace, int], Intervention]
Measure = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
CONTRIBUTIONS = ("after-edit", "recomputed")


@dataclass(frozen=True)
class Sweep:
    """What a sweep does to layer ``s`` and what it measures afterwards.

    ``contribution`` chooses which contribution of a later layer is compared with the clean one:
    ``"after-edit"`` is what the layer passes on after the intervention (a skipped layer adds 0 at
    the skipped positions; paper §3.2), ``"recomputed"`` is what the layer itself computed before an
    edit overwrote its output (local effects, §3.4). ``layer_measure(changed, clean, clean_norm)``
    gives the per-position change (default: the relative change); ``output`` also measures the
    change of the output distribution.
    """

    intervention: InterventionFactory
    contribution: str = "after-edit"
    layer_measure: Measure = relative_change
    output: bool = True

    def __post_init__(self) -> None:
        if self.contribution not in CONTRIBUTIONS:
            raise ValueError(f"contribution must be one of {CONTRIBUTIONS}")


@dataclass(frozen=True)
class Window:
    """Where a sweep acts on one prompt: split points ``t`` and the protected first positions.

    For a split point ``t`` the intervention covers ``[front, t)`` and the measurement ``[t, T)``
    (future tokens); ``t=None`` intervenes on ``[front, T)`` and measures every position.
    """

    splits: tuple
    front: int = 1


@dataclass
class SweepResult:
    effect: torch.Tensor  # [n, G, L]: relative change of each layer's contribution, per group
    output_change: torch.Tensor | None  # [n, G]
    effect_sum: torch.Tensor  # [n, G, L]: the same, summed over the group's positions
    output_sum: torch.Tensor | None  # [n, G]
    counts: torch.Tensor  # [n, G]: measured positions per group


@dataclass
class PromptSweep:
    """One prompt's sweep: per intervened layer ``s``, the paper's max over measured positions and
    split points, and the mean over the same (position, split) pairs."""

    effect: torch.Tensor  # [L, L]
    output: torch.Tensor | None  # [L]
    effect_mean: torch.Tensor  # [L, L]
    output_mean: torch.Tensor | None  # [L]
    # per split point, before the max over them: [S, L, L] and [S, L] (resampled by the verdict)
    effect_splits: torch.Tensor | None = None
    output_splits: torch.Tensor | None = None


def sweep_rows(
    adapter: BoundAdapter,
    trace: Trace,
    prompt: int,
    rows: SweepRows,
    spec: Sweep,
    *,
    outputs: OutputComparer | None,
    batch_size: int | AdaptiveBatch,
    progress: Progress,
) -> SweepResult:
    """Run ``rows`` in chunks of ``batch_size`` and measure every later layer (and the output)."""
    n_layers = trace.n_layers
    groups = rows.measured.shape[1]
    clean = trace.contributions(prompt).float()  # [L, T, d]
    clean_norm = clean.norm(dim=-1)  # [L, T]
    effect = torch.zeros(len(rows), groups, n_layers, dtype=torch.float32, device=clean.device)
    effect_sum = torch.zeros_like(effect)
    change = None if outputs is None else torch.zeros(len(rows), groups, device=clean.device)
    change_sum = None if change is None else torch.zeros_like(change)
    order = torch.argsort(rows.layers, stable=True)

    def run_chunk(start: int, stop: int) -> None:
        chunk = order[start:stop]
        part = rows.take(chunk)

        def observe(step: LayerStep) -> None:
            out = step.out_raw if spec.contribution == "recomputed" else step.resid_out
            changed = (out - step.resid_in).float()
            measure = spec.layer_measure(changed, clean[step.layer], clean_norm[step.layer])
            where = part.measured[step.rows]
            effect[chunk[step.rows], :, step.layer] = masked_max(measure[:, None, :], where)
            effect_sum[chunk[step.rows], :, step.layer] = masked_sum(measure[:, None, :], where)

        finals = replay(
            adapter,
            trace,
            prompt,
            part.layers,
            intervention=spec.intervention(part, trace, prompt),
            observe=observe,
        )
        if outputs is not None:
            change[chunk], change_sum[chunk] = outputs.compare(finals, part.measured)
        progress.advance(int(chunk.numel()))

    as_batches(batch_size).run(int(order.numel()), run_chunk)
    return SweepResult(
        effect=effect,
        output_change=change,
        effect_sum=effect_sum,
        output_sum=change_sum,
        counts=rows.measured.sum(dim=-1).to(torch.float32),
    )


class _PerLayer(Progress):
    """Report a sweep's rows as layers done (rows may be several per layer, or packed)."""

    def __init__(self, outer: Progress, n_rows: int, n_layers: int) -> None:
        self.outer, self.n_rows, self.n_layers = outer, max(n_rows, 1), n_layers
        self.rows_done = self.layers_done = 0

    def advance(self, steps: int = 1) -> None:
        self.rows_done += steps
        layers = self.rows_done * self.n_layers // self.n_rows
        if layers > self.layers_done:
            self.outer.advance(layers - self.layers_done)
            self.layers_done = layers


def _mask(seq_len: int, start: int, stop: int, device) -> torch.Tensor:
    mask = torch.zeros(seq_len, dtype=torch.bool, device=device)
    mask[start:stop] = True
    return mask


def split_rows(
    n_layers: int, length: int, seq_len: int, front: int, splits: list[int | None], device
) -> SweepRows:
    """One row per (split, layer): intervene ``[front, t)``, measure ``[t, length)``.

    ``t=None`` (current effects) intervenes on ``[front, length)`` and measures all valid positions.
    """
    layers, positions, measured = [], [], []
    for t in splits:
        intervened = _mask(seq_len, front, length if t is None else t, device)
        watched = _mask(seq_len, 0 if t is None else t, length, device)
        layers.append(torch.arange(n_layers, device=device))
        positions.append(intervened.expand(n_layers, -1))
        measured.append(watched.expand(n_layers, -1))
    return SweepRows(torch.cat(layers), torch.cat(positions), torch.cat(measured)[:, None, :])


def packed_rows(
    packed: PackedPrompt, n_layers: int, length: int, front: int, donor_split: int, n_splits: int
) -> SweepRows:
    """One row per layer over a packed prompt: the donor intervenes ``[front, t_max)``; group 0
    measures the donor's ``[t_max, length)``, group ``i`` all of suffix segment ``i``."""
    device = packed.positions.device
    size = int(packed.positions.numel())
    intervened = torch.zeros(size, dtype=torch.bool, device=device)
    intervened[front:donor_split] = True  # the donor occupies the first `length` packed positions
    groups = [_mask(size, donor_split, length, device)]
    groups += [packed.segment_mask(i) for i in range(1, n_splits)]
    measured = torch.stack(groups)
    return SweepRows(
        torch.arange(n_layers, device=device),
        intervened.expand(n_layers, -1),
        measured.expand(n_layers, -1, -1),
    )


def joint_rows(
    packed: PackedPrompt, n_layers: int, length: int, front: int, n_splits: int
) -> SweepRows:
    """One row per layer over a packed prompt whose donor is the current-effect row: it
    intervenes on ``[front, length)`` and group 0 measures all of it; group ``i`` measures suffix
    segment ``i`` (not intervened: the future tokens of split ``i``)."""
    device = packed.positions.device
    size = int(packed.positions.numel())
    intervened = _mask(size, front, length, device)
    groups = [_mask(size, 0, length, device)]
    groups += [packed.segment_mask(i) for i in range(1, n_splits + 1)]
    return SweepRows(
        torch.arange(n_layers, device=device),
        intervened.expand(n_layers, -1),
        torch.stack(groups).expand(n_layers, -1, -1),
    )


def sweep_cost(length: int, window: Window, adapter: BoundAdapter, output: bool) -> float:
    """Token-layer passes of :func:`run_sweep` on one prompt, to balance processes: a row per
    layer ``s`` runs layers ``s..L-1`` (``L(L+1)/2`` passes per token, attention growing with the
    length) over the packed prompt when several split points are packed (the whole prompt plus
    each shorter split's suffix), and with ``output`` each row unembeds its measured positions
    (``adapter.unembed_cost`` passes each)."""
    n_layers = adapter.n_layers
    splits = list(window.splits)
    if len(splits) > 1 and None not in splits:
        ordered = sorted(splits, reverse=True)
        tokens = length + sum(length - t for t in ordered[1:])
    else:
        tokens = length * len(splits)
    cost = tokens * n_layers * (n_layers + 1) / 2 * adapter.layer_pass_cost(tokens)
    if output:
        measured = sum(length - (t or 0) for t in splits)
        cost += n_layers * measured * adapter.unembed_cost
    return float(cost)


def run_sweep(
    adapter: BoundAdapter,
    trace: Trace,
    row: int,
    length: int,
    window: Window,
    spec: Sweep,
    *,
    batch_size: int | AdaptiveBatch,
    progress: Progress,
    pack: bool = True,
) -> PromptSweep:
    """``effect[s, l]`` ``[L, L]`` and output change ``[L]`` of intervening on each layer ``s``,
    each the max over positions and split points, and each the mean over them.

    Several split points of one prompt are packed into one row per layer (prefix sharing, see
    :mod:`depthscope.engine.prefix_packing`) when the model's layer arguments allow it. ``progress``
    advances by one per layer.
    """
    splits, front = list(window.splits), window.front
    n_layers = trace.n_layers
    device = trace.resid.device
    packed = None
    if pack and len(splits) > 1 and None not in splits:
        ordered = sorted(splits, reverse=True)
        packed = pack_prompt(adapter, trace, row, length, ordered[1:])
    if packed is not None:
        rows = packed_rows(packed, n_layers, length, front, ordered[0], len(ordered))
        target, prompt = packed.trace, 0
        clean_final = packed.trace.resid[n_layers, 0]
    else:
        rows = split_rows(n_layers, length, trace.seq_len, front, splits, device)
        target, prompt = trace, row
        clean_final = trace.resid[n_layers, row, :length]
    outputs = OutputComparer(adapter, clean_final) if spec.output else None
    result = sweep_rows(
        adapter,
        target,
        prompt,
        rows,
        spec,
        outputs=outputs,
        batch_size=batch_size,
        progress=_PerLayer(progress, len(rows), n_layers),
    )

    def by_split(values: torch.Tensor) -> torch.Tensor:
        """Rows ``[n, G, ...]`` as ``[splits, L, ...]`` (unpacked: a row per (split, layer), one
        group; packed: a row per layer, a group per split)."""
        if packed is None:
            return values.reshape(-1, n_layers, *values.shape[2:])
        return values.transpose(0, 1)

    return _prompt_sweep(result, by_split)


def _prompt_sweep(
    result: SweepResult, by_split: Callable[[torch.Tensor], torch.Tensor]
) -> PromptSweep:
    """Max over the splits ``by_split`` selects (``[splits, L, ...]``), and the mean over their
    measured (position, split) pairs."""
    counts = by_split(result.counts).sum(dim=0).clamp_min(1.0)  # [L] pairs measured per row
    splits = by_split(result.effect)
    effect = splits.amax(dim=0)
    effect_mean = by_split(result.effect_sum).sum(dim=0) / counts[:, None]
    output = output_mean = output_splits = None
    if result.output_change is not None:
        output_splits = by_split(result.output_change)
        output = output_splits.amax(dim=0)
        output_mean = by_split(result.output_sum).sum(dim=0) / counts
    return PromptSweep(effect, output, effect_mean, output_mean, splits, output_splits)


def run_joint_sweep(
    adapter: BoundAdapter,
    trace: Trace,
    row: int,
    length: int,
    splits: tuple,
    front: int,
    spec: Sweep,
    *,
    batch_size: int | AdaptiveBatch,
    progress: Progress,
) -> tuple[PromptSweep, PromptSweep] | None:
    """Current effects (intervene on ``[front, T)``, measure everywhere) and future effects at
    ``splits`` of one prompt from one packed replay per layer, or None where packing is not safe.

    Under causal attention, positions ``< t`` of the current-effect row are those of the
    future-effect row of split ``t`` (both intervene on ``[front, t)`` there), so the current row
    serves as the donor of every split's suffix: the future sweep's own donor row (the whole
    prompt again) is never run. Equal to two :func:`run_sweep` calls to float rounding
    (``tests/engine/test_joint_sweep.py``).
    """
    if not splits or None in splits:
        return None
    ordered = sorted(splits, reverse=True)
    packed = pack_prompt(adapter, trace, row, length, ordered)
    if packed is None:
        return None
    n_layers = trace.n_layers
    rows = joint_rows(packed, n_layers, length, front, len(ordered))
    clean_final = packed.trace.resid[n_layers, 0]
    result = sweep_rows(
        adapter,
        packed.trace,
        0,
        rows,
        spec,
        outputs=OutputComparer(adapter, clean_final) if spec.output else None,
        batch_size=batch_size,
        progress=_PerLayer(progress, len(rows), n_layers),
    )
    current = _prompt_sweep(result, lambda values: values.transpose(0, 1)[:1])
    future = _prompt_sweep(result, lambda values: values.transpose(0, 1)[1:])
    return current, future
