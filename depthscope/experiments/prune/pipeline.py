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
from depthscope.core.result import Result
from depthscope.core.run_folder import RunFolder
from depthscope.data.answer_split import paper_split
from depthscope.data.prompts import PromptSet, tokenize
from depthscope.data.sources import load_examples
from depthscope.experiments.prune.criteria import (
    Calibration,
    calibrate,
    iterative_block_influence,
    random_ranking,
    ranking,
    removal_sets,
)
from depthscope.experiments.prune.evaluate import EvalData, Tally, evaluate
from depthscope.experiments.prune.harness import parse_eval, run_tasks
from depthscope.experiments.prune.heal import HealSettings, heal, heal_windows, healed_metrics
from depthscope.experiments.prune.settings import EFFECT_ANALYSIS, RANDOM, PruneSettings, specs
from depthscope.experiments.prune.surgery import pruned_copy
from depthscope.models.loading.loader import LoadedModel
from depthscope.verdict import bootstrap

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
        # the answer split follows the tokenizer (GPT-2-style tokenizers merge " 2" into one
        # token: the boundary space then moves to the answer; the text read is unchanged)
        examples = [
            paper_split(tok, e) for e in load_examples(spec, settings.task_n, seed=settings.seed)
        ]
        prompts = PromptSet.from_examples(tok, examples)
        usable = [i for i, n in enumerate(prompts.answer_lengths) if n is not None]
        if not usable:
            raise DepthscopeError(
                f"{spec} has no examples with a usable answer; use a task source with answers, "
                "e.g. builtin:arith-fewshot:2"
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
    if not RunFolder(run_dir).results.is_dir():
        raise DepthscopeError(
            f"--run {run_dir} is not a run directory (no results/); pass the --out of "
            "`depthscope analyze`, or leave --run out to compute the effects here"
        )
    path = RunFolder(run_dir).result(analysis)
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
        return values, f"{RunFolder(settings.run_dir).result(analysis)} (output_change)"
    progress.note(f"computing {analysis} (layer skips) on {len(calibration)} calibration prompts")
    data = analyze(
        lm, analysis, calibration, parts=("layer",), seed=settings.seed, progress=progress
    ).data
    values = [float(v) for v in np.asarray(data["output_change"], dtype=float)]
    return values, f"{analysis} on {len(calibration)} prompts of {settings.calib} (output_change)"


def sleb_removals(
    lm: LoadedModel, settings: PruneSettings, calibration: list[list[int]], progress: Progress
) -> tuple[dict[int, list[int]], list[float]]:
    """SLEB (Song et al. 2024): remove, one at a time, the layer whose removal raises the
    calibration text's perplexity least, re-scoring every remaining layer after each removal."""
    data = [EvalData("calibration", "text", [s for s in calibration if len(s) >= 2])]
    removed: list[int] = []
    sets, nll = {}, []
    for k in range(1, settings.max_drop + 1):
        remaining = [layer for layer in range(lm.n_layers) if layer not in removed]
        candidates = [tuple(sorted([*removed, layer])) for layer in remaining]
        tallies = evaluate(lm, candidates, data, batch_size=settings.batch_size, progress=progress)
        scores = [t["calibration"].nll / max(t["calibration"].tokens, 1) for t in tallies]
        best = int(np.argmin(scores))
        removed.append(remaining[best])
        sets[k] = sorted(removed)
        nll.append(round(float(scores[best]), 6))
    return sets, nll


def _lexicographic(first: list[float], second: list[float], digits: int = 2) -> list[int]:
    """Layers by ``first`` rounded to ``digits`` significant digits, ties broken by ``second``."""

    def rounded(x: float) -> float:
        return float(f"{x:.{digits}g}")

    return sorted(range(len(first)), key=lambda i: (rounded(first[i]), second[i], i))


def plan(
    lm: LoadedModel, settings: PruneSettings, inputs: Inputs, progress: Progress
) -> tuple[dict, dict]:
    """Per criterion: scores, ranking and removed layers for k = 1..K; per random seed the same."""
    criteria: dict[str, dict] = {}
    calibration: Calibration | None = None
    if {"block-influence", "angular"} & set(settings.criteria):
        calibration = calibrate(lm, inputs.calibration, progress)
    effects: dict[str, tuple[list[float], str]] = {}

    def effect(name: str) -> tuple[list[float], str]:
        if name not in effects:
            effects[name] = effect_scores(lm, name, settings, inputs.calibration, progress)
        return effects[name]

    for name in settings.criteria:
        if name == "block-influence-iterative":
            sets, rounds = iterative_block_influence(
                lm, inputs.calibration, settings.max_drop, progress
            )
            criteria[name] = {
                "scores": None,
                "ranking": None,
                "source": f"{len(inputs.calibration)} prompts of {settings.calib}, all tokens, "
                "re-measured on the pruned model after each removal",
                "removed": sets,
                "influence_per_round": rounds,
            }
            continue
        if name == "sleb":
            sets, nll = sleb_removals(lm, settings, inputs.calibration, progress)
            criteria[name] = {
                "scores": None,
                "ranking": None,
                "source": f"perplexity of {len(inputs.calibration)} prompts of {settings.calib}, "
                "re-scored after each removal",
                "removed": sets,
                "calibration_nll": nll,
            }
            continue
        if name == "future-then-current":
            future, future_source = effect("future-effect")
            current, current_source = effect("current-effect")
            order = _lexicographic(future, current)
            criteria[name] = {
                "scores": future,
                "tie_break": current,
                "ranking": order,
                "source": f"{future_source}; ties (2 significant digits) by {current_source}",
                "removed": removal_sets(name, settings.max_drop, order=order, calibration=None),
            }
            continue
        if name in EFFECT_ANALYSIS:
            scores, source = effect(name)
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


MIN_INFORMATIVE_ACCURACY = 0.2  # a task the unpruned model solves less often ranks nothing


def _columns(tally: Tally) -> np.ndarray:
    """``[sequences, 3]``: each sequence's summed NLL, scored tokens and correctness."""
    return np.asarray(tally.per_sequence, dtype=float).reshape(-1, 3)


def _drawn(tally: Tally, counts: np.ndarray, kind: str) -> np.ndarray:
    """The metric of each draw of sequences: mean NLL per token (text) or accuracy (tasks)."""
    cols = _columns(tally)
    if kind == "text":
        with np.errstate(invalid="ignore", divide="ignore"):
            return (counts @ cols[:, 0]) / (counts @ cols[:, 1])
    return (counts @ cols[:, 2]) / counts.sum(axis=1)


def _interval(samples: np.ndarray, transform=lambda x: x) -> list[float]:
    tail = 100 * (1 - bootstrap.LEVEL) / 2
    low, high = np.nanpercentile(samples, [tail, 100 - tail])
    return [float(transform(low)), float(transform(high))]


def _curve(
    tallies: list[dict[str, Tally]], index: dict, sets: dict[int, list[int]], data, counts: dict
) -> dict:
    """Metrics for k = 0..K of one criterion: ``{source: {metric: [values]}}``, with 90 %
    intervals over resampled sequences (``counts``: the draws, shared by all candidates)."""
    curve = {}
    for d in data:
        chosen = [tallies[index[()]][d.source]]
        chosen += [tallies[index[tuple(sets[k])]][d.source] for k in sorted(sets)]
        per_k = [t.metrics(d.kind) for t in chosen]
        curve[d.source] = {key: [m[key] for m in per_k] for key in per_k[0]}
        if d.kind == "text":
            curve[d.source]["perplexity_interval"] = [
                _interval(_drawn(t, counts[d.source], d.kind), np.exp) for t in chosen
            ]
        else:
            curve[d.source]["accuracy_interval"] = [
                _interval(_drawn(t, counts[d.source], d.kind)) for t in chosen
            ]
    return curve


def differences(
    tallies: list[dict[str, Tally]], index: dict, criteria: dict, data, counts: dict, k_max: int
) -> dict:
    """Per text source and k: every pair of criteria's difference in mean NLL (nats/token), with
    its paired 90 % interval (the same sequences drawn for both); ``real`` when it excludes 0."""
    out: dict = {}
    names = list(criteria)
    for d in data:
        if d.kind != "text":
            continue
        per_k = {}
        for k in range(1, k_max + 1):
            drawn = {
                n: _drawn(
                    tallies[index[tuple(criteria[n]["removed"][k])]][d.source],
                    counts[d.source],
                    "text",
                )
                for n in names
            }
            full = {
                n: tallies[index[tuple(criteria[n]["removed"][k])]][d.source].metrics("text")["nll"]
                for n in names
            }
            rows = []
            for i, a in enumerate(names):
                for b in names[i + 1 :]:
                    low, high = _interval(drawn[a] - drawn[b])
                    rows.append(
                        {
                            "a": a,
                            "b": b,
                            "difference_nats": round(full[a] - full[b], 5),
                            "interval": [round(low, 5), round(high, 5)],
                            "real": bool(low > 0 or high < 0),
                        }
                    )
            per_k[k] = rows
        out[d.source] = per_k
    return out


def _mean_curves(curves: list[dict]) -> dict:
    mean = {}
    for source in curves[0]:
        mean[source] = {  # the seeds' intervals stay per seed (metrics_per_seed)
            key: [float(np.mean([c[source][key][i] for c in curves])) for i in range(len(values))]
            for key, values in curves[0][source].items()
            if not key.endswith("_interval")
        }
    return mean


def primary_metric(datasets: list[EvalData]) -> tuple[str, str, bool]:
    """(source, metric, higher is better): text perplexity if measured, else task accuracy."""
    for d in datasets:
        if d.kind == "text":
            return d.source, "perplexity", False
    return datasets[0].source, "accuracy", True


def choose_best(
    metrics: dict, criteria: list[str], datasets: list[EvalData], k: int, diffs: dict
) -> dict:
    """The criterion whose removal of ``k`` layers measured best on the primary metric, and
    whether its lead over every other criterion exceeds the interval (``clear``)."""
    source, metric, higher = primary_metric(datasets)
    values = {c: metrics[c][source][metric][k] for c in criteria}
    sign = -1.0 if higher else 1.0
    best = min(criteria, key=lambda c: (sign * values[c], criteria.index(c)))
    doc = {"criterion": best, "k": k, "source": source, "metric": metric, "value": values[best]}
    rows = [r for r in diffs.get(source, {}).get(k, []) if best in (r["a"], r["b"])]
    if rows:
        doc["clear"] = all(r["real"] for r in rows)
        doc["not_separated_from"] = [
            r["b"] if r["a"] == best else r["a"] for r in rows if not r["real"]
        ]
    return doc


def harness_results(
    lm: LoadedModel, settings: PruneSettings, criteria: dict, progress: Progress
) -> dict:
    """lm-evaluation-harness on the unpruned model and on each criterion's ``k = K`` removal
    (healed too with ``--heal``): ``{"tasks", "results": {name: {task: {metric: value}}}}``."""
    tasks = parse_eval(settings.eval)
    k = settings.max_drop

    def run(model) -> dict:
        return run_tasks(lm, model, tasks, include=settings.eval_include, limit=settings.eval_limit)

    progress.note(f"lm-eval {', '.join(tasks)} on the unpruned model")
    results = {"unpruned": run(lm.model)}
    windows = heal_windows(lm, heal_settings(settings)) if settings.heal else None
    for name, entry in criteria.items():
        removed = entry["removed"][k]
        progress.note(f"lm-eval {', '.join(tasks)} without layers {removed} ({name})")
        results[name] = {"pruned": run(pruned_copy(lm, removed))}
        if windows is not None:
            model, _ = heal(lm, removed, windows, heal_settings(settings), progress)
            results[name]["healed"] = run(model)
    return {"tasks": tasks, "k": k, "include": settings.eval_include, "results": results}


def heal_settings(settings: PruneSettings) -> HealSettings:
    held_out = [[spec, settings.text_n] for spec in specs(settings.text)]
    return HealSettings(
        steps=settings.heal_steps, data=settings.heal_data, seed=settings.seed, held_out=held_out
    )


def run_prune(
    lm: LoadedModel,
    settings: PruneSettings,
    progress: Progress | None = None,
    out: Path | None = None,
) -> dict:
    """Everything ``prune.json`` holds (``out``: where healing keeps its finished candidates)."""
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
    counts = {
        d.source: bootstrap.draws(len(d.sequences), seed=settings.seed) for d in inputs.datasets
    }
    metrics = {
        name: _curve(tallies, index, entry["removed"], inputs.datasets, counts)
        for name, entry in criteria.items()
    }
    per_seed = {
        seed: _curve(tallies, index, sets, inputs.datasets, counts)
        for seed, sets in randoms.items()
    }
    diffs = differences(tallies, index, criteria, inputs.datasets, counts, settings.max_drop)
    validated = time.perf_counter()
    healed = None
    if settings.heal:
        sets = list(
            dict.fromkeys(tuple(s) for c in criteria.values() for s in c["removed"].values())
        )
        found = healed_metrics(
            lm, sets, inputs.datasets, heal_settings(settings), Path(out or "."), progress
        )
        healed_tallies = [
            found[c]["tallies"] if c in found else tallies[index[c]] for c in candidates
        ]
        healed = {
            "settings": asdict(heal_settings(settings)),
            "adapters": "LoRA on the linear layers of the kept layers next to each cut",
            "metrics": {
                name: _curve(healed_tallies, index, entry["removed"], inputs.datasets, counts)
                for name, entry in criteria.items()
            },
            "loss": {str(list(c)): found[c]["loss"] for c in found},
        }
    if per_seed:
        metrics[RANDOM] = _mean_curves(list(per_seed.values()))
    finished = time.perf_counter()
    harness = harness_results(lm, settings, criteria, progress) if settings.eval else None
    return {
        "schema": SCHEMA,
        "model": lm.identity,
        "harness": harness,
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
                **_informative(d, tallies[index[()]]),
            }
            for d in inputs.datasets
        ],
        "differences": diffs,
        "healed": healed,
        "interval": f"{bootstrap.LEVEL:.0%} over {bootstrap.RESAMPLES} resampled sequences",
        "calibration": {"source": settings.calib, "prompts": len(inputs.calibration)},
        "candidate_sets": len(candidates),
        "metrics": metrics,
        "best": choose_best(metrics, list(criteria), inputs.datasets, settings.max_drop, diffs),
        "seconds": {
            "criteria": round(planned - started, 3),
            "validation": round(validated - planned, 3),
            "healing": round(finished - validated, 3),
            "total": round(finished - started, 3),
        },
    }


