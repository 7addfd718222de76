"""``depthscope prune`` as a function: rank layers per criterion, remove 1..K, measure, summarise.

Three kinds of data are kept apart so no criterion is scored on what it was fitted on:
calibration prompts (what the criteria are computed on), held-out text (perplexity) and held-out
tasks with answers (teacher-forced accuracy).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from depthscope.api import analyze
from depthscope.core.errors import DepthscopeError
from depthscope.core.progress import Progress
from depthscope.data.prompts import PromptSet, tokenize
from depthscope.data.sources import load_examples
from depthscope.experiments.prune.criteria import (
    Calibration,
    calibrate,
    random_ranking,
    ranking,
    removal_sets,
)
from depthscope.experiments.prune.evaluate import EvalData, Tally, evaluate
from depthscope.experiments.prune.settings import EFFECT_ANALYSIS, RANDOM, PruneSettings, specs
from depthscope.models.loading.loader import LoadedModel
from depthscope.results.document import Result

SCHEMA = 1


@dataclass
class Inputs:
    """Token sequences for calibration and validation."""

    calibration: list[list[int]]
    datasets: list[EvalData] = field(default_factory=list)


def load_inputs(lm: LoadedModel, settings: PruneSettings) -> Inputs:
    """Tokenise the calibration prompts, held-out text (cut to ``max_tokens``) and tasks."""
    tok = lm.tokenizer
    calibration = [
        tokenize(tok, e.text)
        for e in load_examples(settings.calib, settings.calib_n, seed=settings.seed)
    ]
    datasets = []
    for spec in specs(settings.text):
        examples = load_examples(spec, settings.text_n, seed=settings.seed)
        sequences = [tokenize(tok, e.text)[: settings.max_tokens] for e in examples]
        sequences = [s for s in sequences if len(s) >= 2]
        if not sequences:
            raise DepthscopeError(
                f"{spec} gave no text of 2 tokens or more; use longer texts for --text, e.g. "
                "builtin:text or file:PATH"
            )
        datasets.append(EvalData(spec, "text", sequences))
    for spec in specs(settings.task):
        prompts = PromptSet.from_examples(
            tok, load_examples(spec, settings.task_n, seed=settings.seed)
        )
        usable = [i for i, n in enumerate(prompts.answer_lengths) if n is not None]
        if not usable:
            raise DepthscopeError(
                f"{spec} has no examples with a usable answer; use a task source with answers, "
                "e.g. builtin:arith-chain"
            )
        datasets.append(
            EvalData(
                spec,
                "task",
                [prompts.sequences[i] for i in usable],
                [prompts.answer_lengths[i] for i in usable],
            )
        )
    return Inputs(calibration, datasets)


def run_effects(run_dir: Path, analysis: str) -> list[float]:
    """``output_change`` of ``run_dir/results/<analysis>.json``; one clear line if absent."""
    run_dir = Path(run_dir)
    if not (run_dir / "results").is_dir():
        raise DepthscopeError(
            f"--run {run_dir} is not a run directory (no results/); pass the --out of "
            "`depthscope analyze`, or leave --run out to compute the effects here"
        )
    path = run_dir / "results" / f"{analysis}.json"
    if not path.exists():
        raise DepthscopeError(
            f"--run {run_dir} has no {analysis} result; run `depthscope analyze MODEL --analyses "
            f"{analysis} --out {run_dir}` or leave --run out to compute it here"
        )
    try:
        values = [float(v) for v in Result.load(path).data["output_change"]]
    except (KeyError, TypeError, ValueError):
        raise DepthscopeError(f"{path} has no usable output_change; rerun the analysis") from None
    return values


def check_run(settings: PruneSettings) -> None:
    """Fail before loading the model if ``--run`` cannot supply the effect criteria."""
    if settings.run_dir:
        for criterion in settings.criteria:
            if criterion in EFFECT_ANALYSIS:
                run_effects(Path(settings.run_dir), EFFECT_ANALYSIS[criterion])


def effect_scores(
    lm: LoadedModel,
    criterion: str,
    settings: PruneSettings,
    calibration: list[list[int]],
    progress: Progress,
) -> tuple[list[float], str]:
    """Output change per layer for an effect criterion: from ``--run`` or computed here."""
    analysis = EFFECT_ANALYSIS[criterion]
    if settings.run_dir:
        values = run_effects(Path(settings.run_dir), analysis)
        if len(values) != lm.n_layers:
            raise DepthscopeError(
                f"{settings.run_dir} measured a {len(values)}-layer model, but this model has "
                f"{lm.n_layers} layers; pass the run of the same model"
            )
        return values, f"{settings.run_dir}/results/{analysis}.json (output_change)"
    progress.note(f"computing {analysis} (layer skips) on {len(calibration)} calibration prompts")
    data = analyze(
        lm, analysis, calibration, parts=("layer",), seed=settings.seed, progress=progress
    ).data
    values = [float(v) for v in np.asarray(data["output_change"], dtype=float)]
    return values, f"{analysis} on {len(calibration)} prompts of {settings.calib} (output_change)"


def plan(
    lm: LoadedModel, settings: PruneSettings, inputs: Inputs, progress: Progress
) -> tuple[dict, dict]:
    """Per criterion: scores, ranking and removed layers for k = 1..K; per random seed the same."""
    criteria: dict[str, dict] = {}
    calibration: Calibration | None = None
    if {"block-influence", "angular"} & set(settings.criteria):
        calibration = calibrate(lm, inputs.calibration, progress)
    for name in settings.criteria:
        if name in EFFECT_ANALYSIS:
            scores, source = effect_scores(lm, name, settings, inputs.calibration, progress)
        elif name == "block-influence":
            scores = [float(v) for v in calibration.block_influence]
            source = f"{len(inputs.calibration)} prompts of {settings.calib}, all tokens"
        else:
            scores = None
            source = f"{len(inputs.calibration)} prompts of {settings.calib}, final token"
        order = ranking(scores) if scores is not None else None
        entry = {
            "scores": scores,
            "ranking": order,
            "source": source,
            "removed": removal_sets(name, settings.max_drop, order=order, calibration=calibration),
        }
        if name == "angular":
            entry["distances"] = {
                k: [float(v) for v in calibration.angular_distance(k)]
                for k in range(1, settings.max_drop + 1)
            }
        criteria[name] = entry
    seeds = [settings.seed * 1000 + i for i in range(settings.random_seeds)]
    randoms = {
        seed: removal_sets(
            RANDOM, settings.max_drop, order=random_ranking(lm.n_layers, seed), calibration=None
        )
        for seed in seeds
    }
    return criteria, randoms


def _curve(tallies: list[dict[str, Tally]], index: dict, sets: dict[int, list[int]], data) -> dict:
    """Metrics for k = 0..K of one criterion: ``{source: {metric: [values]}}``."""
    curve = {}
    for d in data:
        per_k = [tallies[index[()]][d.source].metrics(d.kind)]
        per_k += [tallies[index[tuple(sets[k])]][d.source].metrics(d.kind) for k in sorted(sets)]
        curve[d.source] = {key: [m[key] for m in per_k] for key in per_k[0]}
    return curve


def _mean_curves(curves: list[dict]) -> dict:
    mean = {}
    for source in curves[0]:
        mean[source] = {
            key: [float(np.mean([c[source][key][i] for c in curves])) for i in range(len(values))]
            for key, values in curves[0][source].items()
        }
    return mean


def primary_metric(datasets: list[EvalData]) -> tuple[str, str, bool]:
    """(source, metric, higher is better): text perplexity if measured, else task accuracy."""
    for d in datasets:
        if d.kind == "text":
            return d.source, "perplexity", False
    return datasets[0].source, "accuracy", True


def choose_best(metrics: dict, criteria: list[str], datasets: list[EvalData], k: int) -> dict:
    """The criterion whose removal of ``k`` layers measured best on the primary metric."""
    source, metric, higher = primary_metric(datasets)
    values = {c: metrics[c][source][metric][k] for c in criteria}
    sign = -1.0 if higher else 1.0
    best = min(criteria, key=lambda c: (sign * values[c], criteria.index(c)))
    return {"criterion": best, "k": k, "source": source, "metric": metric, "value": values[best]}


def run_prune(lm: LoadedModel, settings: PruneSettings, progress: Progress | None = None) -> dict:
    """Everything ``prune.json`` holds."""
    progress = progress or Progress()
    settings.check()
    settings.check_depth(lm.n_layers)
    started = time.perf_counter()
    inputs = load_inputs(lm, settings)
    criteria, randoms = plan(lm, settings, inputs, progress)
    planned = time.perf_counter()
    all_sets = [s for c in criteria.values() for s in c["removed"].values()]
    all_sets += [s for r in randoms.values() for s in r.values()]
    candidates = list(dict.fromkeys([(), *(tuple(s) for s in all_sets)]))
    index = {c: i for i, c in enumerate(candidates)}
    tallies = evaluate(
        lm, candidates, inputs.datasets, batch_size=settings.batch_size, progress=progress
    )
    metrics = {
        name: _curve(tallies, index, entry["removed"], inputs.datasets)
        for name, entry in criteria.items()
    }
    per_seed = {
        seed: _curve(tallies, index, sets, inputs.datasets) for seed, sets in randoms.items()
    }
    if per_seed:
        metrics[RANDOM] = _mean_curves(list(per_seed.values()))
    finished = time.perf_counter()
    return {
        "schema": SCHEMA,
        "model": lm.identity,
        "n_layers": lm.n_layers,
        "max_drop": settings.max_drop,
        "settings": asdict(settings),
        "criteria": criteria,
        "random": {"seeds": list(randoms), "removed": randoms, "metrics_per_seed": per_seed},
        "data": [
            {
                "source": d.source,
                "kind": d.kind,
                "sequences": len(d.sequences),
                "tokens": sum(len(s) for s in d.sequences),
            }
            for d in inputs.datasets
        ],
        "calibration": {"source": settings.calib, "prompts": len(inputs.calibration)},
        "candidate_sets": len(candidates),
        "metrics": metrics,
        "best": choose_best(metrics, list(criteria), inputs.datasets, settings.max_drop),
        "seconds": {
            "criteria": round(planned - started, 3),
            "validation": round(finished - planned, 3),
            "total": round(finished - started, 3),
        },
    }


# What the table and the figure show per kind of data: (metric, heading).
SHOWN = {
    "text": (("perplexity", "perplexity"),),
    "task": (("accuracy", "answer accuracy"), ("answer_nll", "answer NLL (nats/token)")),
}


def table_lines(doc: dict) -> list[str]:
    """One table per shown metric: rows k = 0..K, one column per criterion (and random)."""
    names = list(doc["metrics"])
    n_seeds = len(doc["random"]["seeds"])
    labels = [f"random ({n_seeds} seeds)" if n == RANDOM else n for n in names]
    widths = [max(len(label), 9) for label in labels]
    lines = []
    for data in doc["data"]:
        size = (
            f"{data['tokens']} tokens"
            if data["kind"] == "text"
            else f"{data['sequences']} examples"
        )
        for metric, heading in SHOWN[data["kind"]]:
            lines.append(f"{heading} on {data['source']} ({size}), by layers removed:")
            lines.append(
                "  k  " + "  ".join(s.rjust(w) for s, w in zip(labels, widths, strict=True))
            )
            for k in range(doc["max_drop"] + 1):
                values = [doc["metrics"][n][data["source"]][metric][k] for n in names]
                cells = [_fmt(v, metric) for v in values]
                lines.append(
                    f"{k:>3}  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
                )
    return lines


def _fmt(value: float, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.1%}" if metric == "accuracy" else f"{value:.4g}"
