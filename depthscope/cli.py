"""The `depthscope` command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from depthscope.core.allocator import keep_freed_memory
from depthscope.core.errors import DepthscopeError

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
    "depthscope.experiments.maps.command",
    "depthscope.results.export",
    "depthscope.results.compare",
    "depthscope.experiments.prune.command",
    "depthscope.experiments.training.scratch_command",
    "depthscope.experiments.training.finetune_command",
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
    """Every analysis with its paper reference and its settings (key, default, meaning)."""
    from depthscope.analyses.catalog import REGISTRY, default_run, runnable
    from depthscope.analyses.settings import setting_help

    lines = ["analyses (in the paper's order; * = run by --analyses all):"]
    for name in runnable():
        cls = REGISTRY[name]
        star = "*" if name in default_run() else " "
        lines.append(f" {star}{name:<16} {cls.description}")
        lines.append(f"  {'':<16} default data: {cls.default_data}")
        for key, default, text in setting_help(cls):
            shown = ",".join(default) if isinstance(default, tuple) else default
            lines.append(f"  {'':<18}--set {name}.{key}={shown}  {text}".rstrip())
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from depthscope.data.sources import DEFAULT_SOURCE, describe_sources
    from depthscope.models.loading.zoo import DEFAULT_MODEL

    parser = argparse.ArgumentParser(
        prog="depthscope",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "--verbose", action="store_true", help="show third-party output (transformers' messages)"
    )
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
        "and skips analyses whose results are up to date (without loading the model if all are). "
        "Each analysis runs on its own default data unless --data is given.",
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
        help=f"prompt source for every analysis (default: each analysis's own, {DEFAULT_SOURCE} "
        "for E2-E6, builtin:paper for igrad/erasure, builtin:hops for depth-score)",
    )
    analyze.add_argument(
        "-n",
        type=int,
        default=None,
        help="number of prompts; per level for levelled sources (default: 10, a fixed set such "
        "as builtin:e12 whole, or the preset's)",
    )
    analyze.add_argument(
        "--preset",
        default=None,
        choices=["paper"],
        help="paper: the paper's data (hf: when the hub is reachable, else the closest built-in "
        "source), prompt counts and settings per analysis; explicit --data/-n/--set still win "
        "(docs/paper-fidelity.md)",
    )
    analyze.add_argument(
        "--out", type=Path, default=None, help="run directory (default: runs/<model name>)"
    )
    analyze.add_argument(
        "--seed", type=int, default=0, help="seed for generated data and split points (default: 0)"
    )
    analyze.add_argument(
        "--batch-size",
        type=_batch_size,
        default="auto",
        help="intervention rows replayed together, or auto: what fits the free memory of a GPU, "
        "64 on CPU (default: auto); it halves by itself on out-of-memory",
    )
    analyze.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a setting of one analysis, e.g. --set future-effects.front=0 --set k=10 "
        "(repeatable; a key several analyses share needs the analysis prefix; keys listed below)",
    )
    analyze.add_argument(
        "--fresh", action="store_true", help="ignore saved results and checkpoints"
    )
    analyze.add_argument("--no-plots", action="store_true", help="skip figures and the HTML report")
    _add_model_options(analyze)

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parser(sub)

    plot = sub.add_parser(
        "plot",
        help="redraw figures and the report of a run directory from its saved results",
        description="Redraw DIR/figures/ (PNG and PDF) and DIR/report.html from the saved "
        "results/*.json alone (no model is loaded), e.g. after upgrading depthscope or copying a "
        "run directory from a cluster.",
    )
    plot.add_argument("run_dir", type=Path, help="a run directory written by depthscope analyze")
    return parser


def _parse_overrides(items: list[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DepthscopeError(f"--set expects KEY=VALUE, got {item!r}")
        prefix, dot, name = key.strip().rpartition(".")
        overrides[f"{prefix}{dot}{name.replace('-', '_')}"] = value.strip()
    return overrides


def cmd_models() -> int:
    from depthscope.models.loading.zoo import BUILTIN_MODELS, cache_dir, is_cached

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
    from depthscope.models.loading.zoo import fetch_builtin, is_cached

    if is_cached(args.name) and not args.force:
        print(f"{args.name}: already cached in {fetch_builtin(args.name, progress=False)}")
        return 0
    fetch_builtin(args.name, progress=True, force=args.force)  # reports its own stages and timing
    return 0


def _default_out(model: str) -> Path:
    name = Path(model).stem if model.endswith(".gguf") else Path(model.rstrip("/")).name
    return Path("runs") / (name or "model")


def cmd_analyze(args: argparse.Namespace) -> int:
    from depthscope.core.folders import OutputFolder, friendly_os_errors
    from depthscope.models.placement import resolve_placement
    from depthscope.run.distributed import init_distributed
    from depthscope.run.runner import plan_groups

    request, notices = _analyze_request(args)
    groups = plan_groups(request)  # data problems surface here, before anything loads
    run_dir = OutputFolder(request.out)
    run_dir.check()  # --out writable and ours, before anything is written
    started = time.perf_counter()
    with friendly_os_errors(request.out), init_distributed(args.device) as dist:
        placement = resolve_placement(
            args.device,
            args.device_map,
            local_rank=dist.local_rank,
            local_world_size=dist.local_world_size,
        )
        run = _run_analyses(args, request, groups, notices, run_dir, placement, dist)
    if not dist.is_main:
        return 0
    _report_end(request, run, time.perf_counter() - started, plots=not args.no_plots)
    return 0


def _analyze_request(args: argparse.Namespace):
    """The run asked for, with a preset folded in; returns it and the preset's notices."""
    from depthscope.data.sources import default_count
    from depthscope.run.runner import RunRequest, resolve_analyses

    if args.n is not None and args.n < 1:
        raise DepthscopeError("-n must be at least 1")
    if args.batch_size != "auto" and args.batch_size < 1:
        raise DepthscopeError("--batch-size must be at least 1 (or auto)")
    names = resolve_analyses([a.strip() for a in args.analyses.split(",") if a.strip()])
    overrides = _parse_overrides(args.overrides)
    request = RunRequest(
        analyses=names,
        data=args.data,
        n=args.n if args.n is not None else default_count(args.data),
        out=args.out or _default_out(args.model),
        seed=args.seed,
        batch_size=64 if args.batch_size == "auto" else args.batch_size,
        overrides=overrides,
        fresh=args.fresh,
    )
    notices = _apply_preset(args, request, overrides) if args.preset else []
    return request, notices


