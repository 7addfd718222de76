"""Generated doc parts from single kept runs: the linear map (E10), attribution (E7, E8) and the
built-in models' task accuracy. Part of ``docs/make_findings.py``, which imports this module;
each ``take_*`` keeps the few kB of a run the docs need in ``docs/reference/``, each ``*_block``
writes the markdown from what was kept, by the rule it states."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from depthscope.verdict import bootstrap, rules

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
REFERENCE = DOCS / "reference"
FIGURES = DOCS / "figures"
MAP_REFERENCE = REFERENCE / "linear-map.json"
RIDGE_REFERENCE = REFERENCE / "linear-map-ridge-sweep.json"
ACCURACY_REFERENCE = REFERENCE / "task-accuracy.json"
MAP_BENCH = ROOT / "benchmarks" / "results" / "linear_map.json"
MAP_FIGURES = ("rel_err", "best_match")
USED = 0.1  # an erasure effect at or above this counts as "the token is still used"
UNUSED = 0.01  # below this from some boundary on: "no longer used at all"
GAP = 0.01  # IG completeness gap counted as closed


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _timings(run: Path) -> dict:
    doc = run / "run.json"
    return _load(doc).get("timings", {}) if doc.exists() else {}


def _missing(what: str, flag: str) -> str:
    return f"{what}: no reference run kept yet (`python docs/make_findings.py {flag}`).\n"


# ---------------------------------------------------------------- linear map (E10)


MAP_KEYS = (
    "rel_err",
    "r2",
    "best_target",
    "best_source",
    "depth_correlation",
    "rel_err_mean_baseline",
    "n_train_tokens",
    "n_val_tokens",
    "n_train_texts",
    "n_val_texts",
    "aligned_fraction",
    "source_layers",
    "target_layers",
    "source_model",
    "target_model",
    "ridge",
    "seconds",
    "statistics_tokens_per_s",
)
# kept when the run has them (runs saved before the held-out bootstrap do not)
MAP_UNCERTAINTY_KEYS = (
    "bootstrap",
    "rel_err_low",
    "rel_err_high",
    "best_target_test",
    "null",
    "null_comparison",
)


def take_map(run: Path) -> None:
    """A ``depthscope map`` run: its result data (matrices of a few kB) and its figures."""
    result = _load(run / "results" / "linear-map.json")
    kept = {key: result["data"][key] for key in MAP_KEYS}
    if "ridge_sweep" in result["data"]:
        # a --ridge-sweep run holds extra maps while scoring (more passes, other times): it is
        # kept for its sweep alone, beside the default run's reference
        kept["ridge_sweep"] = result["data"]["ridge_sweep"]
        RIDGE_REFERENCE.write_text(json.dumps(kept, indent=1) + "\n")
        print(f"reference ridge sweep: {run}")
        return
    kept.update({key: result["data"][key] for key in MAP_UNCERTAINTY_KEYS if key in result["data"]})
    kept["settings"] = result.get("settings", {})
    kept["wall_seconds"] = _timings(run).get("linear-map")
    MAP_REFERENCE.write_text(json.dumps(kept, indent=1) + "\n")
    pair = f"{kept['source_model']}_{kept['target_model']}"
    for name in (*MAP_FIGURES, "best_error"):  # best_error: runs with intervals only
        figure = run / "figures" / f"linear-map_{name}.png"
        if figure.exists():
            shutil.copyfile(figure, FIGURES / f"linear-map_{pair}_{name}.png")
    print(f"reference linear map {pair}: {run}")


def ridge_sweep_table() -> str:
    """Held-out mean relative error per ridge strength, and how many source boundaries change
    their best target against the run's own ridge, from one ``--ridge-sweep`` run."""
    doc = _load(RIDGE_REFERENCE) if RIDGE_REFERENCE.exists() else {}
    rows = doc.get("ridge_sweep")
    if not rows:
        return _missing("ridge sweep", "--map RUN (a run with --ridge-sweep)")
    chosen = next(row for row in rows if row["ridge"] == doc["ridge"])
    best = min(row["rel_err_mean"] for row in rows)
    n = len(chosen["best_target"])

    def changed(row: dict) -> str:
        if row is chosen:
            return "—"
        moved = sum(a != b for a, b in zip(row["best_target"], chosen["best_target"], strict=True))
        return "no" if moved == 0 else f"{moved} of {n}"

    def cell(row: dict) -> str:
        text = f"{row['rel_err_mean']:.4f}"
        return f"**{text}**" if row["rel_err_mean"] == best else text

    return (
        "\n".join(
            [
                f"(`depthscope map {doc['source_model']} {doc['target_model']} --ridge-sweep ...`: "
                f"{doc['n_train_tokens']} training and {doc['n_val_tokens']} held-out tokens, every "
                f"strength solved from the same statistics; the run's own ridge is {doc['ridge']:g}; "
                "bold: the lowest error)",
                "",
                "| ridge | " + " | ".join(f"{row['ridge']:g}" for row in rows) + " |",
                "|---|" + "---|" * len(rows),
                "| mean rel_err | " + " | ".join(cell(row) for row in rows) + " |",
                f"| best_target changed against {doc['ridge']:g}? | "
                + " | ".join(changed(row) for row in rows)
                + " |",
            ]
        )
        + "\n"
    )


