"""Generated parts of docs/training.md: E11 (four small models trained from scratch) and E12
(smollm2-135m fine-tuned), from the few kB of each run that ``take_training`` keeps in
``docs/reference/training.json``. Part of ``docs/make_findings.py``, which imports this module.

The runs are the commands docs/training.md lists, laid out under one folder ``ROOT``::

    ROOT/e11/NAME, ROOT/e11/NAME-analysis          NAME in E11
    ROOT/e12/NAME                                  NAME in E12 (the fine-tuned models)
    ROOT/e12/MODEL-fe, ROOT/e12/MODEL-erasure      MODEL in E12_MODELS (base and fine-tuned)
    ROOT/e12/compare                               depthscope compare of the three -fe runs
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from findings_runs import FIGURES, REFERENCE, _load, _missing, _timings

from depthscope.verdict import bootstrap
from depthscope.verdict.comparison import row_line

TRAINING_REFERENCE = REFERENCE / "training.json"
E11 = ("transformer-all", "transformer-answer", "shared-all", "shared-answer")
E12 = ("smollm2-all", "smollm2-answer")
E12_MODELS = ("smollm2-135m", *E12)  # the base model first: compare measures against it
LAST_STEPS = 20  # the final loss is the mean over the last steps (one step is noisy)
FIRST_STEP = 10  # the starting loss is read at this step (step 1 still has the warmup's rate)
MODULES = ("add_or_sub", "div", "mul")  # the single-operation modules the E11 table shows
VERDICT_KEYS = ("transition", "future_use", "lens", "operands")


def _training(folder: Path) -> dict:
    """What the docs state of one training run: sizes, time, loss and every evaluation."""
    record = _load(folder / "training.json")
    losses = record["loss_curve"]
    settings = record["settings"]
    return {
        "parameters": record.get("parameters"),
        "steps": record["steps_done"],
        "seconds": record["seconds"],
        "settings": {k: settings.get(k) for k in ("loss", "steps", "batch_size", "seq_len", "lr")},
        "eval_examples": record.get("identity", {}).get("eval_examples"),
        "loss_start": round(losses[min(FIRST_STEP, len(losses)) - 1], 4),
        "loss_end": round(float(np.mean(losses[-LAST_STEPS:])), 4),
        "evaluations": record["evaluations"],
    }


def _verdict(run: Path) -> dict:
    """The run's verdict headlines, the operand boundary of each prompt, and its timings."""
    summary = _load(run / "summary.json")
    meta = _load(run / "run.json")
    kept: dict = {
        "n_layers": summary["n_layers"],
        "n_prompts": meta.get("n_prompts"),
        "seconds": _timings(run),
    }
    for finding in summary["findings"]:
        if finding["key"] not in VERDICT_KEYS:
            continue
        entry = {k: finding[k] for k in ("headline", "layer", "relative_depth")}
        details = finding["details"]
        if finding["key"] == "future_use":
            entry["count"] = details["count"]
            entry["count_interval"] = details.get("count_interval")
        if finding["key"] == "lens":
            entry["overlap_boundary"] = details["overlap_boundary"]
        if finding["key"] == "operands":
            stops = next(iter(details["per_prompt"].values()))
            entry["per_prompt"] = [s["boundary"] for s in stops]
            entry["interval"] = details.get("interval")
        kept[finding["key"]] = entry
    return kept


def _igrad(run: Path) -> dict:
    """One prompt's integrated gradients: completeness per layer, cost, the operand verdict."""
    data = _load(run / "results" / "igrad.json")["data"]
    gaps = data["completeness_gap"][0]
    worst = int(np.argmax(gaps))
    return {
        "seconds": _timings(run).get("igrad"),
        "rule": data["rule"],
        "gap_max": gaps[worst],
        "gap_layer": worst,
        "f_change": data["f_input"][0] - data["f_baseline"][0][worst],
        "evaluations": int(sum(data["evaluations"][0])),
        "operands": _verdict(run).get("operands", {}),
    }


def _copy_figure(run: Path, stem: str, name: str) -> None:
    figure = run / "figures" / f"{stem}.png"
    if figure.exists():
        shutil.copyfile(figure, FIGURES / f"{name}.png")


