"""The numbers the docs state, written from saved runs: never typed by hand.

The docs hold generated parts between markers::

    <!-- findings:KEY -->
    ...generated...
    <!-- /findings:KEY -->

and this script rewrites each from the reference runs' saved JSON in ``docs/reference/``:

    python docs/make_findings.py              # rewrite the generated parts
    python docs/make_findings.py --check      # exit 1 if a doc is out of date (the test runs it)
    python docs/make_findings.py --reference runs/smollm2-135m runs/gemma3-270m
        # take the summary.json of default runs as the new references (then rewrite)
    python docs/make_findings.py --study runs/study/smollm2-135m runs/study/gemma3-270m
        # the prompt-count study: the verdict on the first n prompts of large runs
    python docs/make_findings.py --calibration
        # the step rule's false-positive rate and power on simulated profiles (``calibration``)
    python docs/make_findings.py --bf16 runs/bf16-smollm2-135m runs/bf16-gemma3-270m
        # --dtype bfloat16 default runs: their verdict beside fp32's (``bf16-verdict``)
    python docs/make_findings.py --tuned RUN LENS [RUN LENS]
        # a run whose logit lens read the tuned lens LENS: the lens record, verdict and figure

Keys: ``verdict:MODEL`` (the terminal verdict of a reference run), ``transition:MODEL`` (one
sentence: the consensus and every indicator's change point with its interval),
``comparison`` (the two built-ins compared number by number), ``prompt-study``
(how the intervals shrink with the prompt count), ``contributions:MODEL`` and
``local-effects:MODEL`` (what those figures show, by stated rules), ``prune:MODEL`` (the pruning
tables, intervals, healing and timings of ``depthscope prune``) and ``depth-score:MODEL`` (the
depth score per task and level with its interval, and whether it rises with difficulty).

    python docs/make_findings.py --prune runs/prune-smollm2-135m runs/prune-gemma3-270m
        # take the prune.json (and figure) of prune runs (then rewrite)
    python docs/make_findings.py --depth-score runs/ds-smollm2-135m-hops ...
        # take depth-score runs (one per task; then rewrite)
    python docs/make_findings.py --map runs/map-gemma3-270m-smollm2-135m
        # the linear map of the built-in pair (``linear-map``, ``linear-map-bench``)
    python docs/make_findings.py --attribution runs/attr-smollm2-135m runs/attr-gemma3-270m
        # --analyses erasure,igrad runs on builtin:paper (``attribution:MODEL``)
    python docs/make_findings.py --accuracy accuracy.json
        # benchmarks/task_accuracy.py --out JSON (``task-accuracy``)
    python docs/make_findings.py --coverage coverage.json
        # benchmarks/arch_coverage.py --out JSON: the architecture table (``coverage``)
    python docs/make_findings.py --training runs
        # the E11/E12 runs of docs/training.md under runs/e11, runs/e12 (``e11-*``, ``e12-*``)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np

from depthscope.figures.common import new_grid, save_figure, tidy
from depthscope.verdict import bootstrap
from depthscope.verdict.card import summary_lines
from depthscope.verdict.comparison import compare_summaries, row_line
from depthscope.verdict.summary import (
    Summary,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module, also by path
import findings_coverage  # noqa: E402
import findings_runs  # noqa: E402
import findings_training  # noqa: E402
import findings_verdict  # noqa: E402

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
REFERENCE = DOCS / "reference"
MODELS = ("smollm2-135m", "gemma3-270m")
MARKER = re.compile(r"(<!-- findings:(?P<key>[^ ]+) -->\n)(.*?)(<!-- /findings:(?P=key) -->)", re.S)


def reference(model: str) -> Summary:
    return Summary.from_json(json.loads((REFERENCE / model / "summary.json").read_text()))


# ---------------------------------------------------------------- generated parts


def verdict_block(model: str) -> str:
    """The verdict as ``depthscope analyze`` prints it, wrapped to the docs' width."""
    summary = reference(model)
    lines = []
    for line in summary_lines(summary):
        line = line.replace(summary.run_dir, f"runs/{model}")
        indent = len(line) - len(line.lstrip())
        if indent >= 4 and len(line) > 100:
            lines += textwrap.wrap(
                line.strip(), 96, initial_indent=" " * indent, subsequent_indent=" " * indent
            )
        else:
            lines.append(line)
    return "```\n" + "\n".join(lines) + "\n```\n"


def tuned_sentence(model: str) -> str:
    """How the reference lens was trained, how it scores held out, where both lenses converge."""
    record = json.loads((REFERENCE / model / "lens.json").read_text())
    summary = Summary.from_json(json.loads((REFERENCE / model / "summary-tuned.json").read_text()))
    held = record["heldout"]["kl_lens_final"]
    logit, tuned = np.asarray(held["logit"]), np.asarray(held["tuned"])
    below = int((tuned < logit).sum())
    worse = "".join(
        f"; not at the input of layer {i}: tuned {tuned[i]:.2f}, logit {logit[i]:.2f}"
        for i in np.flatnonzero(tuned >= logit)
    )
    lens = summary.finding("lens")
    return (
        f"On {model}: `depthscope lens train {model} --tokens {record['settings']['tokens']}` "
        f"trained on {record['tokens']} tokens of `{record['data']}` in {record['seconds']:.0f} s "
        f"on the 2-core machine ({record['optimizer']}). On {record['heldout']['tokens']} held-out "
        f"tokens, KL(lens ‖ final) of the tuned lens is below the logit lens's at {below} of "
        f"{logit.size} boundaries (mean over boundaries: tuned {tuned.mean():.2f} nats, logit "
        f"{logit.mean():.2f}{worse}). "
        f"Read on the 10 default prompts: {lens.sentence}\n"
    )