def _relative_correlation(best: list[int], n_from: int, n_to: int) -> float:
    """Pearson correlation of ``m / n_from`` and ``best[m] / n_to`` over ``m = 1..n_from``."""
    x = np.arange(1, n_from + 1) / n_from
    y = np.asarray(best[1 : n_from + 1], dtype=float) / n_to
    return float(np.corrcoef(x, y)[0, 1])


# how a time kept from a run reads: its own clock, not a benchmark taken alone
UNDER_LOAD = "wall clock as the run recorded it, with whatever else shared the machine then"


def _null_alignment(best: list[int] | None, corr: float | None) -> str:
    """How the null's best targets follow depth: a constant row has no correlation to state."""
    later = list(best or [])[1:]
    if later and len(set(later)) == 1:
        return f"are boundary {later[0]} at every source boundary from 1 on (no alignment)"
    return f"correlate {corr:.3f} with relative depth" if corr is not None else "are not kept"


def _short(value: float) -> str:
    """``.37`` as the paper's tables write shares."""
    return f"{value:.2f}".removeprefix("0") if value < 1 else f"{value:.0f}"


def linear_map_block() -> str:
    """Workload, time, the best-target table, the relative-depth correlation in both views and
    the errors against the constant-map baseline, from the kept map run."""
    if not MAP_REFERENCE.exists():
        return _missing("linear map", "--map RUN")
    doc = _load(MAP_REFERENCE)
    n_src, n_tgt = doc["source_layers"], doc["target_layers"]
    rel = np.asarray(doc["rel_err"], dtype=float)
    r2 = np.asarray(doc["r2"], dtype=float)
    best, best_source = doc["best_target"], doc["best_source"]
    best_err = rel[np.arange(n_src + 1), best]
    baseline = np.asarray(doc["rel_err_mean_baseline"], dtype=float)[best]
    best_r2 = r2[np.arange(n_src + 1), best]
    seconds = doc["seconds"]
    source_view = _relative_correlation(best, n_src, n_tgt)
    target_view = _relative_correlation(best_source, n_tgt, n_src)
    distance = float(
        np.mean(np.abs(np.arange(1, n_src + 1) / n_src - np.asarray(best[1:]) / n_tgt))
    )
    monotone = bool(np.all(np.diff(best) >= 0))
    follows = source_view >= 0.9 and monotone
    header = "| source m | " + " | ".join(str(m) for m in range(n_src + 1)) + " |"
    rows = [
        header,
        "|---" * (n_src + 2) + "|",
        f"| m/{n_src} | " + " | ".join(_short(m / n_src) for m in range(n_src + 1)) + " |",
        "| best l | " + " | ".join(map(str, best)) + " |",
        f"| l/{n_tgt} | " + " | ".join(_short(b / n_tgt) for b in best) + " |",
        "| rel_err | " + " | ".join(_short(e) for e in best_err) + " |",
    ]
    tests = doc.get("best_target_test") or []
    compared = doc.get("null_comparison") or []
    rows += _map_uncertainty_rows(doc, tests, compared)
    wall = doc.get("wall_seconds")
    parts = ", ".join(
        f"{name} {seconds[name]:.0f} s"
        for name in ("forward", "statistics", "solve", "validation")
        if name in seconds
    )
    return "\n".join(
        [
            f"`depthscope map {doc['source_model']} {doc['target_model']}{_null_flag(doc)}` "
            "with defaults: "
            f"{doc['n_train_tokens']} training tokens from {doc['n_train_texts']} texts, "
            f"{doc['n_val_tokens']} held-out tokens from {doc['n_val_texts']} other texts, ridge "
            f"{doc['ridge']:g}, fp32 on CPU; aligned fraction {doc['aligned_fraction']:.1%}. "
            + (
                f"**Run time {wall:.0f} s** on the 2-core machine ({UNDER_LOAD}"
                + ("; the null's maps included" if doc.get("null") else "")
                + ") "
                if wall
                else ""
            )
            + f"({parts}; statistics at {doc['statistics_tokens_per_s']:.0f} tokens/s).",
            "",
            "Best target boundary per source boundary (boundary `m` = after `m` layers):",
            "",
            *rows,
            "",
            "Rule: the best match follows relative depth when the Pearson correlation of `m/M` and "
            "`best l/L` over `m = 1..M` is at least 0.9 and the best target never decreases with "
            f"`m`. Here the correlation is **{source_view:.3f}**, the best target "
            + ("never decreases" if monotone else "decreases somewhere")
            + f" and lies on average {distance:.2f} of the depth from the diagonal: "
            + ("**it follows relative depth**." if follows else "**it does not**.")
            + f" The dual view (best source per target boundary, `best_source` = "
            f"{' '.join(map(str, best_source))}) correlates **{target_view:.3f}** in relative "
            f"depth. Every source boundary's best map has a held-out error of "
            f"{best_err.min():.2f}–{best_err.max():.2f} against {baseline.min():.2f}–"
            f"{baseline.max():.2f} for the constant (mean) map of the same target, R² "
            f"{best_r2.min():.2f}–{best_r2.max():.2f}. "
            + _map_uncertainty_text(doc, tests, compared),
            "",
        ]
    )