def take_training(root: Path) -> None:
    """Keep the E11 and E12 runs under ``root`` (layout in the module docstring)."""
    e11 = {}
    for name in E11:
        analysis = root / "e11" / f"{name}-analysis"
        e11[name] = {"training": _training(root / "e11" / name), "verdict": _verdict(analysis)}
        _copy_figure(analysis, "erasure_prompt0", f"e11_{name}_erasure_prompt0")
    e12: dict = {"training": {n: _training(root / "e12" / n) for n in E12}, "models": {}}
    for model in E12_MODELS:
        fe, erasure = root / "e12" / f"{model}-fe", root / "e12" / f"{model}-erasure"
        e12["models"][model] = {"future": _verdict(fe), "erasure": _verdict(erasure)}
    compare = _load(root / "e12" / "compare" / "compare.json")
    # the indicators' rows only: the consensus row restates them, and e12_reading counts rows
    e12["differences"] = [
        row for row in compare["differences"] if row["quantity"] != "consensus transition"
    ]
    _copy_figure(root / "e12" / "compare", "compare_future-effect", "e12_compare_future-effect")
    _copy_figure(
        root / "e12" / "smollm2-135m-erasure", "erasure_prompt0", "e12_base_erasure_prompt0"
    )
    _copy_figure(
        root / "e12" / "smollm2-all-erasure", "erasure_prompt0", "e12_tuned_erasure_prompt0"
    )
    e12["igrad"] = {}
    for model, run in (("smollm2-135m", "base-igrad"), ("smollm2-all", "tuned-igrad")):
        folder = root / "e12" / run
        if (folder / "results" / "igrad.json").exists():
            e12["igrad"][model] = _igrad(folder)
            _copy_figure(folder, "igrad_layer_prompt0", f"e12_{run.split('-')[0]}_igrad_prompt0")
    TRAINING_REFERENCE.write_text(json.dumps({"e11": e11, "e12": e12}, indent=1) + "\n")
    print(f"reference training: {root}")


# ---------------------------------------------------------------- the generated parts


def _reference() -> dict | None:
    return _load(TRAINING_REFERENCE) if TRAINING_REFERENCE.exists() else None


MISSING = _missing("E11/E12", "--training ROOT")


def _pct(value: float) -> str:
    return f"{100 * value:.0f} %"


def _interpolation(evaluation: dict) -> float:
    return evaluation["mean_accuracy"]["interpolate"]


def _operands(verdict: dict) -> str:
    stops = verdict.get("operands", {}).get("per_prompt")
    if not stops:
        return "—"
    return ", ".join("never" if b is None else str(b) for b in stops)


def e11_runs() -> str:
    """Sizes and times of the four E11 runs, from their training.json."""
    doc = _reference()
    if doc is None:
        return MISSING
    parts = []
    for name, run in doc["e11"].items():
        t = run["training"]
        parts.append(
            f"`{name}` {t['parameters'] / 1e6:.2f} M parameters, {t['steps']} steps in "
            f"{t['seconds']:.0f} s ({t['seconds'] / t['steps']:.2f} s per step, evaluations "
            "included)"
        )
    n = next(iter(doc["e11"].values()))["training"]["eval_examples"]
    return (
        "Training time as each run's `training.json` records it (each pair side by side, one "
        "thread per run, on the 2 cores): "
        + "; ".join(parts)
        + f". Accuracies are teacher-forced, on {n} problems per module.\n"
    )