def _prompts(summary: Summary) -> int:
    finding = summary.finding("transition")
    counts = [p.get("n_prompts") or 0 for p in finding.details["profiles"].values()]
    return max(counts) if counts else 0


def comparison() -> str:
    """The two built-ins compared number by number (``depthscope compare``'s rule)."""
    a, b = (reference(m) for m in MODELS)
    rows = compare_summaries(a, b, MODELS)
    return "\n".join(f"- {row_line(row)}" for row in rows) + "\n"


def peers_table() -> str:
    """depthscope beside nnsight and TransformerLens, from benchmarks/results/peers.json."""
    doc = json.loads((ROOT / "benchmarks" / "results" / "peers.json").read_text())
    lens, future = doc["logit_lens"], doc["future_effects"]
    rows = [
        "| workload | depthscope | nnsight | TransformerLens | depthscope's speed-up | max difference (nnsight / TL) |",
        "|---|---|---|---|---|---|",
        f"| logit lens, {lens['prompts']} prompts, {lens['tokens']} tokens "
        f"(unembedding FLOP bound {lens['flop_bound_s']} s) | {lens['depthscope_s']} s "
        f"({lens['depthscope_ratio_to_bound']}× the bound) | {lens['nnsight_s']} s | "
        f"{lens['transformer_lens_s']} s | {lens['speedup_vs_nnsight']}× / "
        f"{lens['speedup_vs_transformer_lens']}× | KL {lens['max_abs_diff_kl']['nnsight']:.1e} / "
        f"{lens['max_abs_diff_kl']['transformer_lens']:.1e} |",
        f"| future effects of skipping each layer, 1 prompt of {future['prompt_tokens']} tokens, "
        f"{len(future['split_points'])} split points ({future['forward_passes_of_the_peers']} "
        f"forward passes for the peers) | {future['depthscope_s']} s | {future['nnsight_s']} s | "
        f"{future['transformer_lens_s']} s | {future['speedup_vs_nnsight']}× / "
        f"{future['speedup_vs_transformer_lens']}× | output change "
        f"{future['max_abs_diff_output_change']['nnsight']:.1e} / "
        f"{future['max_abs_diff_output_change']['transformer_lens']:.1e} |",
    ]
    versions = doc["versions"]
    return (
        "\n".join(rows)
        + f"\n\n({doc['model']}, {doc['machine']['threads']} threads, torch {versions['torch']}, "
        f"nnsight {versions['nnsight']}, transformer_lens {versions['transformer_lens']}; "
        f"fp32 matmul peak {doc['matmul_peak_gflops']} GFLOP/s.)\n"
    )