def _null_flag(doc: dict) -> str:
    """`` --null random-init:0`` for a run with a null ('' otherwise)."""
    null = doc.get("null")
    if not isinstance(null, dict):
        return ""
    return f" --null {(doc.get('settings') or {}).get('null') or null.get('kind', 'random-init')}"


def _gap(record: dict) -> str:
    """``+.012*``: the runner-up's (or the null's) excess error; ``*`` = differs after Holm."""
    value = record["difference"]["difference"]
    text = ("+" if value >= 0 else "-") + f"{abs(value):.3f}".removeprefix("0")
    return text + ("*" if record["outcome"] == "differ" else "")


def _map_uncertainty_rows(doc: dict, tests: list, compared: list) -> list[str]:
    """Table rows of the held-out bootstrap: interval, runner-up gap, ties; the null's best map."""
    if not tests or "rel_err" not in tests[0]:
        return []
    rows = [
        "| 90% interval | "
        + " | ".join(f"{_short(t['rel_err']['low'])}–{_short(t['rel_err']['high'])}" for t in tests)
        + " |",
        "| runner-up − best | " + " | ".join(_gap(t) for t in tests) + " |",
        "| tied with | "
        + " | ".join(
            "—" if t["stated"] else " ".join(str(ell) for ell in t["tied"] if ell != t["best"])
            for t in tests
        )
        + " |",
    ]
    if compared:
        rows += [
            "| null best l | " + " | ".join(str(c["null_target"]) for c in compared) + " |",
            "| null rel_err | "
            + " | ".join(_short(c["null_rel_err"]["value"]) for c in compared)
            + " |",
            "| null − trained | " + " | ".join(_gap(c) for c in compared) + " |",
        ]
    return rows


def _map_uncertainty_text(doc: dict, tests: list, compared: list) -> str:
    """How sure the table is: the bootstrap, the best targets it states, and the null."""
    boot = doc.get("bootstrap")
    if not isinstance(boot, dict):
        return (
            "One run, no interval: the held-out errors are not kept per text, so they cannot be "
            "resampled."
        )
    if not boot.get("computed") or not tests:
        return f"No intervals: {boot.get('reason', 'too few held-out texts')}."
    stated = [t["source"] for t in tests if t["stated"]]
    tied = [t for t in tests if not t["stated"]]
    text = (
        f"Intervals: {int(boot['level'] * 100)}% percentile bootstrap over the {boot['n_units']} "
        f"held-out {boot['unit']}s ({boot['draws']} draws, seed {boot['seed']}). The best target "
        f"is stated where it beats the runner-up (paired bootstrap, Holm over the "
        f"{len(tests)} source boundaries, `*` in the table): **{len(stated)} of {len(tests)}**"
    )
    if tied:
        text += (
            "; elsewhere it is a tie ("
            + ", ".join(f"m = {t['source']}: {'/'.join(map(str, t['tied']))}" for t in tied)
            + ")"
        )
    text += "."
    if compared:
        null = doc.get("null") or {}
        beats = [c["source"] for c in compared if c["beats_null"]]
        gaps = [c["difference"]["difference"] for c in compared]
        corr, own = null.get("depth_correlation"), doc.get("depth_correlation")
        text += (
            f" Null: the same maps from `{null.get('source') or null.get('model')}` (the source's "
            f"architecture with fresh weights), on the same held-out tokens. The trained source's "
            f"best map beats the null's at **{len(beats)} of {len(compared)}** source boundaries "
            f"(paired, Holm; the null's best error is {min(gaps):+.2f} to {max(gaps):+.2f} "
            f"higher), and the null's best targets "
            + _null_alignment(null.get("best_target"), corr)
            + (f" against {own:.3f} for the trained source." if own is not None else ".")
        )
    return text