def e11_table() -> str:
    """The four E11 runs side by side: loss, accuracies, and the verdict of their analysis."""
    doc = _reference()
    if doc is None:
        return MISSING
    runs = doc["e11"]
    names = list(runs)
    head = "| | " + " | ".join(f"`{n}`" for n in names) + " |"
    rows = [head, "|---|" + "---|" * len(names)]

    def row(label: str, cell) -> None:
        rows.append(f"| {label} | " + " | ".join(cell(runs[n]) for n in names) + " |")

    row(
        f"final loss (mean of the last {LAST_STEPS} steps; the two losses are different "
        "objectives)",
        lambda r: f"{r['training']['loss_end']:.3f}",
    )
    steps = [e["step"] for e in runs[names[0]]["training"]["evaluations"] if e["step"] > 0]
    row(
        "interpolation accuracy at steps " + " / ".join(f"{s:,}".replace(",", " ") for s in steps),
        lambda r: " / ".join(
            _pct(_interpolation(e)) for e in r["training"]["evaluations"] if e["step"] > 0
        ),
    )
    row(
        ", ".join(f"`{m}`" for m in MODULES) + " (interpolation, final)",
        lambda r: ", ".join(
            _pct(r["training"]["evaluations"][-1]["accuracy"][f"interpolate/{m}"]) for m in MODULES
        ),
    )
    row(
        "`mul_div_multiple` (interpolation / `_longer`)",
        lambda r: " / ".join(
            _pct(r["training"]["evaluations"][-1]["accuracy"][key])
            for key in ("interpolate/mul_div_multiple", "extrapolate/mul_div_multiple_longer")
        ),
    )
    row(
        "extrapolation accuracy (mean)",
        lambda r: _pct(r["training"]["evaluations"][-1]["mean_accuracy"]["extrapolate"]),
    )
    row("transition", lambda r: r["verdict"]["transition"]["headline"])
    row("layers used by future tokens", lambda r: r["verdict"]["future_use"]["headline"])
    row("logit-lens convergence", lambda r: r["verdict"]["lens"]["headline"])
    row(
        "operands stop mattering (erasure below 0.1× its max) from boundary, E11-small prompts 0–3",
        lambda r: _operands(r["verdict"]),
    )
    return "\n".join(rows) + "\n"


def _shown(value: float | None, interval: dict | None) -> str:
    """``5 [3, 5]`` as the verdict prints it (:meth:`bootstrap.Interval.text`)."""
    if not interval or interval.get("low") is None:
        return "none" if value is None else f"{value:g}"
    return bootstrap.Interval(
        value, interval["low"], interval["high"], interval.get("none_share", 0.0), 0
    ).text()


def _versus(a: dict | None, b: dict | None, label: str = "with answers only") -> str:
    """``b`` against ``a`` by their 90 % intervals: higher, lower, or inconclusive (overlapping
    intervals show no difference, but no equivalence either)."""
    if not a or not b or a.get("low") is None or b.get("low") is None:
        return "not comparable"
    if b["low"] > a["high"]:
        return f"higher {label}"
    if b["high"] < a["low"]:
        return f"lower {label}"
    return "inconclusive at these prompt counts (the intervals overlap; no equivalence tested)"


def e11_reading() -> str:
    """Does the answer-only loss use more depth, per architecture, by a stated rule, and did the
    answer-only models learn enough for the question to be asked?"""
    doc = _reference()
    if doc is None:
        return MISSING
    runs = doc["e11"]
    lines = []
    for arch in ("transformer", "shared"):
        every, answer = runs[f"{arch}-all"]["verdict"], runs[f"{arch}-answer"]["verdict"]
        use = [v["future_use"] for v in (every, answer)]
        ops = [v.get("operands", {}) for v in (every, answer)]
        measures = [
            _versus(use[0].get("count_interval"), use[1].get("count_interval")),
            _versus(ops[0].get("interval"), ops[1].get("interval")),
        ]
        if "higher" in " ".join(measures) and "lower" not in " ".join(measures):
            verdict = "**uses more depth**"
        elif "lower" in " ".join(measures) and "higher" not in " ".join(measures):
            verdict = "**uses less depth**"
        else:
            verdict = "**is not shown to use more or less depth** (inconclusive)"
        acc = [
            _interpolation(runs[f"{arch}-{loss}"]["training"]["evaluations"][-1])
            for loss in ("all", "answer")
        ]
        learned = acc[1] >= acc[0] / 2
        lines.append(
            f"- {arch}: layers used by future tokens "
            f"{_shown(use[0]['count'], use[0].get('count_interval'))} (all tokens) vs "
            f"{_shown(use[1]['count'], use[1].get('count_interval'))} (answers only): "
            f"{measures[0]}; last operand boundary (deepest prompt) "
            f"{_shown(ops[0].get('layer'), ops[0].get('interval'))} vs "
            f"{_shown(ops[1].get('layer'), ops[1].get('interval'))}: {measures[1]}. By this rule "
            f"the answer-only loss {verdict} here. Interpolation accuracy {_pct(acc[0])} vs "
            f"{_pct(acc[1])}"
            + (
                "."
                if learned
                else ": the answer-only model learned less than half as much, so this is no "
                "test of the paper's claim, which compares trained models."
            )
        )
    rule = (
        "Rule: a measure is higher (lower) with answers only when its 90 % prompt-bootstrap "
        "interval lies entirely above (below) the all-token model's; the answer-only loss uses "
        "more depth when at least one of the two measures is higher and none is lower, less in the "
        "mirror case, and otherwise the comparison is inconclusive: overlapping intervals show no "
        "difference, not the same depth. The "
        "comparison counts as a test only when the answer-only model reaches at least half the "
        "all-token model's interpolation accuracy."
    )
    return "\n".join(lines) + "\n\n" + rule + "\n"


