"""``depthscope prune MODEL``: rank layers, remove 1..K of them, measure, optionally save."""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from depthscope.cli.handlers.common import claim_for, inspect_from_options, load_from_options
from depthscope.cli.options import model_stem
from depthscope.cli.prune import settings_from_args
from depthscope.core.errors import DepthscopeError
from depthscope.core.folders import OutputFolder, friendly_os_errors
from depthscope.core.progress import RichProgress
from depthscope.core.run_folder import PRUNE_OUTPUTS
from depthscope.data.sources import load_examples
from depthscope.experiments.prune.harness import parse_eval, require_harness
from depthscope.experiments.prune.heal import require_peft, save_healed
from depthscope.experiments.prune.outputs import write_prune
from depthscope.experiments.prune.pipeline import (
    best_lines,
    check_run,
    harness_lines,
    heal_settings,
    run_prune,
)
from depthscope.experiments.prune.settings import specs
from depthscope.experiments.prune.surgery import save_pruned


def run_prune_command(args: argparse.Namespace) -> int:

    settings = settings_from_args(args)  # checked by cli.prune.check
    check_run(settings)
    heal_data = [settings.heal_data] if settings.heal else []
    for spec in [*specs(settings.text), *specs(settings.task), settings.calib, *heal_data]:
        load_examples(spec, 1, seed=settings.seed)  # a bad data spec fails before loading
    if settings.heal:
        require_peft()  # before loading anything
    if parse_eval(settings.eval):
        require_harness()
    out = args.out or Path("runs") / f"prune-{model_stem(args.model)}"
    guard = OutputFolder(out, outputs=PRUNE_OUTPUTS)
    guard.check()  # writable and holding nothing foreign, before the model loads
    save = None
    if args.save is not None:
        save = OutputFolder(args.save, outputs=None, option="--save")  # a model folder
        save.check()
        if save.present():
            raise DepthscopeError(
                f"--save {args.save} exists and is not empty; choose a new folder"
            )
    started = time.perf_counter()
    with (
        friendly_os_errors(out),
        RichProgress() as progress,
        guard.lock(progress),
        save.lock(progress) if save is not None else contextlib.nullcontext(),
    ):
        info = inspect_from_options(args, args.model)
        claim_for(guard, info.identity, progress)  # one model's folder, before the weights load
        progress.note(f"loading {args.model}")
        lm = load_from_options(args, args.model, out=out, info=info)
        settings.check_depth(lm.n_layers)
        progress.note(f"{lm.name}: {lm.n_layers} layers; removing 1..{settings.max_drop}")
        doc = run_prune(lm, settings, progress, out=out)
        best = doc["best"]
        if args.save is not None:
            removed = doc["criteria"][best["criterion"]]["removed"][settings.max_drop]
            if settings.heal:  # the healed weights, merged into plain ones
                save_healed(lm, removed, heal_settings(settings), args.save, progress)
            else:
                save_pruned(lm, removed, args.save)
            doc["saved"] = {
                "path": str(args.save),
                "criterion": best["criterion"],
                "removed": removed,
                "healed": bool(settings.heal),
            }
        doc["seconds"]["command"] = round(time.perf_counter() - started, 3)
        figures = write_prune(doc, out, plots=not args.no_plots)
    _report(doc, out, figures, doc["table"])
    return 0


def _report(doc: dict, out: Path, figures: list[Path], table: list[str]) -> None:
    for line in table:
        print(line)
    k = doc["max_drop"]
    for name, entry in doc["criteria"].items():
        print(f"  {name:<16} removes at k={k}: {entry['removed'][k]}")
    for line in best_lines(doc) + harness_lines(doc):
        print(line)
    if "saved" in doc:
        saved = doc["saved"]
        print(
            f"saved the model without layers {saved['removed']} (chosen by {saved['criterion']}) "
            f"to {saved['path']}"
        )
    extra = f", {len(figures)} figure files" if figures else ""
    seconds = doc["seconds"]
    healing = ""
    if doc.get("healed"):
        healed = len(doc["healed"]["loss"])
        healing = f", {healed} candidates healed in {seconds.get('healing', 0):.0f} s"
    print(
        f"{doc['candidate_sets']} layer sets measured in {seconds['validation']:.0f} s "
        f"(criteria {seconds['criteria']:.0f} s{healing}); results in {out}/ (prune.json{extra})"
    )
