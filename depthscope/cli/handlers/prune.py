"""``depthscope prune MODEL``: rank layers, remove 1..K of them, measure, optionally save."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from depthscope.cli.handlers.common import load_from_options
from depthscope.cli.options import model_stem
from depthscope.cli.prune import settings_from_args
from depthscope.core.errors import DepthscopeError
from depthscope.core.files import atomic_write_json
from depthscope.core.progress import RichProgress
from depthscope.data.sources import load_examples
from depthscope.experiments.prune.figures import draw_prune
from depthscope.experiments.prune.harness import parse_eval, require_harness
from depthscope.experiments.prune.heal import require_peft, save_healed
from depthscope.experiments.prune.pipeline import (
    best_lines,
    check_run,
    harness_lines,
    heal_settings,
    run_prune,
    table_lines,
)
from depthscope.experiments.prune.settings import specs
from depthscope.experiments.prune.surgery import save_pruned


def run_prune_command(args: argparse.Namespace) -> int:

    settings = settings_from_args(args)
    settings.check()
    check_run(settings)
    heal_data = [settings.heal_data] if settings.heal else []
    for spec in [*specs(settings.text), *specs(settings.task), settings.calib, *heal_data]:
        load_examples(spec, 1, seed=settings.seed)  # a bad data spec fails before loading
    if settings.heal:
        require_peft()  # before loading anything
    if parse_eval(settings.eval):
        require_harness()
    if args.save is not None and args.save.exists() and any(args.save.iterdir()):
        raise DepthscopeError(f"--save {args.save} exists and is not empty; choose a new folder")
    out = args.out or Path("runs") / f"prune-{model_stem(args.model)}"
    started = time.perf_counter()
    with RichProgress() as progress:
        progress.note(f"loading {args.model}")
        lm = load_from_options(args, args.model, out=out)
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
    figures = [] if args.no_plots else _plot(doc, out / "figures")
    doc["table"] = table_lines(doc)
    atomic_write_json(out / "prune.json", doc)
    _report(doc, out, figures, doc["table"])
    return 0


def _plot(doc: dict, folder: Path) -> list[Path]:

    return draw_prune(doc, folder)


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