def _run_analyses(args, request, groups, notices, run_dir, placement, dist):
    """Plan (no weights), then load and run what is not up to date; rank 0 owns the directory."""
    import contextlib

    from depthscope.core.progress import Progress, make_progress
    from depthscope.models.loading.loader import load_model
    from depthscope.run.runner import Run, check_context, describe_model

    display = make_progress() if dist.is_main else contextlib.nullcontext(Progress())
    with display as progress, contextlib.ExitStack() as held:
        for notice in notices:
            progress.note(notice)
        if not dist.is_main:
            dist.barrier()  # rank 0 fetches built-in models into the cache first
        info = describe_model(args.model, args.dtype, placement.device)
        if dist.is_main:
            dist.barrier()
            held.enter_context(run_dir.lock(progress))
            identity = info.identity
            changed = run_dir.claim(
                identity["fingerprint"], identity["name"], identity.get("source")
            )
            if changed:
                progress.note(changed)
        run = Run(request, groups, info.identity, info.tokenizer, progress, dist=dist)
        run.plan(vocab_size=info.vocab_size)
        dist.check_same(
            "the run (model, prompts, settings, what is up to date)",
            {n: [p.key, p.status] for n, p in run.planned.items()},
        )
        check_context(groups, info.context_limit, info.identity.get("name", args.model))
        if not run.all_up_to_date:
            progress.note(f"loading {args.model}")
            lm = load_model(
                args.model,
                device=placement.device,
                dtype=args.dtype,
                device_map=placement.device_map,
                info=info,
                max_memory=placement.max_memory,
                offload_folder=str(request.out / "offload") if placement.offloads_to_disk else None,
            )
            sources = ", ".join(f"{len(g.prompts)} prompts from {g.data}" for g in groups)
            progress.note(
                f"{lm.name}: {lm.n_layers} layers, d={lm.d_model}, {lm.identity['dtype']} on "
                f"{lm.device}; {sources}; {dist.describe()}"
            )
            _size_batches(args, request, lm, groups, progress)
            run.execute(lm)
    return run