def _informative(data: EvalData, unpruned: dict[str, Tally]) -> dict:
    """Tasks the unpruned model solves less than 20 % of the time rank nothing: said, not drawn."""
    if data.kind != "task":
        return {"informative": True}
    accuracy = unpruned[data.source].metrics("task")["accuracy"]
    return {
        "informative": bool(accuracy >= MIN_INFORMATIVE_ACCURACY),
        "unpruned_accuracy": accuracy,
    }


# What the table and the figure show per kind of data: (metric, heading).
SHOWN = {
    "text": (("perplexity", "perplexity"),),
    "task": (("accuracy", "answer accuracy"), ("answer_nll", "answer NLL (nats/token)")),
}


def harness_lines(doc: dict) -> list[str]:
    """One line per candidate: the harness's accuracy (or first metric) per task."""
    harness = doc.get("harness")
    if not harness:
        return []

    def shown(scores: dict) -> str:
        parts = []
        for task, metrics in scores.items():
            key = "acc,none" if "acc,none" in metrics else next(iter(metrics), None)
            value = metrics.get(key) if key else None
            err = metrics.get("acc_stderr,none")
            tail = f" ± {err:.1%}" if err is not None else ""
            parts.append(f"{task} {value:.1%}{tail}" if value is not None else f"{task} n/a")
        return "; ".join(parts)

    lines = [f"lm-eval at k={harness['k']} (accuracy ± the harness's standard error):"]
    lines.append(f"  unpruned               {shown(harness['results']['unpruned'])}")
    for name, entry in harness["results"].items():
        if name == "unpruned":
            continue
        lines.append(f"  {name:<22} {shown(entry['pruned'])}")
        if "healed" in entry:
            lines.append(f"  {name + ', healed':<22} {shown(entry['healed'])}")
    return lines