def lens_training_table() -> str:
    """Tuned-lens training time against the FLOP bound, from benchmarks/results/lens.json."""
    doc = json.loads((ROOT / "benchmarks" / "results" / "lens.json").read_text())
    rows = [
        "| model | tokens | seconds | tokens/s | FLOP bound | time / bound "
        "| held out: tuned KL below logit KL | mean held-out KL (tuned / logit) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lens in doc["lenses"]:
        kl = lens["mean_heldout_kl"]
        rows.append(
            f"| {lens['model']} | {lens['tokens']} | {lens['seconds']} | {lens['tokens_per_s']} | "
            f"{lens['flop_bound_s']} s | {lens['ratio_to_bound']}× | {lens['tuned_below_logit']} | "
            f"{kl['tuned']} / {kl['logit']} |"
        )
    return (
        "\n".join(rows)
        + f"\n\n({doc['threads']} threads; fp32 matmul peak {doc['matmul_peak_gflops']} GFLOP/s, "
        "measured by the script.)\n"
    )


CONTRIBUTION_KEYS = ("rel_layer", "rel_mlp", "cos_layer", "cos_att", "max_norm_resid")
OUTLIER_FACTOR = 5.0  # a layer whose relative contribution exceeds 5x the median layer's


def contributions_sentence(model: str) -> str:
    """What the contributions figures show, by stated rules, from the reference profiles."""
    data = json.loads((REFERENCE / model / "contributions.json").read_text())
    rel, rel_mlp = np.asarray(data["rel_layer"]), np.asarray(data["rel_mlp"])
    cos, cos_att = np.asarray(data["cos_layer"]), np.asarray(data["cos_att"])
    n = rel.size
    half = n // 2
    outliers = [int(i) for i in np.flatnonzero(rel > OUTLIER_FACTOR * np.median(rel))]
    kept = np.array([i not in outliers for i in range(n)])
    first, second = kept & (np.arange(n) < half), kept & (np.arange(n) >= half)
    peak = int(np.argmax(data["max_norm_resid"]))
    parts = [
        f"On {model} ({data['n_prompts']} prompts, {data['n_tokens']} tokens; token means): "
        + (
            "the layers whose ‖a+m‖/‖h‖ exceeds "
            f"{OUTLIER_FACTOR:g}× the median layer's are "
            + ", ".join(
                f"layer {i} ({rel[i]:.3g}; its MLP alone ‖m‖/‖h+a‖ = {rel_mlp[i]:.3g})"
                for i in outliers
            )
            if outliers
            else f"no layer's ‖a+m‖/‖h‖ exceeds {OUTLIER_FACTOR:g}× the median layer's"
        ),
        f"the largest residual norm at any token enters layer {peak} "
        f"({data['max_norm_resid'][peak]:.3g})",
        f"without those, the mean of ‖a+m‖/‖h‖ is {rel[first].mean():.2f} over layers "
        f"0–{half - 1} and {rel[second].mean():.2f} over layers {half}–{n - 1}",
        f"the cosine of what a layer adds with the residual lies in "
        f"[{cos[:half].min():.2f}, {cos[:half].max():.2f}] in the first half (negative at "
        f"{int((cos[:half] < 0).sum())} of {half} layers) and is positive at "
        f"{int((cos[half:] > 0).sum())} of {n - half} second-half layers (mean {cos[half:].mean():.2f}; "
        f"attention alone up to {cos_att.max():.2f}, at layer {int(np.argmax(cos_att))})",
    ]
    return "; ".join(parts) + ".\n"


def local_effects_sentence(model: str) -> str:
    """What the local-effects heatmaps show, by stated rules, from the reference matrices."""
    data = json.loads((REFERENCE / model / "local-effects.json").read_text())
    future, current = np.asarray(data["future"], float), np.asarray(data["current"], float)
    n = future.shape[0]
    # column l: the mean direct effect on layer l of removing each earlier layer s < l
    columns = np.array([np.nanmean(future[:col, col]) if col else np.nan for col in range(n)])
    top = int(np.nanargmax(columns))
    cell = np.unravel_index(np.nanargmax(future), future.shape)
    later = np.arange(3, n)
    standout = sorted(later[np.argsort(columns[later])[-3:]].tolist())
    tail = np.arange(n - n // 5, n)
    return (
        f"On {model} (future tokens; a column's value is the mean direct effect on that layer of "
        f"removing each earlier layer): the largest column is layer {top} ({columns[top]:.3g}); "
        f"the largest cell is {cell[0]}→{cell[1]} ({future[cell]:.3g}; on current tokens "
        f"{current[cell]:.3g}); beyond layer 2 the three largest columns are layers "
        + ", ".join(f"{i} ({columns[i]:.2f})" for i in standout)
        + f" against a median column of {np.nanmedian(columns[later]):.2f}; the last "
        f"{tail.size} layers' columns lie in [{columns[tail].min():.2f}, {columns[tail].max():.2f}].\n"
    )


def prune_reference(model: str) -> dict:
    return json.loads((REFERENCE / model / "prune.json").read_text())


def _seconds(value: float) -> str:
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


WHY_QUICK = {
    "contributions": "under a second (read off the clean trace)",
    "future-effects": "under a second of its own (it shares the current effects' replays, whose "
    "time is counted there)",
}


def timing_sentence(model: str) -> str:
    """How long the reference run's analyses took, as its run.json recorded them."""
    path = REFERENCE / model / "timings.json"
    if not path.exists():
        return f"(no timings kept for {model}: take a default run with --reference)\n"
    kept = json.loads(path.read_text())
    timings = kept["timings"]
    total = sum(timings.values())
    ranked = sorted(timings.items(), key=lambda item: -item[1])
    parts = ", ".join(f"{name.replace('-', ' ')} {_seconds(t)}" for name, t in ranked if t >= 0.5)
    note = "".join(
        f"; {name.replace('-', ' ')} {WHY_QUICK.get(name, 'under a second')}"
        for name, t in ranked
        if t < 0.5
    )
    return (
        f"{model}'s reference run ({kept['n_prompts']} prompts, {kept['n_tokens']} tokens): "
        f"analyses **{_seconds(total)}** on the 2-core machine ({parts}{note}; "
        f"{findings_runs.UNDER_LOAD}).\n"
    )


def _key(mapping: dict, k: int):
    return mapping[str(k)] if str(k) in mapping else mapping[k]


def prune_block(model: str) -> str:
    """The pruning run of ``model``: workload, time, tables with intervals, healing, the best
    criterion by the command's rule, and future effect against Block Influence at every k."""
    from dataclasses import asdict

    from depthscope.experiments.prune.pipeline import best_lines
    from depthscope.experiments.prune.settings import PruneSettings

    if not (REFERENCE / model / "prune.json").exists():
        return f"{model}: no reference prune run kept yet (`--prune RUN`).\n"
    doc = prune_reference(model)
    settings, seconds, k_max = doc["settings"], doc["seconds"], doc["max_drop"]
    names = list(doc["metrics"])
    healed = (doc.get("healed") or {}).get("metrics") or {}
    text = next(d for d in doc["data"] if d["kind"] == "text")
    tasks = [d for d in doc["data"] if d["kind"] == "task"]
    heal = f" --heal lora --heal-steps {settings['heal_steps']}" if healed else ""
    defaults = asdict(PruneSettings(max_drop=k_max))
    flags = "".join(
        f" --{name.replace('_', '-')} {settings[name]}"
        for name in ("text_n", "max_tokens", "task_n", "calib_n", "random_seeds")
        if settings.get(name) != defaults[name]
    )
    out = [
        f"`depthscope prune {model} --max-drop {k_max}{flags}{heal}`: criteria on "
        f"{doc['calibration']['prompts']} prompts of `{doc['calibration']['source']}`; perplexity "
        f"on {text['sequences']} passages of `{text['source']}` ({text['tokens']} tokens); "
        + "".join(f"accuracy on {d['sequences']} examples of `{d['source']}`; " for d in tasks)
        + f"{len(doc['random']['seeds'])} random seed(s)"
        + (f"; {settings['heal_steps']} LoRA steps per candidate" if healed else "")
        + f". **{_seconds(seconds['command'])}** on the 2-core machine (criteria "
        f"{seconds['criteria']:.0f} s, {doc['candidate_sets']} layer sets "
        f"{seconds['validation']:.0f} s"
        + (
            f", healing {len((doc['healed'] or {}).get('loss', {}))} candidates "
            f"{seconds['healing']:.0f} s"
            if healed
            else ""
        )
        + f"). Intervals: {doc['interval']}."
        + (
            " **The healing of this run trained on all of `builtin:text`, the held-out passages"
            " included** (it predates their exclusion): its healed perplexities are optimistic."
            if healed and "held_out" not in doc["healed"]["settings"]
            else ""
        ),
        "",
    ]

    def cell(curve: dict, metric: str, k: int) -> str:
        """The value at ``k`` with its interval (the random mean over seeds has none)."""
        fmt = "{:.0%}" if metric == "accuracy" else "{:.3g}"
        shown = fmt.format(curve[metric][k])
        interval = curve.get(f"{metric}_interval")
        if not interval:
            return shown
        return f"{shown} [{fmt.format(interval[k][0])}, {fmt.format(interval[k][1])}]"

    labels = [
        f"random ({len(doc['random']['seeds'])} seeds, mean)" if n == "random" else n for n in names
    ]
    for data, metric in [(text, "perplexity"), *[(d, "accuracy") for d in tasks]]:
        if not data.get("informative", True):
            out += [
                f"`{data['source']}` is uninformative: the unpruned model answers "
                f"{data['unpruned_accuracy']:.0%} correctly (below 20 %), so it ranks nothing.",
                "",
            ]
            continue
        after = " (healed rows: after LoRA)" if healed else ""
        out.append(f"{metric} on `{data['source']}` by layers removed{after}:")
        out.append("")
        out.append("| k | " + " | ".join(labels) + " |")
        out.append("|---" * (len(names) + 1) + "|")
        for k in range(k_max + 1):
            row = [cell(doc["metrics"][n][data["source"]], metric, k) for n in names]
            out.append(f"| {k} | " + " | ".join(row) + " |")
            if healed and k:
                after = [
                    cell(healed[n][data["source"]], metric, k) if n in healed else "" for n in names
                ]
                out.append(f"| {k} healed | " + " | ".join(after) + " |")
        out.append("")
    removed = "; ".join(
        f"{n} {_key(doc['criteria'][n]['removed'], k_max)}" for n in doc["criteria"]
    )
    out += [f"Layers removed at k = {k_max}: {removed}.", ""]
    out += [f"{best_lines(doc)[0]}.", ""]
    pair = {"future-effect", "block-influence"}
    answer = []
    for k in range(1, k_max + 1):
        for row in _key(doc["differences"][text["source"]], k):
            if {row["a"], row["b"]} == pair:
                sign = 1 if row["a"] == "future-effect" else -1
                low, high = sorted(sign * x for x in row["interval"])
                verdict = "real" if row["real"] else "within noise"
                answer.append(
                    f"k = {k}: {sign * row['difference_nats']:+.3f} [{low:+.3f}, {high:+.3f}] "
                    f"({verdict})"
                )
    if answer:
        out += [
            "Future effect minus Block Influence, mean NLL on the held-out text (nats/token; "
            "positive: the paper's future-effect criterion prunes worse): "
            + "; ".join(answer)
            + ".",
            "",
        ]
    return "\n".join(out)


def prune_bench_lines() -> str:
    """bench_prune.py's measurements, one line per results file that exists."""
    lines = []
    for name in ("prune", "prune_1B"):
        path = ROOT / "benchmarks" / "results" / f"{name}.json"
        if not path.exists():
            lines.append(f"- `results/{name}.json`: not measured yet.")
            continue
        r = json.loads(path.read_text())
        naive = f"naive {r['naive_seconds_all_sets']:.0f} s" + (
            f" (extrapolated from {r['naive_sets_measured']} sets timed in "
            f"{r['naive_seconds_measured']:.0f} s)"
            if r.get("naive_extrapolated")
            else ""
        )
        lines.append(
            f"- {r['model']}, K = {r['max_drop']}, {r['workload']}, {r['candidate_sets']} layer "
            f"sets: engine {r['engine_seconds_total']:.0f} s in all (criteria "
            f"{r['engine_seconds']['criteria']:.0f} s, validation "
            f"{r['engine_seconds']['validation']:.0f} s); {naive}: **{r['validation_speedup']}×** "
            f"on validation; peak RSS engine {r['peak_rss_mb']['engine']:.0f} MB, naive "
            f"{r['peak_rss_mb']['naive']:.0f} MB; max relative difference "
            f"{r['max_relative_difference']:.1e}."
        )
    return "\n".join(lines) + "\n"


def scale_table() -> str:
    """bench_scale.py's size curve, depth series and memory check, from results/scale.json."""
    path = ROOT / "benchmarks" / "results" / "scale.json"
    if not path.exists():
        return "Not measured yet (`python benchmarks/bench_scale.py`).\n"
    doc = json.loads(path.read_text())
    names = ("contributions", "current-effects", "future-effects", "logit-lens", "local-effects")
    tokens = doc["tokens"] if isinstance(doc["tokens"], list) else [doc["tokens"]]
    out = [
        f"One prompt of {' or '.join(map(str, tokens))} tokens (per row), {doc['weights']}; "
        f"seconds per analysis on {doc['machine']['threads']} CPU threads, peak RSS of the "
        "shape's own process against depthscope's estimate:",
        "",
        "| shape | parameters | layers | tokens | dtype | "
        + " | ".join(names)
        + " | peak RSS | estimate |",
        "|---" * (7 + len(names)) + "|",
    ]
    for r in sorted(doc["runs"], key=lambda r: (r["parameters"], r["layers"])):
        cap = f", offload > {r['offload_cap_gib']:g} GiB" if r.get("offload_cap_gib") else ""
        out.append(
            f"| {r['label']} | {r['parameters'] / 1e6:,.0f} M | {r['layers']} | "
            f"{r.get('tokens', tokens[0])} | {r['dtype']}{cap} | "
            + " | ".join(f"{r['analyses'][n]['seconds']:.1f} s" for n in names)
            + f" | {r['peak_rss_gb']:.2f} GB | {r['estimate_gb']:.2f} GB "
            f"({r['estimate_gb'] / r['peak_rss_gb'] - 1:+.0%}) |"
        )
    exponents = ", ".join(f"{n} {v}" for n, v in doc["exponent_in_layers"].items())
    series = ", ".join(doc["depth_series"])
    out += [
        "",
        f"Fitted exponent of seconds in the layer count L at fixed width ({series}; least squares "
        f"in log-log): {exponents}. The effect sweeps replay L(L+1)/2 layer passes per token "
        "(exponent 2 when layer work dominates); the logit lens and contributions do one pass "
        "per layer (exponent 1); fixed costs per prompt (the trace, the unembedding of the "
        "measured positions) pull a small model's exponents below these.",
        "",
    ]
    return "\n".join(out)


def depth_score_reference(model: str) -> dict:
    return json.loads((REFERENCE / model / "depth-score.json").read_text())


def depth_score_table(model: str) -> str:
    """Depth score per task and level with its 90 % interval and accuracy, and the trend test of
    the verdict's difficulty rule per task (references saved before the trend test existed: their
    hardest-minus-easiest change, labelled as such)."""
    if not (REFERENCE / model / "depth-score.json").exists():
        return f"{model}: no reference depth-score runs kept yet (`--depth-score RUN ...`).\n"
    doc = depth_score_reference(model)
    if doc.get("format", 1) < 2:
        return _depth_score_table_before_trend(model, doc)
    margin = doc["margin"]
    out = [
        f"{model} ({doc['n_layers']} layers); depth score of the mean effect matrix over each "
        "level's examples [90 % interval over resampled examples], from output changes in "
        f"parentheses; the paper's {doc['paper_aggregate']} over examples beside it (no interval); "
        "accuracy: first answer token top-1 (every answer token, teacher-forced, in parentheses); "
        f"a level enters the trend when its first-token accuracy is at least "
        f"{doc['min_accuracy']:.0%}:",
        "",
        "| task | level | n | depth score | (output) | relative depth | paper's max | accuracy "
        "| in trend |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    trends = []
    n_tests = sum(1 for entry in doc["tasks"].values() if entry.get("trend"))
    for task, entry in doc["tasks"].items():
        for level, row in entry["levels"].items():
            mean = row["mean"] or {}  # None: a run saved before the per-example matrices
            layer, output = mean.get("layer"), mean.get("output")
            value = layer["value"] if layer else None
            relative = "" if value is None else f"{value / doc['n_layers']:.3f}"
            paper = "" if row["paper_max"] is None else f"{row['paper_max']:.2f}"
            first = row["first_token_accuracy"]
            out.append(
                f"| {task} | {level} | {row['n']} | {_interval_text(layer) if layer else 'n/a'} | "
                f"({_interval_text(output) if output else 'n/a'}) | {relative} | {paper} | "
                f"{'n/a' if first is None else f'{first:.0%}'} ({row['accuracy']:.0%}) | "
                f"{'yes' if row['in_trend'] else 'no'} |"
            )
        trends.append(f"- {task}: {_depth_score_trend_text(entry, doc['min_accuracy'], margin)}")
    rule = (
        "Trend (least-squares slope of relative depth against the level over the levels in the "
        "trend; change predicted from the easiest to the hardest of them, its 90 % interval and "
        f"two-sided bootstrap p-value, Holm-corrected over the {n_tests} tasks tested; equivalence "
        f"margin ±{margin} relative depth):"
        if n_tests
        else "Trend: no task has two levels in the trend."
    )
    out += ["", rule, "", *trends, ""]
    times = [f"{t} {e['seconds']:.0f} s" for t, e in doc["tasks"].items() if e.get("seconds")]
    if times:
        out += [
            f"Run time on the 2-core machine ({findings_runs.UNDER_LOAD}): "
            + ", ".join(times)
            + ".",
            "",
        ]
    return "\n".join(out)


def _depth_score_trend_text(entry: dict, min_accuracy: float, margin: float) -> str:
    """One task's trend test in words (the verdict's outcomes)."""
    levels = entry["levels"]
    if entry["outcome"] == "untested":
        return "not tested: the run was saved before the first answer token's accuracy was kept."
    solved = [
        level
        for level, row in levels.items()
        if row["first_token_accuracy"] is not None and row["first_token_accuracy"] >= min_accuracy
    ]
    left = [level for level in levels if level not in solved]
    trend = entry.get("trend")
    if not trend:
        return (
            f"no trend tested: fewer than two levels solved (solved: {', '.join(solved) or 'none'}"
            f"; left out: {', '.join(left) or 'none'})."
        )
    change = trend["change"]
    interval = change["interval"]
    text = (
        f"levels {', '.join(trend['levels'])} in the trend"
        + (f" (left out: {', '.join(trend['left_out'])})" if trend["left_out"] else "")
        + f"; change from level {trend['levels'][0]} to level {trend['levels'][-1]}: "
        f"{change['difference']:+.3f} [{interval['low']:.3f}, {interval['high']:.3f}] relative "
        f"depth (p = {change['p_value']:.3f}, Holm p = {change['p_adjusted']:.3f}): "
    )
    n = sorted({row["n"] for level, row in levels.items() if level in trend["levels"]})
    count = str(n[0]) if len(n) == 1 else f"{n[0]}–{n[-1]}"
    said = {
        "more": "harder problems use more depth.",
        "less": "harder problems use less depth.",
        "equivalent": f"harder problems do not use more depth (interval within ±{margin}).",
        "inconclusive": f"inconclusive at {count} examples per level.",
    }
    return text + said[entry["outcome"]]


def _depth_score_table_before_trend(model: str, doc: dict) -> str:
    """A reference saved before the trend test (the paper's max aggregation with intervals from
    maxing resampled examples, the split at the answer start, no solved-level filter)."""
    out = [
        f"{model} ({doc['n_layers']} layers), {doc['aggregate']} over examples; depth score from "
        "effects on later layers [90 % interval over resampled examples], from output changes in "
        "parentheses:",
        "",
        "| task | level | n | depth score | (output) | accuracy |",
        "|---|---|---|---|---|---|",
    ]
    trends = []
    for task, entry in doc["tasks"].items():
        for level, row in entry["levels"].items():
            layer, output = row["intervals"]["layer"], row["intervals"]["output"]
            out.append(
                f"| {task} | {level} | {row['n']} | {_interval_text(layer)} | "
                f"({_interval_text(output)}) | {row['accuracy']:.0%} |"
            )
        change = entry["change"]
        where = (
            "above 0"
            if change["low"] > 0
            else "below 0"
            if change["high"] < 0
            else "contains 0: no evidence either way"
        )
        trends.append(f"{task} {_interval_text(change)} layers (interval {where})")
    out += [
        "",
        "Hardest minus easiest level as these references were saved, before the verdict's trend "
        "test (max over examples, split at the answer start, no solved-level filter; regenerate "
        "with `--depth-score RUN ...` for the test): " + "; ".join(trends) + ".",
        "",
    ]
    times = [f"{t} {e['seconds']:.0f} s" for t, e in doc["tasks"].items() if e.get("seconds")]
    if times:
        out += ["Run time on the 2-core machine: " + ", ".join(times) + ".", ""]
    return "\n".join(out)


def _interval_text(doc: dict) -> str:
    return bootstrap.Interval(
        doc["value"], doc["low"], doc["high"], doc["none_share"], doc["draws"]
    ).text(2)


GENERATORS = {
    "peers": peers_table,
    "lens-training": lens_training_table,
    "comparison": comparison,
    "prompt-study": findings_verdict.prompt_study_table,
    "calibration": findings_verdict.calibration_table,
    "bf16-verdict": findings_verdict.bf16_verdict_table,
    "prune-bench": prune_bench_lines,
    "scale": scale_table,
    **{f"verdict:{m}": (lambda m=m: verdict_block(m)) for m in MODELS},
    **{f"transition:{m}": (lambda m=m: findings_verdict.transition_sentence(m)) for m in MODELS},
    **{f"lens:{m}": (lambda m=m: findings_verdict.lens_sentence(m)) for m in MODELS},
    **{f"sensitivity:{m}": (lambda m=m: findings_verdict.sensitivity_table(m)) for m in MODELS},
    **{
        f"{key}:{m}": (lambda m=m, key=key: findings_verdict.finding_lines(m, key))
        for m in MODELS
        for key in ("reference", "distributions")
    },
    **{f"tuned:{m}": (lambda m=m: tuned_sentence(m)) for m in MODELS},
    **{f"contributions:{m}": (lambda m=m: contributions_sentence(m)) for m in MODELS},
    **{f"local-effects:{m}": (lambda m=m: local_effects_sentence(m)) for m in MODELS},
    **{f"prune:{m}": (lambda m=m: prune_block(m)) for m in MODELS},
    **{f"timing:{m}": (lambda m=m: timing_sentence(m)) for m in MODELS},
    **{f"depth-score:{m}": (lambda m=m: depth_score_table(m)) for m in MODELS},
    "linear-map": findings_runs.linear_map_block,
    "linear-map-bench": findings_runs.map_bench_table,
    "ridge-sweep": findings_runs.ridge_sweep_table,
    "task-accuracy": findings_runs.accuracy_table,
    "coverage": findings_coverage.coverage_table,
    "igrad-bench": findings_runs.igrad_bench_table,
    "engine-bench": findings_runs.engine_bench_table,
    "shared-bench": findings_runs.shared_bench_line,
    "distributed-bench": findings_runs.distributed_block,
    "bf16": findings_runs.bf16_table,
    "bf16-noise": findings_runs.bf16_noise_sentence,
    **{
        key: getattr(findings_training, key.replace("-", "_"))
        for key in (
            "e11-runs",
            "e11-table",
            "e11-reading",
            "e12-runs",
            "e12-accuracy",
            "e12-table",
            "e12-reading",
            "e12-igrad",
        )
    },
    "lens-bench": findings_runs.lens_bench_table,
    **{f"attribution:{m}": (lambda m=m: findings_runs.attribution_block(m)) for m in MODELS},
}


def docs_files() -> list[Path]:
    return sorted([*DOCS.glob("*.md"), ROOT / "README.md", ROOT / "benchmarks" / "README.md"])


def rewrite(check: bool) -> list[str]:
    """Rewrite (or, with ``check``, compare) every generated part; returns the stale files."""
    stale = []
    for path in docs_files():
        text = path.read_text()

        def fill(match: re.Match, name: str = path.name) -> str:
            key = match.group("key")
            if key not in GENERATORS:
                raise SystemExit(f"{name}: unknown findings key {key!r}")
            return match.group(1) + GENERATORS[key]() + match.group(4)

        new = MARKER.sub(fill, text)
        if new != text:
            stale.append(str(path.relative_to(ROOT)))
            if not check:
                path.write_text(new)
    return stale


# ---------------------------------------------------------------- inputs


def take_references(runs: list[Path]) -> None:
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        target = REFERENCE / summary["model"] / "summary.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        # compact: the bootstrap draws the paired comparisons read make up most of it
        target.write_text(json.dumps(summary, separators=(",", ":")) + "\n")
        keep_contributions(run, target.parent)
        keep_local_effects(run, target.parent)
        keep_timings(run, target.parent)
        evidence = run / "figures" / "verdict_evidence.png"
        if evidence.exists():
            shutil.copyfile(evidence, DOCS / "figures" / f"{summary['model']}_verdict_evidence.png")
        print(f"reference {summary['model']}: {run}/summary.json")


def keep_contributions(run: Path, folder: Path) -> None:
    """The run's all-prompt contribution profiles (no per-prompt data: a few kB)."""
    saved = run / "results" / "contributions.json"
    if not saved.exists():
        return
    result = json.loads(saved.read_text())
    kept = {key: result["data"][key] for key in CONTRIBUTION_KEYS}
    kept.update(n_prompts=result["n_prompts"], n_tokens=result["n_tokens"])
    (folder / "contributions.json").write_text(json.dumps(kept, indent=1) + "\n")


def keep_timings(run: Path, folder: Path) -> None:
    """Each analysis's seconds as the run recorded them in run.json (its own clock, not a rerun)."""
    meta_path = run / "run.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("timings"):
        kept = {key: meta[key] for key in ("n_prompts", "n_tokens", "timings")}
        (folder / "timings.json").write_text(json.dumps(kept, indent=1) + "\n")


def keep_local_effects(run: Path, folder: Path) -> None:
    """The run's two all-prompt local-effect matrices (a few kB)."""
    saved = run / "results" / "local-effects.json"
    if saved.exists():
        data = json.loads(saved.read_text())["data"]
        kept = {key: data[key] for key in ("current", "future")}
        (folder / "local-effects.json").write_text(json.dumps(kept) + "\n")


def take_prune(runs: list[Path]) -> None:
    """A prune run's ``prune.json`` (a few hundred kB, no per-text data) and its figure."""
    for run in runs:
        doc = json.loads((run / "prune.json").read_text())
        model = doc["model"]["name"]
        (REFERENCE / model).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / "prune.json", REFERENCE / model / "prune.json")
        figure = run / "figures" / "prune_metrics.png"
        if figure.exists():
            shutil.copyfile(figure, DOCS / "figures" / f"{model}_prune_metrics.png")
        print(f"reference prune {model}: {run}/prune.json")


def take_depth_score(runs: list[Path]) -> None:
    """Depth-score runs (one task each): per level the mean-based scores, their intervals, the
    paper's max and the accuracies, and per task the verdict's trend test, the tasks of one model
    Holm-corrected together (computed from the saved per-example matrices)."""
    from depthscope.analyses.depth_score import MIN_ACCURACY, difficulty_report
    from depthscope.core.result import Result
    from depthscope.verdict.differences import DEPTH_MARGIN

    by_model: dict[str, dict[str, Result]] = {}
    for run in runs:
        result = Result.load(run / "results" / "depth-score.json")
        task = str(result.extra.get("data_source", run.name)).removeprefix("builtin:")
        by_model.setdefault(result.model["name"], {})[task] = result
    for model, results in by_model.items():
        first = next(iter(results.values()))
        n_layers = first.model.get("n_layers") or len(
            next(iter(first.data["levels"].values()))["importance_layer"]
        )
        findings = difficulty_report(results, n_layers)
        doc = {
            "format": 2,
            "n_layers": n_layers,
            "paper_aggregate": "max",
            "min_accuracy": MIN_ACCURACY,
            "margin": DEPTH_MARGIN,
            "tasks": {},
        }
        for task, result in results.items():
            details = findings[task].details
            trend = details["trend"]
            levels = {}
            for level, entry in result.data["levels"].items():
                levels[level] = {
                    "n": entry["n_examples"],
                    "accuracy": entry["accuracy"],
                    "first_token_accuracy": details["first_token_accuracy"].get(level),
                    "mean": details["intervals"].get(level),
                    "paper_max": details["paper_max"].get(level),
                    "in_trend": bool(trend and level in trend["levels"]),
                }
            doc["tasks"][task] = {
                "levels": levels,
                "outcome": details["outcome"],
                "trend": trend,
                "split_rule": details["split_rule"],
                "answer_start_offset": details["answer_start_offset"],
                "seconds": result.extra.get("seconds"),
            }
        target = REFERENCE / model / "depth-score.json"
        target.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"reference depth-score {model}: {', '.join(doc['tasks'])}")


def take_tuned(pairs: list[Path]) -> None:
    """``RUN LENS`` pairs: a run whose logit lens read a tuned lens, and that lens's folder. Keeps
    the lens record and the run's verdict, and draws both lenses per boundary into docs/figures."""
    for run, lens in zip(pairs[::2], pairs[1::2], strict=True):
        summary = json.loads((run / "summary.json").read_text())
        model = summary["model"]
        folder = REFERENCE / model
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / "summary.json", folder / "summary-tuned.json")
        shutil.copyfile(lens / "lens.json", folder / "lens.json")
        data = json.loads((run / "results" / "logit-lens.json").read_text())["data"]
        fig, axes = new_grid(10, 3, 2)
        for ax, key, label in (
            (axes[0], "kl", "KL(lens ‖ final)"),
            (axes[1], "topk_overlap", "top-5 overlap"),
        ):
            x = np.arange(len(data[key]))
            ax.plot(x, data[key], "o-", markersize=3, color="C0", label="logit lens")
            ax.plot(x, data["tuned"][key], "o-", markersize=3, color="C3", label="tuned lens")
            ax.set_xlabel("boundary (input of layer; 0 = embedding)")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        axes[0].set_title(f"{model}: logit and tuned lens, mean over 10 prompts", fontsize=9)
        save_figure(tidy(fig), DOCS / "figures" / f"tuned-lens_{model}", formats=("png",))
        print(f"tuned reference {model}: {run}, {lens}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a doc is out of date")
    parser.add_argument("--reference", nargs="+", type=Path, help="run directories to take")
    parser.add_argument("--study", nargs="+", type=Path, help="large run directories")
    parser.add_argument(
        "--study-counts", default="4,8,12,16,20", help="prompt counts of the study (first n)"
    )
    parser.add_argument(
        "--calibration", action="store_true", help="simulate the step rule's calibration table"
    )
    parser.add_argument("--bf16", nargs="+", type=Path, help="--dtype bfloat16 run directories")
    parser.add_argument("--tuned", nargs="+", type=Path, help="RUN LENS pairs (tuned-lens runs)")
    parser.add_argument("--prune", nargs="+", type=Path, help="prune run directories")
    parser.add_argument("--depth-score", nargs="+", type=Path, help="depth-score run directories")
    parser.add_argument("--map", type=Path, help="a depthscope map run directory")
    parser.add_argument("--attribution", nargs="+", type=Path, help="erasure,igrad run directories")
    parser.add_argument("--accuracy", type=Path, help="task_accuracy.py --out JSON")
    parser.add_argument("--training", type=Path, help="folder ROOT of the E11/E12 runs")
    parser.add_argument("--coverage", type=Path, help="benchmarks/arch_coverage.py --out JSON")
    args = parser.parse_args(argv)
    if args.prune:
        take_prune(args.prune)
    if args.depth_score:
        take_depth_score(args.depth_score)
    if args.map:
        findings_runs.take_map(args.map)
    if args.attribution:
        findings_runs.take_attribution(args.attribution)
    if args.accuracy:
        findings_runs.take_accuracy(args.accuracy)
    if args.training:
        findings_training.take_training(args.training)
    if args.coverage:
        findings_coverage.take_coverage(args.coverage)
    if args.reference:
        take_references(args.reference)
    if args.study:
        counts = tuple(int(c) for c in args.study_counts.split(","))
        findings_verdict.study(args.study, counts)
    if args.calibration:
        findings_verdict.take_calibration()
    if args.bf16:
        findings_verdict.take_bf16(args.bf16)
    if args.tuned:
        take_tuned(args.tuned)
    stale = rewrite(check=args.check)
    if args.check and stale:
        print("out of date (run python docs/make_findings.py): " + ", ".join(stale))
        return 1
    for path in [] if args.check else stale:
        print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
