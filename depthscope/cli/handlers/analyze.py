"""``depthscope analyze MODEL``: plan, load, run the analyses with checkpoints, save, verdict, report."""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import time

from depthscope.analyses.catalog import analysis_class
from depthscope.analyses.user_settings import setting_names
from depthscope.cli.analyze import default_out
from depthscope.cli.handlers.common import claim_for, inspect_from_options, load_from_options
from depthscope.cli.handlers.plot import plot_and_report
from depthscope.cli.options import parse_overrides
from depthscope.core.errors import DepthscopeError
from depthscope.core.folders import OutputFolder, friendly_os_errors
from depthscope.core.progress import Progress, make_progress
from depthscope.core.run_folder import RunFolder
from depthscope.data.sources import default_count
from depthscope.models.loading.loader import RANDOM_INIT
from depthscope.models.placement import resolve_placement
from depthscope.run.distributed import init_distributed
from depthscope.run.memory_plan import auto_batch_size, available_memory, estimate_run
from depthscope.run.presets import apply_preset
from depthscope.run.runner import (
    Run,
    RunRequest,
    check_context,
    plan_groups,
    resolve_analyses,
)
from depthscope.verdict.card import summary_lines
from depthscope.verdict.summary import write_summary


def run_analyze(args: argparse.Namespace) -> int:

    request, notices = _analyze_request(args)
    groups = plan_groups(request)  # data problems surface here, before anything loads
    run_dir = OutputFolder(request.out)
    run_dir.check()  # --out writable and ours, before anything is written
    reference = _reference_run(args, request)
    started = time.perf_counter()
    with friendly_os_errors(request.out), init_distributed(args.device) as dist:
        resolve_placement(  # a bad --device is one line, before anything loads
            args.device,
            args.device_map,
            local_rank=dist.local_rank,
            local_world_size=dist.local_world_size,
        )
        run = _run_analyses(args, request, groups, notices, run_dir, dist)
        if reference is not None:
            reference_args, reference_request, reference_dir = reference
            _run_analyses(
                reference_args,
                reference_request,
                plan_groups(reference_request),
                [],
                reference_dir,
                dist,
            )
    if not dist.is_main:
        return 0
    _report_end(request, run, time.perf_counter() - started, plots=not args.no_plots)
    return 0


def _reference_run(args: argparse.Namespace, request):
    """(arguments, request, folder) of the random-weight reference run, or None without
    ``--reference``: the same analyses, prompts and settings on ``random-init:SEED:MODEL``."""
    if args.reference is None:
        return None
    if args.model.startswith(RANDOM_INIT):
        raise DepthscopeError(
            f"{args.model} already has random weights; drop --reference or analyse the trained "
            "model"
        )
    reference_args = copy.copy(args)
    reference_args.model = f"{RANDOM_INIT}{args.seed}:{args.model}"
    reference_request = dataclasses.replace(
        request,
        out=RunFolder(request.out).reference.path,
        per_analysis=dict(request.per_analysis),
    )
    folder = OutputFolder(reference_request.out)
    folder.check()
    return reference_args, reference_request, folder


def _analyze_request(args: argparse.Namespace):
    """The run asked for, with a preset folded in; returns it and the preset's notices."""

    names = resolve_analyses([a.strip() for a in args.analyses.split(",") if a.strip()])
    overrides = parse_overrides(args.overrides)
    request = RunRequest(
        analyses=names,
        data=args.data,
        # no -n: each source's own default (10 prompts; 5 of each source of a mixture)
        n=args.n if args.n is not None or args.data is None else default_count(args.data),
        out=args.out or default_out(args.model),
        seed=args.seed,
        batch_size=64 if args.batch_size == "auto" else args.batch_size,
        overrides=overrides,
        fresh=args.fresh,
    )
    notices = _apply_preset(args, request, overrides) if args.preset else []
    return request, notices


def _run_analyses(args, request, groups, notices, run_dir, dist):
    """Plan (no weights), then load and run what is not up to date; rank 0 owns the directory."""

    display = make_progress() if dist.is_main else contextlib.nullcontext(Progress())
    with display as progress, contextlib.ExitStack() as held:
        for notice in notices:
            progress.note(notice)
        if not dist.is_main:
            dist.barrier()  # rank 0 fetches built-in models into the cache first
        info = inspect_from_options(
            args,
            args.model,
            local_rank=dist.local_rank,
            local_world_size=dist.local_world_size,
        )
        if dist.is_main:
            dist.barrier()
            held.enter_context(run_dir.lock(progress))
            claim_for(run_dir, info.identity, progress)
        run = Run(request, groups, info.identity, info.tokenizer, progress, dist=dist)
        run.plan(vocab_size=info.vocab_size)
        dist.check_same(
            "the run (model, prompts, settings, what is up to date)",
            {n: [p.key, p.status] for n, p in run.planned.items()},
        )
        check_context(groups, info.context_limit, info.identity.get("name", args.model))
        if not run.all_up_to_date:
            progress.note(f"loading {args.model}")
            lm = load_from_options(
                args,
                args.model,
                out=request.out,
                local_rank=dist.local_rank,
                local_world_size=dist.local_world_size,
                info=info,
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
        plot_and_report(out)
    load = run.identity.get("load_seconds")
    loaded = (
        f" (model load {load:.1f} s)"
        if isinstance(load, int | float) and not run.all_up_to_date
        else ""
    )
    print(f"done in {seconds:.1f} s{loaded}; results in {out}/")


def _size_batches(args: argparse.Namespace, request, lm, groups, progress) -> None:
    """Resolve --batch-size auto from free GPU memory, and say what a CPU run will need."""

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

    choices = apply_preset(
        args.preset,
        request.analyses,
        data=args.data,
        n=args.n,
        overrides=overrides,
        settings_of=lambda name: setting_names(analysis_class(name)),
    )
    request.per_analysis = {name: (c.data, c.n) for name, c in choices.items()}
    request.overrides = {
        **{k: v for c in choices.values() for k, v in c.settings.items()},
        **overrides,
    }
    return [c.notice for c in choices.values() if c.notice]