def map_bench_table() -> str:
    """``bench_linear_map.py``'s measurements as a table (from its results file)."""
    if not MAP_BENCH.exists():
        return "`benchmarks/results/linear_map.json`: not measured yet.\n"
    b = _load(MAP_BENCH)
    forward = b.get("forward", {})
    speeds = ", ".join(
        f"{key.removesuffix('_tokens_per_s')} {value:.0f}"
        for key, value in forward.items()
        if key.endswith("_tokens_per_s")
    )
    rows = [
        "| | |",
        "|---|---|",
        f"| statistics accumulation | {b['statistics_tokens_per_s']:.0f} tokens/s = "
        f"{b['statistics_gflops_fp64']:.0f} GFLOP/s float64, {b['fraction_of_gemm']:.2f} of the "
        f"machine's float64 GEMM ({b['machine_fp64_gemm_gflops']:.0f} GFLOP/s) |",
        f"| naive per-pair accumulation (one `XᵀY` per (m, l)) | "
        f"{b['naive_per_pair_tokens_per_s']:.0f} tokens/s (ours {b['speedup_vs_naive']:.2f}× "
        "faster: both are GEMM-bound) |",
        f"| solve ({b['shapes']['n_source']} Cholesky factorisations) | {b['solve_s']:.1f} s |",
        f"| held-out scoring (float32 predictions) | {b['validation_tokens_per_s']:.0f} tokens/s |",
    ]
    if speeds:
        rows.append(f"| forward passes (trace, aligned positions kept) | {speeds} tokens/s |")
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------- attribution (E7, E8)


def _question(tokens: list[str], answer_tokens: int) -> slice:
    """The question's tokens: every prompt token but the first (where attention sinks) and the
    last (which reads the question to predict the answer)."""
    return slice(1, len(tokens) - answer_tokens - 1)


def _readable(tokens: list[str]) -> str:
    """The prompt as text: special tokens dropped, byte-level and sentencepiece spaces restored."""
    kept = [t for t in tokens if not (t.startswith("<") and t.endswith(">"))]
    return "".join(kept).replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\n")


def take_attribution(runs: list[Path]) -> None:
    """``--analyses erasure,igrad`` runs on ``builtin:paper``: per prompt the largest erasure
    effect of a question token at each boundary, IG's completeness gaps, and the figures."""
    for run in runs:
        erasure = _load(run / "results" / "erasure.json")
        igrad = _load(run / "results" / "igrad.json")
        model = erasure["model"]["name"]
        timings = _timings(run)
        prompts = []
        for i, tokens in enumerate(erasure["data"]["tokens"]):
            effect = np.asarray(erasure["data"]["effect"][i], dtype=float)
            question = _question(tokens, erasure["data"]["answer_tokens"][i])
            ig = igrad["data"]
            prompts.append(
                {
                    "text": _readable(tokens[: len(tokens) - erasure["data"]["answer_tokens"][i]]),
                    "question_max": effect[:, question].max(axis=1).round(4).tolist(),
                    "f_input": ig["f_input"][i],
                    "gap": [round(g, 5) for g in ig["completeness_gap"][i]],
                    "evaluations": int(sum(ig["evaluations"][i])),
                }
            )
        doc = {
            "model": model,
            "n_layers": len(prompts[0]["question_max"]) - 1,
            "igrad_rule": igrad["data"].get("rule"),
            "prompts": prompts,
            "seconds": {k: timings.get(k) for k in ("erasure", "igrad")},
        }
        (REFERENCE / model).mkdir(parents=True, exist_ok=True)
        (REFERENCE / model / "attribution.json").write_text(json.dumps(doc, indent=1) + "\n")
        for stem in (
            "erasure_prompt0",
            "erasure_prompt1",
            "igrad_layer_prompt0",
            "igrad_layer_prompt1",
        ):
            figure = run / "figures" / f"{stem}.png"
            if figure.exists():
                shutil.copyfile(figure, FIGURES / f"{model}_{stem}.png")
        print(f"reference attribution {model}: {run}")


def _last_at_least(values: list[float], threshold: float) -> int | None:
    hits = [i for i, v in enumerate(values) if v >= threshold]
    return hits[-1] if hits else None