def e12_runs() -> str:
    """Times and losses of the two fine-tunes, and the analyses' times, from the kept runs."""
    doc = _reference()
    if doc is None:
        return MISSING
    e12 = doc["e12"]
    parts = []
    for name, t in e12["training"].items():
        s = t["settings"]
        parts.append(
            f"`{name}` (`--loss {s['loss']}`): {t['steps']} steps of {s['batch_size']} × "
            f"{s['seq_len']} tokens in {t['seconds']:.0f} s (training and evaluation), loss "
            f"{t['loss_start']:.2f} at step {FIRST_STEP} → {t['loss_end']:.2f} (mean of the last "
            f"{LAST_STEPS} steps)"
        )
    base = e12["models"]["smollm2-135m"]
    seconds = [
        (m, v["future"]["seconds"].get("future-effects"), v["erasure"]["seconds"].get("erasure"))
        for m, v in e12["models"].items()
    ]
    analyses = "; ".join(
        f"{m}: future effects {fe:.0f} s, erasure {er:.0f} s"
        for m, fe, er in seconds
        if fe is not None and er is not None
    )
    return (
        "Measured on the 2 cores (torch's 2 threads, one run at a time): "
        + "; ".join(parts)
        + f". The analyses ({base['future']['n_prompts']} E12 prompts for the future effects, "
        f"{base['erasure']['n_prompts']} E11 prompts for erasure): " + analyses + ".\n"
    )


def e12_accuracy() -> str:
    """Teacher-forced accuracy of both fine-tunes at every evaluation, and per module at the end."""
    doc = _reference()
    if doc is None:
        return MISSING
    runs = doc["e12"]["training"]
    first = next(iter(runs.values()))
    steps = [e["step"] for e in first["evaluations"]]
    n = first.get("eval_examples")
    rows = [
        "| teacher-forced accuracy | "
        + " | ".join("step 0 (base)" if s == 0 else str(s) for s in steps)
        + " |",
        "|---|" + "---|" * len(steps),
    ]
    for group in ("interpolate", "extrapolate"):
        for t in runs.values():
            values = [_pct(e["mean_accuracy"][group]) for e in t["evaluations"]]
            values[-1] = f"**{values[-1]}**"
            rows.append(
                f"| {group} (mean of the modules), `--loss {t['settings']['loss']}` | "
                + " | ".join(values)
                + " |"
            )
    finals = {name: t["evaluations"][-1]["accuracy"] for name, t in runs.items()}
    modules = [k for k in next(iter(finals.values())) if k.startswith("interpolate/")]
    labels = " / ".join(f"`--loss {t['settings']['loss']}`" for t in runs.values())
    per_module = ", ".join(
        f"`{k.split('/', 1)[1]}` " + " / ".join(_pct(f[k]) for f in finals.values())
        for k in modules
    )
    size = f" ({n} problems per module)" if n else ""
    return "\n".join(rows) + f"\n\nAt step {steps[-1]} ({labels}){size}: {per_module}.\n"


