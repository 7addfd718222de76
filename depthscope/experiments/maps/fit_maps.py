"""``fit_linear_maps``: align text, stream residuals into statistics, solve, score on held-out text.

Texts are split up front (no model run needed): the first texts give the training tokens, the
following, disjoint texts the validation tokens. Each pass runs both models on a batch of texts,
keeps only aligned positions and folds them into float64 sums, so memory does not grow with the
number of tokens. If the statistics of all target boundaries exceed the memory budget, target
boundaries are split into groups and the passes repeat per group (models re-run, nothing stored).

Under ``torchrun``/``srun`` every process takes a contiguous block of the batches of texts,
accumulates its own sums and all-reduces them (float64 SUM) before the solve, which every rank
then does identically; held-out sums are all-reduced the same way. The result equals a single
process's up to float64 rounding of sums added in another order (~1e-12 relative after the solve).
"""

from __future__ import annotations

import hashlib
import math
import time
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from depthscope.core.errors import DepthscopeError
from depthscope.core.progress import Progress
from depthscope.experiments.maps.align import AlignedText, Aligner, same_vocabulary
from depthscope.experiments.maps.collect import collect_residuals
from depthscope.experiments.maps.intervals import UnitSums, map_uncertainty
from depthscope.experiments.maps.ridge import HeldOutMetrics, MapStatistics, solve
from depthscope.models.loading.loader import LoadedModel

if TYPE_CHECKING:  # the process group is passed in by the map command (runner layer)
    from depthscope.run.distributed import Distributed

DEFAULT_MEMORY_GB = 6.0


@dataclass
class Split:
    """Aligned texts for training and validation, and the alignment counts over the texts used."""

    train: list[AlignedText]
    val: list[AlignedText]
    method: str
    n_aligned: int = 0  # aligned positions in the used texts (before trimming to the budget)
    n_target_positions: int = 0  # every position the target model reads in the used texts
    n_source_positions: int = 0
    n_texts_read: int = 0

    @property
    def n_train(self) -> int:
        return sum(t.n_aligned for t in self.train)

    @property
    def n_val(self) -> int:
        return sum(t.n_aligned for t in self.val)

    @property
    def aligned_fraction(self) -> float:
        return self.n_aligned / max(self.n_target_positions, 1)


def _take(items: Iterator[AlignedText], budget: int, split: Split) -> list[AlignedText]:
    taken: list[AlignedText] = []
    have = 0
    for item in items:
        if item.n_aligned == 0:
            continue
        split.n_aligned += item.n_aligned
        split.n_target_positions += len(item.target_ids)
        split.n_source_positions += len(item.source_ids)
        taken.append(item.head(budget - have))
        have += taken[-1].n_aligned
        if have >= budget:
            break
    return taken


def split_texts(
    aligner: Aligner, texts: Iterable[str], train_tokens: int, val_tokens: int
) -> Split:
    """First texts -> exactly ``train_tokens`` aligned tokens, next texts -> ``val_tokens``.

    ``texts`` may be a lazy iterator: it is read only as far as the budgets need.
    """
    if train_tokens < 1 or val_tokens < 1:
        raise DepthscopeError("--tokens and --val-tokens must both be at least 1")
    split = Split([], [], aligner.method)

    def aligned() -> Iterator[AlignedText]:
        for text in texts:
            split.n_texts_read += 1
            if text:
                yield aligner(text)

    stream = aligned()
    split.train = _take(stream, train_tokens, split)
    split.val = _take(stream, val_tokens, split)
    if split.n_train < train_tokens or split.n_val < val_tokens:
        have = split.n_train + split.n_val
        raise DepthscopeError(
            f"only {have} aligned tokens in {split.n_texts_read} texts ({aligner.method}, "
            f"{split.aligned_fraction:.0%} of target tokens aligned); {train_tokens} training + "
            f"{val_tokens} validation tokens are needed: lower --tokens/--val-tokens or use a "
            f"data source with more text (e.g. --data builtin:text or file:PATH)"
        )
    return split