def best_lines(doc: dict) -> list[str]:
    """The best criterion at K, named only where its lead exceeds the intervals; and which
    differences between criteria are real at K."""
    best = doc["best"]
    shown = _fmt(best["value"], best["metric"])
    where = f"({best['metric']} {shown} on {best['source']})"
    lines = []
    if best.get("clear", True):
        lines.append(f"best at k={best['k']}: {best['criterion']} {where}")
    else:
        others = ", ".join(best["not_separated_from"])
        lines.append(
            f"best at k={best['k']}: no criterion leads beyond the {doc['interval']} interval "
            f"(lowest: {best['criterion']} {where}; not separated from {others})"
        )
    for source, per_k in doc.get("differences", {}).items():
        rows = per_k.get(best["k"]) or per_k.get(str(best["k"])) or []
        for row in rows:
            low, high = row["interval"]
            verdict = "real" if row["real"] else "within noise"
            lines.append(
                f"  {row['a']} vs {row['b']} at k={best['k']} on {source}: "
                f"{row['difference_nats']:+.3f} [{low:+.3f}, {high:+.3f}] nats/token ({verdict})"
            )
    return lines


def table_lines(doc: dict) -> list[str]:
    """One table per shown metric: rows k = 0..K, one column per criterion (and random)."""
    names = list(doc["metrics"])
    n_seeds = len(doc["random"]["seeds"])
    labels = [f"random ({n_seeds} seeds)" if n == RANDOM else n for n in names]
    widths = [max(len(label), 22) for label in labels]
    lines = []
    for data in doc["data"]:
        size = (
            f"{data['tokens']} tokens"
            if data["kind"] == "text"
            else f"{data['sequences']} examples"
        )
        if not data.get("informative", True):
            lines.append(
                f"{data['source']} ({size}): uninformative — the unpruned model answers "
                f"{data['unpruned_accuracy']:.0%} correctly (< {MIN_INFORMATIVE_ACCURACY:.0%}), "
                "so it ranks no criterion"
            )
            continue
        for metric, heading in SHOWN[data["kind"]]:
            lines.append(f"{heading} on {data['source']} ({size}), by layers removed:")
            lines.append(
                "  k  " + "  ".join(s.rjust(w) for s, w in zip(labels, widths, strict=True))
            )
            healed = (doc.get("healed") or {}).get("metrics") or {}
            for k in range(doc["max_drop"] + 1):
                cells = [_cell(doc["metrics"][n][data["source"]], metric, k) for n in names]
                lines.append(
                    f"{k:>3}  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
                )
                if healed and k:
                    after = [
                        _cell(healed[n][data["source"]], metric, k) if n in healed else ""
                        for n in names
                    ]
                    lines.append(
                        "   healed "
                        + "  ".join(c.rjust(w) for c, w in zip(after, widths, strict=True))
                    )
    return lines


def _cell(curve: dict, metric: str, k: int) -> str:
    """One table cell: the value at ``k``, perplexity with its interval over resampled texts."""
    shown = _fmt(curve[metric][k], metric)
    interval = curve.get(f"{metric}_interval") if metric == "perplexity" else None
    return f"{shown} [{interval[k][0]:.3g}, {interval[k][1]:.3g}]" if interval else shown


def _fmt(value: float, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.1%}" if metric == "accuracy" else f"{value:.4g}"
