"""``depthscope map SOURCE TARGET``: fit shallow-to-deep linear maps and save result and figures."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import torch

from depthscope.cli.handlers.common import load_from_options
from depthscope.cli.maps import check
from depthscope.cli.options import model_stem
from depthscope.core.files import atomic_write_json
from depthscope.core.progress import Progress, RichProgress
from depthscope.data.sources import load_examples
from depthscope.experiments.maps.fit import fit_linear_maps
from depthscope.figures.files import plot_result
from depthscope.models.placement import resolve_placement
from depthscope.results.document import Result
from depthscope.run.distributed import init_distributed
from depthscope.run.runner import package_versions

MAX_TOKENS_PER_TEXT = 512  # the paper's window length


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
    return {
        "data": args.data,
        "tokens": args.tokens,
        "val_tokens": args.val_tokens,
        "ridge": args.ridge,
        "ridge_sweep": list(args.ridge_sweep),
        "ridge_convention": "lambda = ridge * trace(centred source scatter) / d_source; bias unpenalised",
        "seed": args.seed,
        "max_tokens_per_text": MAX_TOKENS_PER_TEXT,
        "position_0_excluded": True,
        "metric": "mean over held-out tokens of ||y - f(x)|| / max(||y||, 1e-6)",
        "null": getattr(args, "null", None),
        "intervals": "90% percentile bootstrap over held-out texts, 1000 draws, seed 0",
    }


def _fit(args: argparse.Namespace, texts, device: str, group, progress) -> tuple:
    """Load both models on ``device`` and fit; returns (data, source, target)."""

    models = []
    if not group.is_main:
        group.barrier()  # rank 0 fetches and converts built-in models into the cache first
    specs = [args.source, args.target]
    if getattr(args, "null", None):
        specs.append(f"{args.null}:{args.source}")  # random-init:SEED:SOURCE
    for spec in specs:
        progress.note(f"loading {spec}")
        lm = load_from_options(
            args,
            spec,
            progress=group.is_main,
            local_rank=group.local_rank,
            local_world_size=group.local_world_size,
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

    Under torchrun/srun every process fits on its share of the texts and the sums are combined;
    only rank 0 writes the result, run.json and figures.
    """

    check(args)
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = args.out or Path("runs") / f"map-{model_stem(args.source)}-{model_stem(args.target)}"
    stream = iter_texts(args.data, args.seed)
    texts = itertools.chain(list(itertools.islice(stream, 1)), stream)  # bad --data fails here
    settings = _settings(args)
    with init_distributed(args.device) as group:
        placement = resolve_placement(
            args.device, local_rank=group.local_rank, local_world_size=group.local_world_size
        )
        group.check_same("the map settings", settings)
        display = RichProgress() if group.is_main else contextlib.nullcontext(Progress())
        with display as progress:
            data, source, target = _fit(args, texts, placement.device, group, progress)
    if not group.is_main:
        return 0
    name = f"{source.name}→{target.name}"
    result = Result(
        analysis="linear-map",
        model={"source": source.identity, "target": target.identity, "name": name},
        settings=settings,
        n_prompts=data["n_train_texts"] + data["n_val_texts"],
        n_tokens=data["n_train_tokens"] + data["n_val_tokens"],
        data=data,
    )
    result.save(out / "results" / "linear-map.json")
    figures = [] if args.no_plots else _plot(result, out / "figures")
    seconds = time.perf_counter() - started
    doc = _run_doc(args, source, target, data, started_at, seconds)
    doc["processes"] = group.world_size
    atomic_write_json(out / "run.json", doc)
    _summary(data, seconds, out, figures)
    return 0


def _plot(result, folder: Path) -> list[Path]:
    return plot_result(result, folder)


def _run_doc(args, source, target, data: dict, started_at: str, seconds: float) -> dict:

    try:
        versions = package_versions()
    except ImportError:
        versions = {"torch": torch.__version__}
    return {
        "depthscope_run": 1,
        "status": "finished",
        "started": started_at,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "model": {"source": source.identity, "target": target.identity},
        "data": {"source": args.data, "seed": args.seed},
        "n_prompts": data["n_train_texts"] + data["n_val_texts"],
        "n_tokens": data["n_train_tokens"] + data["n_val_tokens"],
        "seed": args.seed,
        "analyses": ["linear-map"],
        "status_by_analysis": {"linear-map": "computed"},
        "timings": {
            "linear-map": round(seconds, 3),
            **{f"linear-map/{k}": v for k, v in data["seconds"].items()},
        },
        "versions": versions,
        "device": args.device,
        "threads": torch.get_num_threads(),
    }


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
