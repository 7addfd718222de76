"""The verdict's generated docs parts: calibration of the step rule, each built-in's transition,
lens, sensitivity and random-weight reference, the prompt-count study and fp32 vs bf16.

Used by ``docs/make_findings.py`` (keys ``calibration``, ``transition:MODEL``, ``lens:MODEL``,
``sensitivity:MODEL``, ``reference:MODEL``, ``distributions:MODEL``, ``prompt-study``,
``bf16-verdict``); its inputs are files in ``docs/reference`` written by the ``take_*``/``study``
functions here from saved runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from depthscope.figures.common import new_figure, save_figure, tidy
from depthscope.verdict import bootstrap, calibration, regime
from depthscope.verdict.comparison import compare_summaries, row_line
from depthscope.verdict.summary import Summary, first_prompts, load_results, summarize_results
from depthscope.verdict.words import trend_words

DOCS = Path(__file__).resolve().parent
REFERENCE = DOCS / "reference"
CALIBRATION = REFERENCE / "calibration.json"
STUDY = REFERENCE / "prompt-study.json"
STUDY_FIGURE = DOCS / "figures" / "summary_prompt_count"
MODELS = ("smollm2-135m", "gemma3-270m")
MISSING = "(not generated yet: see docs/make_findings.py)\n"


def reference(model: str, name: str = "summary.json") -> Summary | None:
    path = REFERENCE / model / name
    if not path.exists():
        return None
    return Summary.from_json(json.loads(path.read_text()))


def _prompts(summary: Summary) -> int:
    finding = summary.finding("transition")
    counts = [p.get("n_prompts") or 0 for p in finding.details["profiles"].values()]
    return max(counts) if counts else 0


# ---------------------------------------------------------------- calibration


def take_calibration(seeds: int = 200) -> None:
    """Simulate every documented scenario (docs/summary.md's table) and keep the rates."""
    rows = calibration.calibrate(seeds=seeds)
    doc = {
        "rows": rows,
        "n_layers": 30,
        "seeds": seeds,
        "alpha": regime.ALPHA,
        "smooth_span": regime.SMOOTH_SPAN,
        "simulations": regime.SIMULATIONS,
        "bounds": [calibration.bounds(sigma=sigma) for sigma in (0.1, 0.2)],
        "constants": calibration.constants_sensitivity(seeds=seeds),
        "held_out": calibration.held_out(seeds=seeds),
    }
    CALIBRATION.parent.mkdir(parents=True, exist_ok=True)
    CALIBRATION.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {CALIBRATION}")


def calibration_table() -> str:
    if not CALIBRATION.exists():
        return MISSING
    doc = json.loads(CALIBRATION.read_text())
    by_shape: dict[str, dict] = {}
    for row in doc["rows"]:
        by_shape.setdefault(row["shape"], {})[(row["rho"], row["sigma"])] = row
    columns = sorted({(r["rho"], r["sigma"]) for r in doc["rows"]})
    head = " | ".join(f"ρ = {rho:g}, σ = {sigma:g}" for rho, sigma in columns)
    lines = [f"| shape | measures | {head} |", "|---|---|" + "---|" * len(columns)]
    for shape, cells in by_shape.items():
        measures = next(iter(cells.values()))["measures"]
        shown = [f"{cells[c]['rate']:.1%}" if c in cells else "" for c in columns]
        lines.append(f"| {shape} | {measures} | " + " | ".join(shown) + " |")
    worst = max(r["rate"] for r in doc["rows"] if r["measures"] == "false-positive rate")
    power = {(r["sigma"], r["rho"]): r["rate"] for r in doc["rows"] if r["shape"] == "2× step"}
    limits = " ".join(
        f"For the 2× step with independent noise of σ = {b['sigma']:g}, the rule finds "
        f"{power.get((b['sigma'], 0.0), float('nan')):.0%}; its own statistic would find "
        f"{b['known_noise']:.0%} if it could assume the noise independent with σ known, and no "
        f"test that keeps the smoothest step-free decline at {b['alpha']:.0%} finds more than "
        f"{b['neyman_pearson']:.0%} (Neyman–Pearson, the step against its nearest step-free fit)."
        for b in doc.get("bounds", [])
    )
    return (
        "\n".join(lines)
        + f"\n\nEach cell: the share of {doc['seeds']} seeded profiles of {doc['n_layers']} layers "
        f"in which the rule names a downward transition (α = {doc['alpha']:g}, "
        f"{doc['simulations']} null simulations each; `python docs/make_findings.py "
        f"--calibration`). ρ: correlation of neighbouring layers' noise; σ: its standard "
        f"deviation in log scale. The largest false-positive rate in the table is {worst:.1%}. "
        f"{limits}\n" + _constants_table(doc)
    )


def _constants_table(doc: dict) -> str:
    """The sensitive scenarios' rates as the penalty and the ρ quantile move (one at a time)."""
    rows = doc.get("constants")
    if not rows:
        return ""
    scenarios = list(dict.fromkeys((r["shape"], r["rho"], r["sigma"]) for r in rows))
    head = " | ".join(f"{shape}, ρ = {rho:g}, σ = {sigma:g}" for shape, rho, sigma in scenarios)
    lines = [
        "",
        "How the rates move with the two constants chosen on these simulations (the other at its "
        f"default: penalty {regime.PENALTY:g} × log n per parameter, ρ quantile "
        f"{regime.RHO_QUANTILE:g}; same seeds):",
        "",
        f"| constant | value | {head} |",
        "|---|---|" + "---|" * len(scenarios),
    ]
    cells: dict[tuple, dict] = {}
    for r in rows:
        cells.setdefault((r["constant"], r["value"]), {})[(r["shape"], r["rho"], r["sigma"])] = r
    for (constant, value), by in cells.items():
        shown = [f"{by[sc]['rate']:.1%}" if sc in by else "" for sc in scenarios]
        lines.append(f"| {constant} | {value:g} | " + " | ".join(shown) + " |")
    held = {(r["shape"], r["rho"], r["sigma"]): r for r in doc.get("held_out", [])}
    if held:
        first = next(iter(held.values()))["first_seed"]
        shown = [f"{held[sc]['rate']:.1%}" if sc in held else "" for sc in scenarios]
        lines.append(
            f"| both chosen, seeds from {first} (held out) | | " + " | ".join(shown) + " |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- one model's verdict


def _trend(entry: dict) -> str:
    trend = entry.get("trend") or {}
    log = (entry.get("step_vs_trend") or {}).get("scale") == "log"
    return trend_words(trend.get("value"), trend.get("low"), trend.get("high"), log=log)


def transition_sentence(model: str) -> str:
    """Every indicator: step or trend (with the fits compared), and the consensus."""
    summary = reference(model)
    if summary is None:
        return MISSING
    finding = summary.finding("transition")
    parts = []
    for name, entry in finding.details["profiles"].items():
        fit = entry.get("step_vs_trend")
        if fit is None:
            parts.append(f"{name}: too short or flat to fit")
            continue
        if entry.get("significant"):
            interval = entry.get("interval") or {}
            where = f"{entry['layer']}"
            if interval.get("low") is not None:
                where += f" [{interval['low']:.0f}, {interval['high']:.0f}]"
            parts.append(
                f"{name}: a step at {where} beats the best step-free fit ({fit['best_step_free']}; "
                f"p = {fit['p_value']:.3f}, Holm {fit['p_adjusted']:.3f})"
            )
        else:
            parts.append(
                f"{name}: {entry['decision']}, {_trend(entry)} (best step at {fit['split']}: "
                f"p = {fit['p_value']:.3f}, Holm {fit['p_adjusted']:.3f})"
            )
    return (
        f"On {model} (`depthscope analyze`, {_prompts(summary)} prompts; 90 % intervals over "
        f"resampled prompts and split points): transition **{finding.headline}**. "
        + "; ".join(parts)
        + ".\n"
    )


def lens_sentence(model: str) -> str:
    """The lens boundaries and the lens indicators' step-or-trend decisions."""
    summary = reference(model)
    if summary is None:
        return MISSING
    lens = summary.finding("lens")
    profiles = summary.finding("transition").details["profiles"]
    steps = []
    for name in ("logit-lens KL", "logit-lens top-k overlap"):
        entry = profiles.get(name) or {}
        if entry.get("significant"):
            steps.append(f"the {name} steps at boundary {entry['layer']}")
        elif entry.get("decision"):
            steps.append(f"the {name} declines or rises without a step ({_trend(entry)})")
    depth = summary.finding("effective_depth")
    depths = (depth.details.get("indicators") if depth else {}) or {}
    shown = "; ".join(
        f"{name} {bootstrap.Interval(**_interval(depths[name])).text(2)}"
        for name in ("logit-lens KL", "logit-lens top-k overlap")
        if name in depths
    )
    return (
        f"On {model}: {lens.sentence} As profiles: {'; '.join(steps)}; effective depth "
        f"(importance-weighted mean boundary over L): {shown}.\n"
    )


def _interval(doc: dict) -> dict:
    return {key: doc.get(key) for key in ("value", "low", "high", "none_share", "draws")}


def sensitivity_table(model: str) -> str:
    """Every thresholded number of the reference verdict over its constant's range."""
    summary = reference(model)
    if summary is None:
        return MISSING
    lines = ["| verdict line | number | constant | values | results (default in bold) |"]
    lines.append("|---|---|---|---|---|")
    for finding in summary.findings:
        for sweep in finding.details.get("sensitivity") or []:
            results = []
            for value, result in zip(sweep["values"], sweep["results"], strict=True):
                text = "none" if result is None else f"{result:g}"
                results.append(f"**{text}**" if np.isclose(value, sweep["default"]) else text)
            values = ", ".join(f"{v:g}" for v in sweep["values"])
            lines.append(
                f"| {finding.title} | {sweep['number']} | {sweep['constant']} | {values} | "
                + ", ".join(results)
                + " |"
            )
    return "\n".join(lines) + "\n"


def finding_lines(model: str, key: str) -> str:
    """A comparison line of the reference verdict (``reference``: random weights;
    ``distributions``: the prompt sources) with each of its rows."""
    summary = reference(model)
    finding = summary.finding(key) if summary else None
    if finding is None:
        return MISSING
    lines = "\n".join(f"- {line}" for line in finding.details["lines"])
    return f"{finding.sentence}\n\n{lines}\n"


# ---------------------------------------------------------------- fp32 vs bf16


def take_bf16(runs: list[Path]) -> None:
    """Keep the verdict of bf16 runs of the built-ins (``--dtype bfloat16``) beside fp32's."""
    for run in runs:
        doc = json.loads((run / "summary.json").read_text())
        target = REFERENCE / doc["model"] / "summary-bf16.json"
        target.write_text(json.dumps(doc) + "\n")
        print(f"bf16 reference {doc['model']}: {run}")


def bf16_verdict_table() -> str:
    """Both built-ins' verdict numbers in fp32 and bf16, compared with paired draws."""
    blocks = []
    for model in MODELS:
        fp32, bf16 = reference(model), reference(model, "summary-bf16.json")
        if fp32 is None or bf16 is None:
            continue
        rows = compare_summaries(fp32, bf16, ("fp32", "bf16"))
        blocks.append(f"{model}:\n\n" + "\n".join(f"- {row_line(r)}" for r in rows))
        heads = []
        for finding in fp32.findings:
            other = bf16.finding(finding.key)
            if other is not None and finding.key != "distributions":
                heads.append(f"| {finding.title} | {finding.headline} | {other.headline} |")
        blocks.append("| verdict line | fp32 | bf16 |\n|---|---|---|\n" + "\n".join(heads))
    return ("\n\n".join(blocks) + "\n") if blocks else MISSING


# ---------------------------------------------------------------- how many prompts


def study(runs: list[Path], counts: tuple[int, ...]) -> None:
    """The verdict on the first n prompts of large runs: how its intervals change with n."""
    doc: dict = {"counts": list(counts), "models": {}}
    for run in runs:
        results, _ = load_results(run)
        model = str(next(iter(results.values())).model.get("name"))
        entries = []
        for n in counts:
            summary = summarize_results(first_prompts(results, n), run, per_source=False)
            finding = summary.finding("transition")
            depth = summary.finding("effective_depth")
            lead = depth.details["indicators"]
            widths = {
                name: None if d.get("low") is None else round(d["high"] - d["low"], 4)
                for name, d in lead.items()
            }
            entries.append(
                {
                    "n": n,
                    "transition": finding.headline,
                    "steps": [
                        name
                        for name, entry in finding.details["profiles"].items()
                        if entry.get("significant")
                    ],
                    "effective_depth": {name: _interval(d) for name, d in lead.items()},
                    "effective_depth_widths": widths,
                }
            )
        doc["models"][model] = entries
    STUDY.parent.mkdir(parents=True, exist_ok=True)
    STUDY.write_text(json.dumps(doc, indent=1) + "\n")
    fig, ax = new_figure(6, 3)
    for index, (model, entries) in enumerate(doc["models"].items()):
        name = "future output change"
        values = [e["effective_depth_widths"].get(name) for e in entries]
        ax.plot(doc["counts"], [np.nan if v is None else v for v in values], "o-",
                color=f"C{index}", label=model)  # fmt: skip
    ax.set_xlabel("prompts (the first n of one run, both sources alike)")
    ax.set_ylabel("90 % interval width")
    ax.set_title("Effective depth of the future output change: interval width vs prompts",
                 fontsize=9)  # fmt: skip
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(tidy(fig), STUDY_FIGURE, formats=("png",))
    print(f"wrote {STUDY} and {STUDY_FIGURE}.png")


def prompt_study_table() -> str:
    if not STUDY.exists():
        return MISSING
    doc = json.loads(STUDY.read_text())
    if "counts" not in doc or not any("effective_depth" in e for m in doc["models"].values()
                                      for e in m):  # fmt: skip
        return MISSING
    lines = [
        "| model | prompts | transition | indicators with a step | effective depth, future "
        "output change | its interval width |",
        "|---|---|---|---|---|---|",
    ]
    for model, entries in doc["models"].items():
        for e in entries:
            depth = e["effective_depth"].get("future output change") or {}
            shown = bootstrap.Interval(**depth).text(2) if depth else "—"
            width = e["effective_depth_widths"].get("future output change")
            lines.append(
                f"| {model} | {e['n']} | {e['transition']} | {len(e['steps'])} | {shown} | "
                f"{'—' if width is None else f'{width:.3f}'} |"
            )
    return "\n".join(lines) + "\n"
