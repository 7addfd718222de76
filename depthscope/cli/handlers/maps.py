"""``depthscope map SOURCE TARGET``: fit shallow-to-deep linear maps and save result and figures."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

from depthscope.cli.handlers.common import claim_for, inspect_from_options, load_from_options
from depthscope.cli.maps import default_out
from depthscope.core.folders import OutputFolder, friendly_os_errors
from depthscope.core.progress import Progress, RichProgress
from depthscope.core.run_folder import MAP_OUTPUTS, pair_identity
from depthscope.data.sources import load_examples
from depthscope.experiments.maps.fit_maps import fit_linear_maps
from depthscope.experiments.maps.outputs import (
    MAX_TOKENS_PER_TEXT,
    map_record,
    map_result,
    map_settings,
    now,
    save_record,
    save_result,
)
from depthscope.models.placement import resolve_placement
from depthscope.run.distributed import init_distributed


def iter_texts(spec: str, seed: int) -> Iterator[str]:
    """Texts of ``spec``, loaded in growing rounds as they are consumed (sources are prefix-stable)."""

    n, seen = 256, 0
    while True:
        examples = load_examples(spec, n, seed=seed)
        if len(examples) <= seen:
            return
        for example in examples[seen:]:
            yield example.text
        seen, n = len(examples), n * 4


def _settings(args: argparse.Namespace) -> dict:
    return map_settings(
        data=args.data,
        tokens=args.tokens,
        val_tokens=args.val_tokens,
        ridge=args.ridge,
        ridge_sweep=list(args.ridge_sweep),
        seed=args.seed,
        null=getattr(args, "null", None),
    )


def _claim(args: argparse.Namespace, guard: OutputFolder, group, progress) -> list:
    """Rank 0: inspect both models (no weights) and claim ``--out`` for the pair; the infos."""
    infos = [
        inspect_from_options(
            args,
            spec,
            local_rank=group.local_rank,
            local_world_size=group.local_world_size,
        )
        for spec in (args.source, args.target)
    ]
    pair = pair_identity(infos[0].identity, infos[1].identity)
    claim_for(guard, pair, progress, suggestion=str(default_out(args.source, args.target)))
    return infos


def _fit(args: argparse.Namespace, texts, group, progress, infos: list) -> tuple:
    """Load both models and fit; returns (data, source, target)."""

    models = []
    if not group.is_main:
        group.barrier()  # rank 0 fetches and converts built-in models into the cache first
    specs = [args.source, args.target]
    if getattr(args, "null", None):
        specs.append(f"{args.null}:{args.source}")  # random-init:SEED:SOURCE
    for index, spec in enumerate(specs):
        progress.note(f"loading {spec}")
        lm = load_from_options(
            args,
            spec,
            progress=group.is_main,
            local_rank=group.local_rank,
            local_world_size=group.local_world_size,
            info=infos[index] if index < len(infos) else None,
        )
        progress.note(f"{lm.name}: {lm.n_layers} layers, d={lm.d_model}, {lm.identity['dtype']}")
        models.append(lm)
    if group.is_main:
        group.barrier()
    source, target, *rest = models
    null = rest[0] if rest else None
    keys = ("name", "source", "file_sha256", "n_layers", "d_model", "dtype")
    group.check_same("the models", [[m.identity.get(k) for k in keys] for m in models])
    if source.n_layers > target.n_layers:
        progress.note(
            f"note: the source ({source.n_layers} layers) is deeper than the target "
            f"({target.n_layers}); the paper maps shallow -> deep"
        )
    if group.is_distributed:
        progress.note(f"{group.world_size} processes ({group.backend}); statistics are summed")
    data = fit_linear_maps(
        source,
        target,
        texts,
        train_tokens=args.tokens,
        val_tokens=args.val_tokens,
        ridge=args.ridge,
        ridge_sweep=tuple(args.ridge_sweep),
        batch_size=args.batch_size,
        max_tokens=MAX_TOKENS_PER_TEXT,
        memory_gb=args.memory_gb,
        progress=progress,
        group=group,
        null=null,
    )
    return data, source, target


def run_map(args: argparse.Namespace) -> int:
    """The ``map`` command; returns the exit status (errors are raised as DepthscopeError).

    ``--out`` is checked before anything loads, locked and claimed for the model pair by rank 0
    before the weights load. Under torchrun/srun every process fits on its share of the texts and
    the sums are combined; only rank 0 writes the result, run.json and figures.
    """

    started = time.perf_counter()
    started_at = now()
    out = args.out or default_out(args.source, args.target)
    guard = OutputFolder(out, outputs=MAP_OUTPUTS)
    guard.check()  # writable and holding nothing foreign, before any model loads
    stream = iter_texts(args.data, args.seed)
    texts = itertools.chain(list(itertools.islice(stream, 1)), stream)  # bad --data fails here
    settings = _settings(args)
    with friendly_os_errors(out), init_distributed(args.device) as group:
        resolve_placement(  # a bad --device is one line, before anything loads
            args.device, local_rank=group.local_rank, local_world_size=group.local_world_size
        )
        group.check_same("the map settings", settings)
        display = RichProgress() if group.is_main else contextlib.nullcontext(Progress())
        with contextlib.ExitStack() as held:
            progress = held.enter_context(display)
            infos: list = []
            if group.is_main:
                held.enter_context(guard.lock(progress))
                infos = _claim(args, guard, group, progress)
            data, source, target = _fit(args, texts, group, progress, infos)
            if not group.is_main:
                return 0
            result = map_result(source, target, data, settings)
            figures = save_result(result, out, plots=not args.no_plots)
            seconds = time.perf_counter() - started
            record = map_record(
                source,
                target,
                data,
                data_spec=args.data,
                seed=args.seed,
                device=args.device,
                started=started_at,
                seconds=seconds,
                processes=group.world_size,
            )
            save_record(record, out)
    _summary(data, seconds, out, figures)
    return 0


def _summary(data: dict, seconds: float, out: Path, figures: list[Path]) -> None:
    n_src, n_tgt = data["source_layers"], data["target_layers"]
    print(
        f"{data['source_model']} ({n_src} layers) -> {data['target_model']} ({n_tgt} layers): "
        f"{data['n_train_tokens']} training / {data['n_val_tokens']} held-out tokens, "
        f"{data['aligned_fraction']:.1%} of target tokens aligned ({data['alignment']}), "
        f"{seconds:.0f} s"
    )
    print("best target layer per source layer: " + " ".join(map(str, data["best_target"])))
    if data.get("depth_correlation") is not None:
        print(
            f"correlation of relative depths (source vs best target): {data['depth_correlation']:.3f}"
        )
    for line in uncertainty_lines(data):
        print(line)
    extra = f", {len(figures)} figure files" if figures else ""
    print(f"results in {out}/ (results/linear-map.json, run.json{extra})")


def uncertainty_lines(data: dict) -> list[str]:
    """What the bootstrap says: stated best targets, ties, and the null, one line each."""
    boot = data.get("bootstrap")
    if not boot:
        return []
    if not boot.get("computed"):
        return [f"no intervals: {boot.get('reason', 'too few held-out units')}"]
    tests = data.get("best_target_test", [])
    stated = [t for t in tests if t.get("stated")]
    lines = [
        f"best target stated (beats the runner-up, paired bootstrap over {boot['n_units']} "
        f"held-out {boot['unit']}s, Holm) for {len(stated)} of {len(tests)} source boundaries"
    ]
    ties = [f"{t['source']}: {'/'.join(map(str, t['tied']))}" for t in tests if not t["stated"]]
    if ties:
        lines.append("tied best targets (source: targets) " + ", ".join(ties))
    compared = data.get("null_comparison")
    if compared:
        null = data.get("null", {})
        beats = [c["source"] for c in compared if c["beats_null"]]
        gap = [c["difference"]["difference"] for c in compared]
        lines.append(
            f"trained source beats the {null.get('kind', 'null')} null ({null.get('model')}) at "
            f"{len(beats)} of {len(compared)} source boundaries"
            + (f" ({' '.join(map(str, beats))})" if beats else "")
            + f"; null minus trained best error {min(gap):+.3f} to {max(gap):+.3f}"
        )
    return lines