def erasure_sentence(prompt: dict, n_layers: int) -> str:
    """Up to which boundary erasing a question token still changes the answer, by two rules."""
    values = prompt["question_max"]
    used = _last_at_least(values, USED)
    gone = _last_at_least(values, UNUSED)
    text = f"On `{prompt['text'].strip()}` (teacher-forced F = {prompt['f_input']:.2f})"
    if used is None:
        return text + f", no question token reaches an erasure effect of {USED} at any boundary."
    band = values[: used + 1]
    tail = (
        f"and below {UNUSED} from boundary {gone + 1} of {n_layers}"
        if gone is not None and gone < n_layers
        else f"and never falls below {UNUSED}"
    )
    relative = rules.stays_below_from(values, rules.TOKEN_SHARE * max(values))
    verdict = (
        f" By the verdict's rule (below {rules.TOKEN_SHARE:.0%} of the largest effect, "
        f"[summary.md](summary.md) §6) it stops mattering from boundary {relative}."
        if relative is not None
        else f" By the verdict's rule (below {rules.TOKEN_SHARE:.0%} of the largest effect) it "
        "never stops mattering."
    )
    return (
        f"{text} the largest erasure effect of a question token is {min(band):.2f}–"
        f"{max(band):.2f} at boundaries 0–{used}, below {USED} from boundary {used + 1} ({tail})"
        f": the question is read until about layer {used} of {n_layers} "
        f"({(used + 1) / n_layers:.2f} of the depth).{verdict}"
    )


def attribution_block(model: str) -> str:
    """Erasure's reach per prompt and IG's completeness, from the kept run."""
    path = REFERENCE / model / "attribution.json"
    if not path.exists():
        return _missing(model, "--attribution RUN")
    doc = _load(path)
    n = doc["n_layers"]
    gaps = [g for p in doc["prompts"] for g in p["gap"]]
    worst = max(gaps)
    seconds = doc["seconds"]
    cost = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items() if v is not None)
    lines = [erasure_sentence(p, n) for p in doc["prompts"]]
    lines.append(
        f"Rule: a question token (every prompt token but the first and the last) counts as used at "
        f"a boundary while its erasure moves the answer's probabilities by at least {USED} "
        f"(L2, max over answer positions; an absolute threshold on how far the prediction moves); "
        f"the verdict's relative rule is given beside it. Integrated gradients ({doc['igrad_rule']}, target "
        f"`layer`, the default adaptive tolerance): completeness gap below {GAP} for "
        f"{sum(g < GAP for g in gaps)} of {len(gaps)} (layer, prompt) pairs, largest {worst:.3g}; "
        f"{sum(p['evaluations'] for p in doc['prompts'])} model evaluations. Cost on the 2-core "
        f"machine: {cost}."
    )
    return "\n\n".join(lines) + "\n"


# ---------------------------------------------------------------- task accuracy


def take_accuracy(path: Path) -> None:
    """The JSON of ``benchmarks/task_accuracy.py --out``."""
    shutil.copyfile(path, ACCURACY_REFERENCE)
    print(f"reference task accuracy: {path}")


def accuracy_interval(accuracy: float, n: int) -> bootstrap.Interval:
    """The 90 % bootstrap interval of a share of ``n`` examples (resampled examples)."""
    correct = np.zeros(n)
    correct[: round(accuracy * n)] = 1.0
    samples = bootstrap.draws(n) @ correct / n
    return bootstrap.interval_of(accuracy, samples)


def accuracy_table() -> str:
    """Teacher-forced accuracy per task, model and level, each with its interval."""
    if not ACCURACY_REFERENCE.exists():
        return _missing("task accuracy", "--accuracy FILE")
    doc = _load(ACCURACY_REFERENCE)
    levels = sorted(
        {int(level) for tasks in doc["models"].values() for t in tasks.values() for level in t}
    )
    out = [
        "| task | model | " + " | ".join(f"level {k}" for k in levels) + " |",
        "|---" * (len(levels) + 2) + "|",
    ]
    solved = []
    for task in next(iter(doc["models"].values())):
        for model, tasks in doc["models"].items():
            cells = []
            for level in levels:
                entry = tasks[task].get(str(level))
                if not entry or entry["accuracy"] is None:
                    cells.append("")
                    continue
                found = accuracy_interval(entry["accuracy"], entry["n"])
                text = f"{100 * found.value:.0f} [{100 * found.low:.0f}, {100 * found.high:.0f}]"
                if found.low >= 0.5:
                    solved.append(f"{model} {task.removeprefix('builtin:')}:{level}")
                    text = f"**{text}**"
                cells.append(text)
            out.append(f"| {task.removeprefix('builtin:')} | {model} | " + " | ".join(cells) + " |")
    return "\n".join(
        [
            f"{doc['n_per_level']} examples per level, seed {doc['seed']}; % correct [90 % "
            "interval over resampled examples]; bold: solved, by the rule that the interval's "
            "lower end is at least 50 %.",
            "",
            *out,
            "",
            "Solved: " + (", ".join(solved) if solved else "none") + ".",
            "",
        ]
    )