def split_digest(split: Split) -> str:
    """sha256 of every token id and aligned position of the split (processes must agree on it)."""
    digest = hashlib.sha256()
    for part in (split.train, split.val):
        for item in part:
            for values in (
                item.source_ids,
                item.target_ids,
                item.source_positions,
                item.target_positions,
            ):
                digest.update(array("q", [len(values), *values]).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def target_groups(
    n_source: int,
    d_source: int,
    n_target: int,
    d_target: int,
    memory_bytes: float,
    n_maps: int = 1,
) -> list[list[int]]:
    """Target boundaries per pass so that statistics plus float32 maps fit in ``memory_bytes``.

    Per target boundary: ``(8 + 4 n_maps) (M+1) (d_s+1) d_t`` bytes (float64 sums, a float32 copy
    of the solved maps for prediction per ridge strength scored); plus ``8 (M+1) (d_s+1)^2`` once
    for the Gram matrices.
    """
    per_target = (8 + 4 * n_maps) * n_source * (d_source + 1) * d_target
    fixed = 8 * n_source * (d_source + 1) ** 2
    size = max(1, int((memory_bytes - fixed) // per_target))
    size = min(size, n_target)
    n_groups = math.ceil(n_target / size)
    size = math.ceil(n_target / n_groups)  # balance the groups
    return [list(range(i, min(i + size, n_target))) for i in range(0, n_target, size)]


def _batches(items: list[AlignedText], size: int) -> Iterator[list[AlignedText]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass
class _Clock:
    seconds: dict[str, float] = field(
        default_factory=lambda: {"forward": 0.0, "statistics": 0.0, "solve": 0.0, "validation": 0.0}
    )

    def timed(self, key: str, fn, *args, **kwargs):
        started = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[key] += time.perf_counter() - started
        return out


def _residuals(
    source: LoadedModel,
    target: LoadedModel,
    batch: list[AlignedText],
    group: list[int],
    clock: _Clock,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Aligned ``x`` ``[M+1, n, d_s]`` and ``y`` ``[len(group), n, d_t]`` for a batch of texts."""
    device = target.device
    x = clock.timed(
        "forward",
        collect_residuals,
        source,
        [t.source_ids for t in batch],
        [t.source_positions for t in batch],
        device=device,
    )
    y = clock.timed(
        "forward",
        collect_residuals,
        target,
        [t.target_ids for t in batch],
        [t.target_positions for t in batch],
    )
    return x, y[group]


def _best_and_correlation(rel_err: torch.Tensor) -> tuple[list[int], float | None]:
    """Best target per source boundary, and the correlation of relative depths over layers 1..M."""
    best = rel_err.argmin(dim=1)
    n_source, n_target = rel_err.shape[0] - 1, rel_err.shape[1] - 1
    if n_source < 2:
        return best.tolist(), None
    src = torch.arange(1, n_source + 1, dtype=torch.float64) / n_source
    tgt = best[1:].double() / max(n_target, 1)
    if float(tgt.std()) == 0.0:
        return best.tolist(), None
    return best.tolist(), float(torch.corrcoef(torch.stack([src, tgt]))[0, 1])


@dataclass
class _Scored:
    """One source's maps scored on the held-out texts (every target group assembled)."""

    rel_err: torch.Tensor  # [S, T]
    r2: torch.Tensor
    baseline: torch.Tensor  # [T]
    lams: torch.Tensor  # [S]
    swept: dict[float, torch.Tensor]
    unit_rel: torch.Tensor  # [U, S, T] per held-out text
    unit_base: torch.Tensor  # [U, T]
    unit_n: torch.Tensor  # [U]


def _unit_ids(offset: int, batch: list[AlignedText]) -> torch.Tensor:
    """The held-out text index of every aligned token of ``batch`` (texts from ``offset`` on)."""
    sizes = torch.tensor([t.n_aligned for t in batch], dtype=torch.long)
    return torch.repeat_interleave(torch.arange(offset, offset + len(batch)), sizes)


def _score(
    source: LoadedModel,
    target: LoadedModel,
    split: Split,
    groups: list[list[int]],
    train_batches: list[list[AlignedText]],
    val_batches: list[tuple[int, list[AlignedText]]],
    *,
    ridge: float,
    sweep: list[float],
    predict_dtype: torch.dtype,
    progress: Progress,
    group: Distributed | None,
    clock: _Clock,
    label: str = "",
) -> _Scored:
    """Statistics, solve and held-out scoring of ``source`` -> ``target``, one pass per group."""
    n_src, d_src = source.n_layers + 1, source.d_model
    n_tgt, d_tgt = target.n_layers + 1, target.d_model
    n_units = len(split.val)
    rel_err = torch.full((n_src, n_tgt), float("nan"), dtype=torch.float64)
    swept = {r: rel_err.clone() for r in sweep}
    r2 = rel_err.clone()
    baseline = torch.full((n_tgt,), float("nan"), dtype=torch.float64)
    unit_rel = torch.zeros(n_units, n_src, n_tgt, dtype=torch.float64)
    unit_base = torch.zeros(n_units, n_tgt, dtype=torch.float64)
    unit_n = torch.zeros(n_units, dtype=torch.float64)
    lams = torch.zeros(n_src, dtype=torch.float64)
    names = tuple(f"{source.name} boundary {m}" for m in range(n_src))
    n_train_texts = sum(len(b) for b in train_batches)
    n_val_texts = sum(len(b) for _, b in val_batches)
    for index, targets in enumerate(groups):
        tag = (
            f" (targets {targets[0]}-{targets[-1]}, pass {index + 1}/{len(groups)})"
            if len(groups) > 1
            else ""
        )
        tag = f"{label}{tag}"
        stats = MapStatistics.zeros(n_src, d_src, len(targets), d_tgt, device=target.device)
        progress.start(f"statistics, {split.n_train} tokens{tag}", n_train_texts)
        for batch in train_batches:
            x, y = _residuals(source, target, batch, targets, clock)
            clock.timed("statistics", stats.update, x, y)
            progress.advance(len(batch))
        if group is not None:
            clock.timed("statistics", stats.all_reduce, group)
        progress.note(f"solving {n_src}x{len(targets)} ridge maps{tag}")
        maps = clock.timed("solve", solve, stats, ridge, dtype=predict_dtype, names=names)
        others = {
            r: clock.timed("solve", solve, stats, r, dtype=predict_dtype, names=names)
            for r in sweep
        }
        mean = stats.target_mean()
        lams = maps.lam
        del stats
        metrics = HeldOutMetrics.zeros(n_src, len(targets), d_tgt, n_units=n_units)
        other_metrics = {r: HeldOutMetrics.zeros(n_src, len(targets), d_tgt) for r in sweep}
        progress.start(f"held-out error, {split.n_val} tokens{tag}", n_val_texts)
        for offset, batch in val_batches:
            x, y = _residuals(source, target, batch, targets, clock)
            units = _unit_ids(offset, batch)
            clock.timed("validation", metrics.update, maps, x, y, units=units)
            clock.timed("validation", metrics.add_baseline, mean, y, units=units)
            for r, found in other_metrics.items():
                clock.timed("validation", found.update, others[r], x, y)
            progress.advance(len(batch))
        if group is not None:
            clock.timed("validation", metrics.all_reduce, group)
            for found in other_metrics.values():
                clock.timed("validation", found.all_reduce, group)
        del maps, others
        rel_err[:, targets] = metrics.rel_err()
        for r, found in other_metrics.items():
            swept[r][:, targets] = found.rel_err()
        r2[:, targets] = metrics.r2()
        baseline[targets] = metrics.baseline()
        unit_rel[:, :, targets] = metrics.unit_rel
        unit_base[:, targets] = metrics.unit_base
        unit_n = metrics.unit_n  # the same in every group
    return _Scored(rel_err, r2, baseline, lams, swept, unit_rel, unit_base, unit_n)


def fit_linear_maps(
    source: LoadedModel,
    target: LoadedModel,
    texts: Iterable[str],
    *,
    train_tokens: int,
    val_tokens: int,
    ridge: float,
    batch_size: int = 8,
    max_tokens: int = 512,
    memory_gb: float = DEFAULT_MEMORY_GB,
    predict_dtype: torch.dtype = torch.float32,
    progress: Progress | None = None,
    group: Distributed | None = None,
    ridge_sweep: tuple[float, ...] = (),
    null: LoadedModel | None = None,
) -> dict:
    """Fit ``f_{m,l}: h^source_m -> h^target_l`` for every boundary pair; return the result data.

    ``ridge_sweep``: further ridge strengths solved from the same statistics and scored on the
    same held-out tokens (one pass over the data for all), reported as ``ridge_sweep``; the
    result's maps are those of ``ridge``.
    ``ridge`` is relative (see :mod:`depthscope.experiments.maps.ridge`). Validation predictions are made in
    ``predict_dtype`` (sums stay float64). Returns the ``data`` section of a ``linear-map`` result
    (on every rank of ``group``; ``seconds`` are this process's).

    Every relative error gets a bootstrap interval over the held-out texts, and each source
    boundary's best target is tested against its runner-up (:mod:`.intervals`). ``null``: a model
    of the source's architecture and tokenizer with fresh weights (``random-init:SOURCE``); the
    same maps are fitted from it on the same texts and compared with the trained source's
    (``null`` and ``null_comparison`` in the result). It re-runs every pass, doubling the time.
    """
    progress = progress or Progress()
    started = time.perf_counter()
    aligner = Aligner(source.tokenizer, target.tokenizer, max_tokens=max_tokens)
    split = split_texts(aligner, texts, train_tokens, val_tokens)
    n_src, d_src = source.n_layers + 1, source.d_model
    n_tgt, d_tgt = target.n_layers + 1, target.d_model
    if null is not None:
        _check_null(source, null)
    sweep = [r for r in dict.fromkeys(ridge_sweep) if r != ridge]
    if (ridge == 0 or 0 in sweep) and train_tokens <= d_src + 1:
        raise DepthscopeError(
            f"{train_tokens} training tokens cannot determine a {d_src}+1-dimensional map without "
            f"ridge; use --tokens well above {d_src + 1} or --ridge > 0"
        )
    if train_tokens < 10 * (d_src + 1):
        progress.note(
            f"note: {train_tokens} training tokens for {d_src + 1} coefficients per output "
            f"dimension; held-out errors include overfitting (more --tokens or a larger --ridge)"
        )
    groups = target_groups(n_src, d_src, n_tgt, d_tgt, memory_gb * 2**30, 1 + len(sweep))
    clock = _Clock()
    train_batches = list(_batches(split.train, batch_size))
    val_batches, offset = [], 0
    for batch in _batches(split.val, batch_size):  # each text's index: its bootstrap unit
        val_batches.append((offset, batch))
        offset += len(batch)
    if group is not None:  # this process's share of the texts
        group.check_same("the aligned texts", split_digest(split))
        train_batches, val_batches = group.shard(train_batches), group.shard(val_batches)
    common = dict(predict_dtype=predict_dtype, progress=progress, group=group, clock=clock)
    batches = (split, groups, train_batches, val_batches)
    scored = _score(source, target, *batches, ridge=ridge, sweep=sweep, **common)
    rel_err, swept = scored.rel_err, scored.swept
    null_scored = null_seconds = None
    if null is not None:
        before = dict(clock.seconds)
        label = f" (null: {null.name})"
        null_scored = _score(null, target, *batches, ridge=ridge, sweep=[], label=label, **common)
        null_seconds = {k: round(v - before[k], 3) for k, v in clock.seconds.items()}
    uncertainty = _uncertainty(scored, null_scored)
    best, correlation = _best_and_correlation(rel_err)
    sweep_rows = [
        {
            "ridge": r,
            "rel_err_mean": float(err.mean()),
            "best_target": _best_and_correlation(err)[0],
        }
        for r, err in sorted({ridge: rel_err, **swept}.items())
    ]
    best_source = rel_err.argmin(dim=0).tolist()  # per target: less confounded by hard targets
    seconds = {k: round(v, 3) for k, v in clock.seconds.items()}
    seconds["total"] = round(time.perf_counter() - started, 3)
    passes = len(groups) * (1 if null is None else 2)  # the null repeats every pass
    null_fields = uncertainty.pop("null", {})
    data = {
        "rel_err": rel_err,
        "r2": scored.r2,
        "best_target": best,
        "best_target_relative": [b / max(n_tgt - 1, 1) for b in best],
        "depth_correlation": correlation,
        "best_source": best_source,
        "rel_err_mean_baseline": scored.baseline,
        "n_train_tokens": split.n_train,
        "n_val_tokens": split.n_val,
        "n_train_texts": len(split.train),
        "n_val_texts": len(split.val),
        "aligned_fraction": split.aligned_fraction,
        "n_aligned_positions": split.n_aligned,
        "n_target_positions": split.n_target_positions,
        "n_source_positions": split.n_source_positions,
        "alignment": split.method,
        "source_layers": n_src - 1,
        "target_layers": n_tgt - 1,
        "source_model": source.name,
        "target_model": target.name,
        "ridge": ridge,
        "ridge_lambda": scored.lams,
        **({"ridge_sweep": sweep_rows} if sweep else {}),
        "target_groups": len(groups),
        "seconds": seconds,
        "statistics_tokens_per_s": split.n_train * passes / max(seconds["statistics"], 1e-9),
        **uncertainty,
    }
    if null_scored is not None:
        null_best, null_correlation = _best_and_correlation(null_scored.rel_err)
        data["null"] = {
            "kind": "random-init" if null.identity.get("init_seed") is not None else "model",
            "model": null.name,
            "source": null.identity.get("source"),
            "init_seed": null.identity.get("init_seed"),
            "rel_err": null_scored.rel_err,
            "r2": null_scored.r2,
            "best_target": null_best,
            "depth_correlation": null_correlation,
            "ridge_lambda": null_scored.lams,
            "seconds": null_seconds,
            **null_fields,
        }
        if "null_comparison" in data:  # after the null it compares with
            data["null_comparison"] = data.pop("null_comparison")
    return data


def _check_null(source: LoadedModel, null: LoadedModel) -> None:
    """The null must read the same tokens and have the source's shape (same alignment, same maps).

    A programming error, not a user's (the map command builds the null from the source's own
    spec, ``random-init:SEED:SOURCE``), hence ``ValueError``.
    """
    if (null.n_layers, null.d_model) != (source.n_layers, source.d_model):
        raise ValueError(
            f"the null {null.name} ({null.n_layers} layers, d={null.d_model}) does not have the "
            f"source's architecture ({source.n_layers} layers, d={source.d_model})"
        )
    if not same_vocabulary(source.tokenizer, null.tokenizer):
        raise ValueError(f"the null {null.name} does not have the source's tokenizer")


def _uncertainty(scored: _Scored, null: _Scored | None) -> dict:
    """Bootstrap intervals, best-target tests and the null comparison (see :mod:`.intervals`)."""
    sums = UnitSums.of(scored.unit_rel, scored.unit_n, "text", scored.unit_base)
    if null is None:
        return map_uncertainty(scored.rel_err.numpy(), sums, baseline=scored.baseline.numpy())
    null_sums = UnitSums.of(null.unit_rel, null.unit_n, "text")
    return map_uncertainty(
        scored.rel_err.numpy(),
        sums,
        null.rel_err.numpy(),
        null_sums,
        baseline=scored.baseline.numpy(),
    )