def e12_table() -> str:
    """Base and fine-tuned models' verdicts on E12's future effects and E11's erasure prompts."""
    doc = _reference()
    if doc is None:
        return MISSING
    models = doc["e12"]["models"]
    names = list(models)
    rows = [
        "| | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    n = models[names[0]]["future"]["n_prompts"]
    for label, cell in (
        (
            f"future-effect transition ({n} E12 prompts, E12 split points, layers skipped)",
            lambda m: m["future"]["transition"]["headline"],
        ),
        ("layers used by future tokens", lambda m: m["future"]["future_use"]["headline"]),
        (
            "operands stop mattering (erasure below 0.1× its max) from boundary, E11 prompts 0–3",
            lambda m: _operands(m["erasure"]),
        ),
    ):
        rows.append(f"| {label} | " + " | ".join(cell(models[x]) for x in names) + " |")
    return "\n".join(rows) + "\n"


def _row_line(row: dict) -> str:
    """A compare row; rows kept before effective depths were compared (change points only, by
    their intervals) are shown as they were made, with the rule that made them."""
    if "measure" in row:
        return row_line(row)

    def shown(label: str) -> str:
        c = row[label]
        if c is None:
            return f"{label} none"
        spread = f" [{c['low']:.2f}, {c['high']:.2f}]" if c.get("low") is not None else ""
        return f"{label} {c['x']:.2f}{spread}"

    a, b = row["runs"]
    return f"{row['quantity']}: {shown(a)} vs {shown(b)}: {row['verdict']} (intervals compared)"


def e12_reading() -> str:
    """``depthscope compare`` of base and fine-tuned future effects: which differences exceed
    their intervals at these prompt counts."""
    doc = _reference()
    if doc is None:
        return MISSING
    e12 = doc["e12"]
    rows = e12["differences"]
    lines = [f"- {_row_line(row)}" for row in rows]
    base_name, base = next(iter(e12["models"].items()))
    base_use = base["future"]["future_use"]
    summary = []
    for name in list(e12["models"])[1:]:
        use = e12["models"][name]["future"]["future_use"]
        mine = [r["verdict"] for r in rows if name in r["runs"]]
        # compare words each row from the base's side: "earlier in base" = deeper after tuning
        deeper = sum(v.startswith("earlier") for v in mine)
        shallower = sum(v.startswith("later") for v in mine)
        if deeper and shallower:
            moved = "its change points move in opposite directions (no single deeper or shallower)"
        elif deeper:
            moved = "its change points move deeper"
        elif shallower:
            moved = "its change points move shallower"
        else:
            moved = "its change points do not move beyond their intervals"
        summary.append(
            f"- `{name}` against `{base_name}`: {moved}; layers used by future tokens "
            f"{_shown(use['count'], use.get('count_interval'))} vs "
            f"{_shown(base_use['count'], base_use.get('count_interval'))}: "
            f"{_versus(base_use.get('count_interval'), use.get('count_interval'), 'after tuning')}."
        )
    return (
        "`depthscope compare` of the three future-effect runs (each fine-tuned model against the "
        "base; relative depth with its 90 % prompt-bootstrap interval, and whether the intervals "
        "separate):\n\n"
        + "\n".join(lines)
        + "\n\nBy the same rule (intervals that do not overlap), per fine-tuned model:\n\n"
        + "\n".join(summary)
        + "\n"
    )


def e12_igrad() -> str:
    """The integrated-gradients runs of E12: cost, completeness, the operand boundary."""
    doc = _reference()
    runs = (doc or {}).get("e12", {}).get("igrad")
    if not runs:
        return MISSING
    parts = []
    for model, r in runs.items():
        cost = f"{r['seconds']:.0f} s" if r.get("seconds") is not None else "time not kept"
        parts.append(
            f"{model}: {cost}, {r['evaluations']} model evaluations ({r['rule']}); largest "
            f"completeness gap {r['gap_max']:.3f} at layer {r['gap_layer']} (of "
            f"F(x) − F(x') = {r['f_change']:.3f} there); operands stop mattering "
            f"{r['operands'].get('headline', '—')}"
        )
    return (
        "Side by side with one thread each (`OMP_NUM_THREADS=1`), on the first E11 prompt: "
        + "; ".join(parts)
        + ".\n"
    )