# ---------------------------------------------------------------- IG quadrature benchmark

IGRAD_BENCH = ROOT / "benchmarks" / "results" / "igrad.json"


def _rule_cell(entry: dict, pairs: int) -> str:
    return (
        f"{entry['evaluations']} ({entry['fewer_than_riemann']:.1f}× fewer), reached on "
        f"{entry['reached']}/{pairs} pairs, max gap {entry['max_gap']:.2g}"
    )


def igrad_bench_table() -> str:
    """Model evaluations per quadrature rule (``bench_igrad.py``'s results file)."""
    if not IGRAD_BENCH.exists():
        return "`benchmarks/results/igrad.json`: not measured yet.\n"
    doc = _load(IGRAD_BENCH)
    out = [
        f"| model | {doc['paper_steps']}-step Riemann (paper) | adaptive Simpson until the Riemann "
        "gap is reached: `stop=gap` | the same, `stop=bound` | Gauss panels, `stop=bound` | "
        f"default (adaptive {doc['default']['rule']}, tolerance {doc['default']['tolerance']}, "
        "`stop=bound`) |",
        "|---|---|---|---|---|---|",
    ]
    for model, entry in doc["models"].items():
        s, pairs = entry["summary"], entry["summary"]["pairs"]
        default = s["default"]
        out.append(
            f"| {model} | {s['riemann_256_evaluations']} evaluations, max gap "
            f"{s['riemann_256_max_gap']:.2g} | {_rule_cell(s['simpson_gap_stop_to_riemann_gap'], pairs)}"
            f" | {_rule_cell(s['simpson_to_riemann_gap'], pairs)} | "
            f"{_rule_cell(s['gauss_to_riemann_gap'], pairs)} | {default['evaluations']} "
            f"(**{default['fewer_than_riemann']:.1f}× fewer**), max gap {default['max_gap']:.2g} |"
        )
    layers = ", ".join(map(str, next(iter(doc["models"].values()))["layers"]))
    return (
        f"Layers {layers} of both paper prompts, target `{doc['target']}`; model evaluations "
        "counted, so independent of the machine's load.\n\n" + "\n".join(out) + "\n"
    )


# ---------------------------------------------------------------- engine benchmark

ENGINE_BENCH = ROOT / "benchmarks" / "results" / "engine.json"


def engine_bench_table() -> str:
    """``bench_engine.py``'s table: engine against naive per analysis, share of the matmul peak
    and agreement, from its results file."""
    if not ENGINE_BENCH.exists():
        return "`benchmarks/results/engine.json`: not measured yet.\n"
    b = _load(ENGINE_BENCH)
    fe, lens, er, ig = b["future_effects"], b["logit_lens"], b["erasure"], b["igrad"]
    rows = [
        f"Measured fp32 matmul peak: {b['matmul_peak_gflops']:.0f} GFLOP/s.",
        "",
        "| analysis | workload | engine | naive | ratio | % of peak | target |",
        "|---|---|---|---|---|---|---|",
        f"| future-effects | {fe['what'].removeprefix('future-effects, ')} | {fe['engine_s']:.1f} s | "
        f"{fe['naive_s']:.1f} s | **{fe['speedup']:.1f}×** | **{fe['fraction_of_peak']:.0%}** | "
        f"speed-up {fe['targets']['speedup']}, peak {fe['targets']['fraction_of_peak']} |",
        f"| logit-lens | {lens['what'].removeprefix('logit-lens ')} | {lens['lens_seconds']:.1f} s | — "
        f"| **{lens['ratio_to_bound']:.2f}×** the unembedding FLOP bound "
        f"({lens['flop_bound_s']:.1f} s) | — | {lens['targets']['ratio_to_bound']} |",
        f"| erasure | {er['what'].removeprefix('erasure, ')} | "
        f"{er['engine_s_excluding_baseline_means']:.1f} s without the baseline means "
        f"({er['engine_s']:.1f} s with them, which a run needs) | {er['naive_s']:.1f} s | "
        f"**{er['naive_s'] / er['engine_s_excluding_baseline_means']:.1f}×** without, "
        f"**{er['naive_s'] / er['engine_s']:.1f}×** with the baseline means | "
        f"{er['fraction_of_peak']:.0%} | speed-up {er['targets']['speedup']} |",
        f"| igrad | {ig['what'].removeprefix('igrad ')} | {ig['seconds']:.1f} s | "
        f"≈{ig['naive_s_all_layers_estimate']:.0f} s, *extrapolated*: one layer measured "
        f"({ig['naive_s_one_layer']:.1f} s) × all layers | ≈{ig['speedup_estimate']:.1f}× "
        f"(extrapolated) | {ig['fraction_of_peak']:.0%} | — |",
        "",
        f"Agreement with the naive path: max abs. difference {fe['max_abs_diff_vs_naive']:.1e} "
        f"for the future effects and {er['max_abs_diff_vs_naive']:.1e} for erasure "
        "(`max_abs_diff_vs_naive`).",
    ]
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------- shared sweeps benchmark

