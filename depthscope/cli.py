"""The `depthscope` command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from depthscope.allocator import keep_freed_memory
from depthscope.errors import DepthscopeError

DESCRIPTION = """\
depthscope measures how a language model uses its depth: how much each layer adds to the
residual stream, which later computations and predictions depend on it, when the logit lens
converges, and more (Csordás, Manning & Potts 2025, "Do Language Models Use Their Depth
Efficiently?"). Works on any Hugging Face decoder-only LM; built-in models run offline.
"""

EXAMPLES = """\
examples:
  depthscope models                          list the built-in models
  depthscope analyze                         all analyses, 10 prompts, smollm2-135m
  depthscope analyze gemma3-270m --analyses contributions,logit-lens -n 20
  depthscope analyze ./my-model --data file:prompts.jsonl --device cuda --dtype bfloat16
  depthscope plot runs/smollm2-135m          redraw figures from saved results
"""


# Commands defined in their own modules: each has ``add_parser(subparsers)``, which registers the
# command with ``set_defaults(handler=FUNCTION)``; ``FUNCTION(args)`` returns the exit status.
COMMAND_MODULES = (
    "depthscope.maps.command",
    "depthscope.compare",
    "depthscope.prune.command",
)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)"
    )
    parser.add_argument(
        "--dtype",
        default=None,
        help="float32 (default), bfloat16 or float16; low precision is meant for GPUs",
    )
    parser.add_argument(
        "--device-map",
        default=None,
        help="passed to from_pretrained, e.g. auto to spread a large model over GPUs",
    )


def _analysis_help() -> str:
    from depthscope.analyses import PAPER_ORDER, REGISTRY

    lines = [
        f"  {name:<16} {REGISTRY[name].description}" for name in PAPER_ORDER if name in REGISTRY
    ]
    return "analyses:\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from depthscope.data.sources import DEFAULT_SOURCE, describe_sources
    from depthscope.models.zoo import DEFAULT_MODEL

    parser = argparse.ArgumentParser(
        prog="depthscope",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("models", help="list the built-in models and whether they are cached")

    fetch = sub.add_parser(
        "fetch", help="download and convert a built-in model (done automatically on first use)"
    )
    fetch.add_argument("name", help="built-in model name (see `depthscope models`)")
    fetch.add_argument(
        "--force", action="store_true", help="rebuild even if a valid cached copy exists"
    )

    sources = "\n".join(f"  {form:<24} {text}" for form, text in describe_sources())
    analyze = sub.add_parser(
        "analyze",
        help="run analyses on a model and save results, figures and a report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the paper's analyses on MODEL and write DIR/run.json, DIR/results/*.json, "
        "DIR/figures/ and DIR/report.html. Rerunning the same command resumes an interrupted run "
        "and skips analyses whose results are up to date.",
        epilog=_analysis_help() + "\n\ndata sources:\n" + sources,
    )
    analyze.add_argument(
        "model",
        nargs="?",
        default=DEFAULT_MODEL,
        help=f"built-in name, Hugging Face id, local folder or .gguf file (default: {DEFAULT_MODEL})",
    )
    analyze.add_argument(
        "--analyses",
        default="all",
        help="comma-separated analyses; all = the five residual-stream analyses (E2-E6, the default); "
        "igrad, erasure and depth-score run when named",
    )
    analyze.add_argument(
        "--data",
        default=None,
        help=f"prompt source (default: {DEFAULT_SOURCE}; builtin:paper for igrad/erasure alone, "
        "builtin:hops for depth-score alone)",
    )
    analyze.add_argument(
        "-n",
        type=int,
        default=10,
        help="number of prompts; per level for levelled sources (default: 10)",
    )
    analyze.add_argument(
        "--out", type=Path, default=None, help="run directory (default: runs/<model name>)"
    )
    analyze.add_argument(
        "--seed", type=int, default=0, help="seed for generated data and split points (default: 0)"
    )
    analyze.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="intervention rows replayed together; lower it if memory runs out (default: 64)",
    )
    analyze.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a convention, e.g. --set front=0 --set aggregate=mean --set k=10 (repeatable)",
    )
    analyze.add_argument(
        "--fresh", action="store_true", help="ignore saved results and checkpoints"
    )
    analyze.add_argument("--no-plots", action="store_true", help="skip figures and the HTML report")
    _add_model_options(analyze)

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parser(sub)

    plot = sub.add_parser(
        "plot", help="redraw figures and the report of a run directory from its saved results"
    )
    plot.add_argument("run_dir", type=Path)
    return parser


def _parse_overrides(items: list[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DepthscopeError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip().replace("-", "_")] = value.strip()
    return overrides


def cmd_models() -> int:
    from depthscope.models.zoo import BUILTIN_MODELS, cache_dir, is_cached

    header = ("name", "family", "layers", "width", "params", "download", "cached", "source")
    rows = [
        (
            name,
            info.family,
            str(info.layers),
            str(info.hidden_size),
            f"{info.params_m:.0f}M",
            f"{info.download_mb:.0f} MB",
            "yes" if is_cached(name) else "no",
            info.source,
        )
        for name, info in BUILTIN_MODELS.items()
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    print(f"cache: {cache_dir()} (set DEPTHSCOPE_CACHE to move it)")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from depthscope.models.zoo import fetch_builtin, is_cached

    if is_cached(args.name) and not args.force:
        print(f"{args.name}: already cached in {fetch_builtin(args.name, progress=False)}")
        return 0
    fetch_builtin(args.name, progress=True, force=args.force)  # reports its own stages and timing
    return 0


def _default_out(model: str) -> Path:
    name = Path(model).stem if model.endswith(".gguf") else Path(model.rstrip("/")).name
    return Path("runs") / (name or "model")


def cmd_analyze(args: argparse.Namespace) -> int:
    from depthscope.data.sources import load_examples
    from depthscope.models.loading import load_model
    from depthscope.progress import RichProgress
    from depthscope.runner import (
        RunRequest,
        check_overrides,
        default_data,
        resolve_analyses,
        run_analyses,
    )

    if args.n is not None and args.n < 1:
        raise DepthscopeError("-n must be at least 1")
    if args.batch_size < 1:
        raise DepthscopeError("--batch-size must be at least 1")
    names = resolve_analyses([a.strip() for a in args.analyses.split(",") if a.strip()])
    overrides = _parse_overrides(args.overrides)
    check_overrides(names, overrides)
    data = args.data or default_data(names)
    examples = load_examples(data, args.n, seed=args.seed)
    out = args.out or _default_out(args.model)
    with RichProgress() as progress:
        progress.note(f"loading {args.model}")
        lm = load_model(
            args.model, device=args.device, dtype=args.dtype, device_map=args.device_map
        )
        progress.note(
            f"{lm.name}: {lm.n_layers} layers, d={lm.d_model}, {lm.identity['dtype']} on {lm.device}; "
            f"{len(examples)} prompts from {data}"
        )
        request = RunRequest(
            analyses=names,
            data=data,
            n=args.n,
            out=out,
            seed=args.seed,
            batch_size=args.batch_size,
            overrides=overrides,
            fresh=args.fresh,
        )
        run = run_analyses(lm, examples, request, progress)
    for name in names:
        print(f"  {name:<16} {run.status[name]:<24} {run.timings.get(name, 0.0):8.1f} s")
    if not args.no_plots:
        _plot(out)
    print(f"results in {out}/ (run.json, results/, figures/, report.html)")
    return 0


def _plot(run_dir: Path) -> None:
    from depthscope.report.figures import plot_run
    from depthscope.report.html import write_report

    files = plot_run(run_dir)
    report = write_report(run_dir)
    print(f"{len(files)} figure files in {run_dir / 'figures'}; report: {report}")


def cmd_plot(args: argparse.Namespace) -> int:
    if not args.run_dir.is_dir():
        raise DepthscopeError(
            f"run directory {args.run_dir} does not exist; pass the --out of an analyze run"
        )
    _plot(args.run_dir)
    return 0


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # transformers is a hard dependency; this only guards odd installs
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from depthscope import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 0
    _quiet_libraries()
    keep_freed_memory()
    handlers = {
        "models": lambda: cmd_models(),
        "fetch": lambda: cmd_fetch(args),
        "analyze": lambda: cmd_analyze(args),
        "plot": lambda: cmd_plot(args),
    }
    handler = handlers.get(args.command) or (lambda: args.handler(args))
    try:
        return handler()
    except DepthscopeError as exc:
        print(f"depthscope: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("depthscope: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