def _report_end(request, run, seconds: float, *, plots: bool) -> None:
    """Statuses, skipped prompts, the verdict, figures and report, total and load time."""
    from depthscope.results.summary import summary_lines, write_summary

    for name in request.analyses:
        print(f"  {name:<16} {run.status[name]:<24} {run.timings.get(name, 0.0):8.1f} s")
    for name, summary in run.skips.items():
        print(f"  note: {name}: {summary}")
    out = request.out
    for line in summary_lines(write_summary(out)):
        print(line)
    if run.all_up_to_date:
        print(
            "nothing to compute: every result matches this command; the model was not loaded "
            "(--fresh recomputes)"
        )
    if plots:
        _plot(out)
    load = run.identity.get("load_seconds")
    loaded = (
        f" (model load {load:.1f} s)"
        if isinstance(load, int | float) and not run.all_up_to_date
        else ""
    )
    print(f"done in {seconds:.1f} s{loaded}; results in {out}/")


def _batch_size(text: str) -> int | str:
    """argparse type of --batch-size: a positive integer or "auto"."""
    if text == "auto":
        return text
    try:
        return int(text)  # the range is checked with the other settings, in one clear line
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or auto, got {text!r}"
        ) from None


def _size_batches(args: argparse.Namespace, request, lm, groups, progress) -> None:
    """Resolve --batch-size auto from free GPU memory, and say what a CPU run will need."""
    from depthscope.engine.memory import auto_batch_size, available_memory, estimate_run

    lengths = [len(s) for g in groups for s in g.prompts.sequences]
    if args.batch_size == "auto":
        request.batch_size = auto_batch_size(lm.model, max(lengths))
    if lm.device.type == "cpu":
        estimate = estimate_run(
            lm.model, lengths, prompt_batch=request.prompt_batch, batch_size=request.batch_size
        )
        progress.note(estimate.describe(available_memory()))


def _apply_preset(args: argparse.Namespace, request, overrides: dict[str, str]) -> list[str]:
    """Fold ``--preset`` into the request (explicit options win); returns notices to print."""
    import dataclasses

    from depthscope.analyses.catalog import analysis_class
    from depthscope.run.presets import apply_preset

    choices = apply_preset(
        args.preset,
        request.analyses,
        data=args.data,
        n=args.n,
        overrides=overrides,
        settings_of=lambda name: {
            f.name for f in dataclasses.fields(analysis_class(name).Settings)
        },
    )
    request.per_analysis = {name: (c.data, c.n) for name, c in choices.items()}
    request.overrides = {
        **{k: v for c in choices.values() for k, v in c.settings.items()},
        **overrides,
    }
    return [c.notice for c in choices.values() if c.notice]


def _plot(run_dir: Path) -> None:
    from depthscope.figures.report import plot_run, write_report

    files = plot_run(run_dir)
    report = write_report(run_dir)
    print(f"{len(files)} figure files in {run_dir / 'figures'}; report: {report}")


def cmd_plot(args: argparse.Namespace) -> int:
    from depthscope.core.folders import OutputFolder

    OutputFolder(args.run_dir).require_run()
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
    if not args.verbose:
        _quiet_libraries()
    keep_freed_memory()
    handlers = {
        "models": lambda: cmd_models(),
        "fetch": lambda: cmd_fetch(args),
        "analyze": lambda: cmd_analyze(args),
        "plot": lambda: cmd_plot(args),
    }
    handler = handlers.get(args.command) or (lambda: args.handler(args))
    from depthscope.run.runner import RunInterrupted

    try:
        return handler()
    except RunInterrupted as exc:
        print(f"depthscope: {exc}", file=sys.stderr)
        return 130
    except DepthscopeError as exc:
        print(f"depthscope: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("depthscope: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