SHARED_BENCH = ROOT / "benchmarks" / "results" / "shared.json"


def shared_bench_line() -> str:
    """Current and future effects together against separately (``bench_shared.py``)."""
    if not SHARED_BENCH.exists():
        return "`benchmarks/results/shared.json`: not measured yet.\n"
    b = _load(SHARED_BENCH)
    seconds = b["seconds"]
    return (
        f"{b['model']}, {b['prompts']} prompts, {' + '.join(b['analyses'])}: separately "
        f"{' / '.join(f'{t:.0f}' for t in seconds['separate'])} s, together "
        f"{' / '.join(f'{t:.0f}' for t in seconds['together'])} s (the analyses' own seconds, "
        f"one run) → **{b['speedup']:.2f}×**; max abs. difference "
        f"{b['max_abs_difference']:.1e}.\n"
    )


DISTRIBUTED_BENCH = ROOT / "benchmarks" / "results" / "distributed.json"


def distributed_block() -> str:
    """1 against 2 processes on the same prompts (``bench_distributed.py``): times, the balance
    of the ranks and whether the merged results equal the single process's."""
    if not DISTRIBUTED_BENCH.exists():
        return "`benchmarks/results/distributed.json`: not measured yet.\n"
    b = _load(DISTRIBUTED_BENCH)
    ranks = b["ranks_2_processes"]
    ranks_text = "; ".join(
        f"rank {r['rank']}: prompts {' '.join(map(str, r['prompts']))}, {r['compute_s']:.1f} s"
        for r in ranks
    )
    spread = max(r["compute_s"] for r in ranks) - min(r["compute_s"] for r in ranks)
    ratios = list(b["prompt_seconds_over_estimate"].values())
    off = max(abs(r - 1) for r in ratios)
    identical = [a for a, same in b["results_identical"].items() if same]
    differing = {a: d for a, d in b["max_relative_difference"].items() if d > 0}
    merged = f"{', '.join(identical)} identical" if identical else "none identical"
    if differing:
        merged += "; " + ", ".join(f"{a} within {d:.0e} relative" for a, d in differing.items())
    per_repeat = " and ".join(f"{s:.2f}×" for s in b["speedup_per_repeat"])
    return (
        f"`bench_distributed.py -n {b['n_prompts']} --analyses {','.join(b['analyses'])} "
        f"--repeats {len(b['runs_1_process_s'])}` ({b['model']}, {b['n_prompts']} prompts = "
        f"{b['n_tokens']} tokens, {b['threads_per_process']} thread per process, run order "
        f"{', '.join(map(str, b['run_order']))} processes): 1 process "
        f"{', '.join(f'{t:.1f}' for t in b['runs_1_process_s'])} s; 2 processes "
        f"{', '.join(f'{t:.1f}' for t in b['runs_2_processes_s'])} s ({ranks_text}): "
        f"**{b['speedup']:.2f}×** from the summed times ({per_repeat} per repeat). Each prompt's "
        f"single-process time was within {off:.0%} of its estimated share of the work; the ranks "
        f"finished {spread:.0f} s apart. Merged results against one process: {merged}.\n"
    )


LENS_BENCH = ROOT / "benchmarks" / "results" / "logit_lens.json"
BF16_BENCH = ROOT / "benchmarks" / "results" / "bf16.json"


def bf16_noise_sentence() -> str:
    """engine.md's noise floor of bf16 runs, from ``bench_bf16.py``'s largest workload."""
    if not BF16_BENCH.exists():
        return "`benchmarks/results/bf16.json`: not measured yet.\n"
    b = _load(BF16_BENCH)
    w = max(b["workloads"], key=lambda item: item["tokens"])
    floor32, floor16 = w["floor_fp32"], w["floor_bf16"]
    gap = w["output_change_gap"]
    return (
        f"Measured on CPU (`benchmarks/bench_bf16.py`, {w['model']}, future effects, "
        f"{w['prompts']} prompts, {w['tokens']} tokens): the skipped layer's own future effect "
        f"`effect[s, s]` — exactly 0 in exact arithmetic, so pure rounding — is at most "
        f"{floor32['max']:.1e} in fp32 and {floor16['max']:.2g} in bf16 (mean "
        f"{floor16['mean']:.2g}); the output change moves by up to {gap['max']:.2g} (mean "
        f"{gap['mean']:.2g}) between bf16 and fp32, on values up to {w['output_change_max']:.2f}. "
        f"Read effects below ~{floor16['max']:.2g} and output-change differences below "
        f"~{gap['max']:.2g} of a bf16 run as noise, and rerun in fp32 for numbers you will quote "
        "(how the verdict itself moves: [summary.md](summary.md#fp32-and-bf16)).\n"
    )


