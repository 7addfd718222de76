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

from depthscope.cli.options import add_model_options, load_from_options, model_stem
from depthscope.core.errors import DepthscopeError
from depthscope.core.files import atomic_write_json
from depthscope.core.progress import Progress, RichProgress
from depthscope.data.sources import load_examples
from depthscope.experiments.maps.fit import fit_linear_maps
from depthscope.figures.files import plot_result
from depthscope.models.placement import resolve_placement
from depthscope.results.document import Result
from depthscope.run.distributed import init_distributed
from depthscope.run.runner import package_versions

DEFAULT_DATA = "builtin:text"
# builtin:text gives ~39k aligned tokens for gemma3-270m -> smollm2-135m; 30k + 6k fit with room,
# 30k >> d_source + 1 (641); the whole run takes 5.5 minutes on 2 CPU cores (measured).
DEFAULT_TOKENS = 30_000
DEFAULT_VAL_TOKENS = 6_000
DEFAULT_RIDGE = 1e-4  # the lowest held-out error of the sweep in docs/linear-maps.md
MAX_TOKENS_PER_TEXT = 512  # the paper's window length

EXAMPLES = """\
examples:
  depthscope map gemma3-270m smollm2-135m             18 -> 30 layers, different tokenizers
  depthscope map ./small-model ./large-model --data file:corpus.txt --tokens 100000
  depthscope map gemma3-270m smollm2-135m --null random-init   also fit from an untrained source
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``map`` on the ``depthscope`` command's subparsers."""
    parser = subparsers.add_parser(
        "map",
        help="fit linear maps from every layer of a shallow model to every layer of a deeper one",
        description="Run SOURCE and TARGET on the same text, fit an affine ridge map from every "
        "residual boundary of SOURCE to every boundary of TARGET (exact least squares from "
        "streamed float64 statistics), and score each on held-out text by the paper's relative "
        "error. Writes DIR/results/linear-map.json, DIR/run.json and DIR/figures/.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source", help="the shallower model: built-in name, hub id, folder or .gguf"
    )
    parser.add_argument("target", help="the deeper model")
    parser.add_argument(
        "--data", default=DEFAULT_DATA, help=f"text source (default: {DEFAULT_DATA}, English prose)"
    )
    parser.add_argument(
        "--tokens",
        type=int,
        default=DEFAULT_TOKENS,
        help=f"aligned training tokens (default: {DEFAULT_TOKENS})",
    )
    parser.add_argument(
        "--val-tokens",
        type=int,
        default=DEFAULT_VAL_TOKENS,
        help=f"aligned held-out tokens, from texts not used for training (default: {DEFAULT_VAL_TOKENS})",
    )
    parser.add_argument(
        "--ridge",
        type=float,
        default=DEFAULT_RIDGE,
        help="ridge strength as a fraction of the source's mean per-dimension variance "
        f"(default: {DEFAULT_RIDGE}; 0 = ordinary least squares)",
    )
    parser.add_argument(
        "--ridge-sweep",
        type=_ridges,
        default=(),
        metavar="R,R,...",
        help="further ridge strengths to solve from the same statistics and score on the same "
        "held-out tokens (one pass over the data; the saved maps stay those of --ridge), e.g. "
        "0,1e-5,1e-3,1e-2,1e-1; each holds one float32 copy of the maps while scoring",
    )
    parser.add_argument(
        "--null",
        type=_null,
        default=None,
        metavar="random-init[:SEED]",
        help="also fit the same maps from SOURCE's architecture and tokenizer with freshly "
        "initialised weights (seed 0, or SEED), scored on the same held-out texts, and test per "
        "source layer whether the trained source's best map beats the null's (paired bootstrap, "
        "Holm); repeats every pass, about doubling the run time",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="run directory (default: runs/map-SOURCE-TARGET)"
    )
    add_model_options(parser)
    parser.add_argument("--seed", type=int, default=0, help="order of the texts (default: 0)")
    parser.add_argument(
        "--batch-size", type=int, default=8, help="texts per forward pass (default: 8)"
    )
    parser.add_argument(
        "--memory-gb",
        type=float,
        default=6.0,
        help="budget for the statistics; above it target layers are fitted in several passes "
        "(default: 6)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")
    parser.set_defaults(handler=run_map)
    return parser


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


def _ridges(text: str) -> tuple[float, ...]:
    """``0,1e-5,1e-3`` -> floats, with the option named in the error."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--ridge-sweep takes comma-separated numbers, e.g. 0,1e-5,1e-3 (got {text!r})"
        ) from None


NULL_KINDS = ("random-init",)


def _null(text: str) -> str:
    """``random-init`` or ``random-init:SEED`` -> ``random-init:SEED``, with the option named in
    the error."""
    kind, sep, seed = text.strip().partition(":")
    if kind in NULL_KINDS and (not sep or seed.isdigit()):
        return f"{kind}:{int(seed) if sep else 0}"
    raise argparse.ArgumentTypeError(
        f"--null takes random-init or random-init:SEED (fresh weights of SOURCE's architecture, "
        f"SEED a non-negative integer), got {text!r}"
    )


def _check(args: argparse.Namespace) -> None:
    if args.tokens < 1 or args.val_tokens < 1:
        raise DepthscopeError("--tokens and --val-tokens must be at least 1")
    if args.ridge < 0 or any(r < 0 for r in args.ridge_sweep):
        raise DepthscopeError(
            f"--ridge and --ridge-sweep must be >= 0 (got {args.ridge}, {list(args.ridge_sweep)})"
        )
    if args.batch_size < 1:
        raise DepthscopeError("--batch-size must be at least 1")
    if args.memory_gb <= 0:
        raise DepthscopeError("--memory-gb must be positive")


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

    _check(args)
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