def bf16_table() -> str:
    """bf16 against fp32 (``bench_bf16.py``): the noise floor where exact arithmetic gives zero,
    and how far the maps move, on the built-in model and on tiny random models."""
    if not BF16_BENCH.exists():
        return "`benchmarks/results/bf16.json`: not measured yet.\n"
    b = _load(BF16_BENCH)
    out = [
        f"`python benchmarks/bench_bf16.py` (CPU, torch {b['torch']}, {b['threads']} threads):",
        "",
        "| model, setting | fp32 | bf16 |",
        "|---|---|---|",
    ]
    for w in b["workloads"]:
        setting = (
            f"{w['model']}, future-effects, {w['prompts']} prompt{'s' if w['prompts'] > 1 else ''} "
            f"({w['tokens']} tokens), {w['n_splits']} split points"
        )
        lo, hi = w["floor_fp32"], w["floor_bf16"]
        gap, out_gap = w["effect_gap"], w["output_change_gap"]
        out += [
            f"| {setting}: noise floor `effect[s, s]` | max {lo['max']:.1e} | "
            f"max {hi['max']:.2g}, mean {hi['mean']:.2g} |",
            f"| same: \\|bf16 − fp32\\| of the layer × layer effect map | — | mean {gap['mean']:.2g}; "
            f"max {gap['max']:.2g} at an entry whose fp32 value is {w['effect_gap_at_fp32']:.3g}; up "
            f"to {w['effect_max_relative_where_significant']:.0%} relative where fp32 > "
            f"{w['significant']} |",
            f"| same: \\|bf16 − fp32\\| of the output change | — | mean {out_gap['mean']:.2g}, max "
            f"{out_gap['max']:.2g} (values up to {w['output_change_max']:.2f}) |",
            f"| same: time (after a warm-up run) | {w['fp32_s']:.1f} s | {w['bf16_s']:.1f} s |",
        ]
    tiny = b["tiny"]
    names = " / ".join(tiny["families"])
    rows = {
        "bf16_vs_fp32": "\\|bf16 − fp32\\|",
        "batch_1_vs_64": "replay batch 1 vs 64 (bf16)",
        "packed_vs_separate": "split points packed vs separate rows (bf16)",
    }
    for key, label in rows.items():
        g = tiny["max_gap"][key]
        found = (
            "identical"
            if g["effect"] == g["output_change"] == 0
            else f"effect ≤ {g['effect']:.2g}, output change ≤ {g['output_change']:.2g}"
        )
        out.append(
            f"| tiny random {names}, {len(tiny['prompt_lengths'])} prompts: {label}, max over "
            f"prompts | — | {found} |"
        )
    return "\n".join(out) + "\n"


def lens_bench_table() -> str:
    """The logit lens streamed over vocabulary tiles against its unembedding FLOP bound (the
    ``[positions x layers, d] @ [d, V]`` matmuls at the run's measured peak) and against the
    materialised ``[rows, V]`` computation (``bench_logit_lens.py``)."""
    if not LENS_BENCH.exists():
        return "`benchmarks/results/logit_lens.json`: not measured yet.\n"
    b = _load(LENS_BENCH)
    out = [
        f"`python benchmarks/bench_logit_lens.py` ({b['model']}, `{b['data']}`, {b['threads']} "
        f"threads, torch {b['torch']}, measured fp32 matmul peak {b['matmul_peak_gflops']:.0f} "
        "GFLOP/s):",
        "",
        "| prompts (tokens) | FLOP bound | streamed | materialised | streamed speed-up | "
        "max \\|ΔKL\\| |",
        "|---|---|---|---|---|---|",
    ]
    for w in b["workloads"]:
        out.append(
            f"| {w['prompts']} ({w['tokens']}) | {w['flop_bound_s']:.1f} s | "
            f"{w['streamed_lens_s']:.1f} s (**{w['streamed_ratio_to_bound']:.2f}×** the bound) | "
            f"{w['materialised_lens_s']:.1f} s ({w['materialised_ratio_to_bound']:.2f}×) | "
            f"{w['speedup']:.2f}× | {w['max_abs_diff_kl']:.1e} |"
        )
    return "\n".join(out) + "\n"
