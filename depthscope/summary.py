"""The effective-depth verdict of a run: a few numbers, each as a layer and a relative depth.

Computed from the saved ``results/*.json`` only (so ``depthscope plot`` can recompute it), by the
rules of :mod:`depthscope.summary_rules` (documented in docs/summary.md):

- **transition**: where the second regime starts — change point of the future-effect profile
  (the mean effect of skipping a layer on later layers' future computations), with the change
  points of the future output change, relative contribution and cosine alongside;
- **future use**: how many layers, and which, still change future predictions;
- **lens convergence**: where the logit lens starts to agree with the output;
- **operands**: depth from which the prompt's operand tokens stop mattering (erasure, IG);
- **difficulty**: whether harder problems use more depth (depth score per level).

A finding whose analysis is missing is replaced by the command that would produce it; a malformed
result becomes a note. Nothing here raises for a run directory that exists.
"""

from __future__ import annotations

import html
import json
import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from depthscope import summary_rules as rules
from depthscope.errors import DepthscopeError
from depthscope.results import Result, atomic_write_json

SCHEMA = 1
SUMMARY_FILE = "summary.json"
RULES_DOC = "docs/summary.md"


@dataclass
class Finding:
    """One line of the verdict: a headline layer (absolute and relative), a sentence, evidence."""

    key: str
    title: str
    headline: str  # the numbers in a few words, for the table
    sentence: str
    layer: int | None = None  # the headline layer or boundary
    relative_depth: float | None = None  # layer / L
    details: dict = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)  # figure stems in the run's figures/
    analyses: list[str] = field(default_factory=list)


@dataclass
class Missing:
    """A finding that could not be computed, and the command that would make it possible."""

    key: str
    title: str
    analyses: list[str]
    command: str


@dataclass
class Summary:
    """The verdict of one run directory (``summary.json``)."""

    model: str
    n_layers: int | None
    run_dir: str
    findings: list[Finding] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data_sources: dict = field(default_factory=dict)  # analysis -> data source
    rules: dict = field(default_factory=dict)
    schema: int = SCHEMA

    def finding(self, key: str) -> Finding | None:
        return next((f for f in self.findings if f.key == key), None)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> Summary:
        doc = dict(doc)
        doc["findings"] = [Finding(**f) for f in doc.get("findings", [])]
        doc["missing"] = [Missing(**m) for m in doc.get("missing", [])]
        return cls(**doc)


def rule_constants() -> dict:
    return {
        "change_point": {
            "fit": "two segments, least absolute deviations from each segment's median",
            "min_segment": rules.MIN_SEGMENT,
            "min_segment_fraction": rules.MIN_SEGMENT_FRACTION,
            "max_p_value": rules.MAX_P_VALUE,
            "permutations": rules.PERMUTATIONS,
            "log_scale": [p.name for p in TRANSITION_PROFILES if p.log],
            "min_step": rules.MIN_STEP,
        },
        "future_use_fraction_of_first_half_median": rules.FUTURE_FRACTION,
        "lens_overlap": rules.LENS_OVERLAP,
        "lens_kl_fraction_of_first_half_median": rules.LENS_KL_FRACTION,
        "token_share_of_max": rules.TOKEN_SHARE,
        "doc": RULES_DOC,
    }


# ------------------------------------------------------------------------------ reading a run


def load_results(run_dir: Path) -> tuple[dict[str, Result], list[str]]:
    """``{analysis: Result}`` of ``run_dir/results``; unreadable files become notes."""
    results, notes = {}, []
    for path in sorted((Path(run_dir) / "results").glob("*.json")):
        try:
            result = Result.load(path)
        except DepthscopeError as exc:
            notes.append(f"{path.name} skipped: {exc}")
            continue
        results[result.analysis] = result
    return results, notes


def model_spec(run_dir: Path, results: dict[str, Result]) -> str:
    """What to pass to `depthscope analyze` to reproduce the run's model."""
    model: dict = {}
    try:
        run = json.loads((Path(run_dir) / "run.json").read_text())
        model = run.get("model") if isinstance(run.get("model"), dict) else {}
    except (OSError, ValueError):
        pass
    if not model and results:
        model = next(iter(results.values())).model
    source = str(model.get("source") or "")
    for prefix in ("folder:", "gguf:", "hf:"):
        if source.startswith(prefix):
            return source.removeprefix(prefix)
    return str(model.get("name") or "MODEL")


def _n_layers(results: dict[str, Result]) -> int | None:
    for result in results.values():
        value = result.model.get("n_layers")
        if isinstance(value, int) and value > 0:
            return value
    for name, key in (("future-effects", "output_change"), ("contributions", "rel_layer")):
        if name in results:
            return len(results[name].data[key])
    return None


def _rel(index: int | None, n_layers: int | None) -> float | None:
    return None if index is None or not n_layers else round(index / n_layers, 3)


def _at(index: int | None, n_layers: int | None, noun: str = "layer") -> str:
    """``layer 12 (relative depth 0.40)``; ``never`` for None."""
    if index is None:
        return "never"
    rel = _rel(index, n_layers)
    return f"{noun} {index}" + ("" if rel is None else f" (relative depth {rel:.2f})")


# ------------------------------------------------------------------------------ findings


class Profile(NamedTuple):
    """A per-layer profile that may show the transition, and the step expected there."""

    name: str
    analysis: str
    key: str  # data key, or "later" for the mean effect on later layers
    expected: str  # "down" or "up"
    figure: str
    log: bool = True  # fitted in log scale (positive ratios and norms)


# In order of preference: the first profile whose analysis ran is the basis of the verdict.
TRANSITION_PROFILES = (
    Profile(
        "future effect on later layers",
        "future-effects",
        "later",
        "down",
        "future-effects_effect_layer",
    ),
    Profile(
        "future output change",
        "future-effects",
        "output_change",
        "down",
        "future-effects_output_change_layer",
    ),
    Profile(
        "relative contribution",
        "contributions",
        "rel_layer",
        "down",
        "contributions_mean_relative_contribution",
    ),
    Profile(
        "cosine to the residual",
        "contributions",
        "cos_layer",
        "up",
        "contributions_avg_cossims",
        log=False,  # signed
    ),
    Profile("logit-lens KL", "logit-lens", "kl", "down", "logit-lens_kl_div"),
    Profile(
        "logit-lens top-k overlap",
        "logit-lens",
        "topk_overlap",
        "up",
        "logit-lens_topk_overlaps",
        log=False,
    ),
)


def _profile(result: Result, key: str) -> np.ndarray:
    if key == "later":
        return rules.later_layer_effect(result.data["effect"])
    return np.asarray(result.data[key], dtype=float)


def _no_transition_reason(
    point: rules.ChangePoint | None, profile: np.ndarray, expected: str
) -> str:
    if point is None:
        if int(np.isfinite(profile).sum()) < 2 * rules.MIN_SEGMENT:
            return f"fewer than {2 * rules.MIN_SEGMENT} layers to split"
        return "the profile is flat"
    if point.p_value > rules.MAX_P_VALUE:
        return (
            f"the best split, at layer {point.index}, is matched by {point.p_value:.0%} of random "
            f"layer orders (p > {rules.MAX_P_VALUE})"
        )
    if point.direction != expected:
        return (
            f"the best split, at layer {point.index}, is a {'drop' if expected == 'up' else 'rise'}"
        )
    return f"the two levels differ by less than {rules.MIN_STEP:.0%}"


def _verb(point: rules.ChangePoint) -> str:
    return "drops" if point.direction == "down" else "rises"


def _point_details(point: rules.ChangePoint | None, n_layers: int | None) -> dict | None:
    if point is None:
        return None
    return {
        "layer": point.index,
        "relative_depth": _rel(point.index, n_layers),
        "quality": round(point.quality, 3),
        "p_value": point.p_value,
        "left_median": point.left,
        "right_median": point.right,
        "direction": point.direction,
        "significant": point.significant,
    }


def transition(results: dict[str, Result], n_layers: int | None) -> Finding | None:
    """Change point of the first available profile (future effect first); the others alongside."""
    present = [p for p in TRANSITION_PROFILES if p.analysis in results]
    if not present:
        return None
    profiles = {p.name: _profile(results[p.analysis], p.key) for p in present}
    points = {p.name: rules.change_point(profiles[p.name], p.expected, log=p.log) for p in present}
    basis, expected = present[0].name, present[0].expected
    primary = points[basis]
    agree = [
        f"the {name} {_verb(p)} at layer {p.index}"
        for name, p in points.items()
        if p is not None and name != basis and p.significant
    ]
    also = f"; {', '.join(agree)}" if agree else ""
    common = {
        "key": "transition",
        "title": "Transition",
        "details": {
            "basis": basis,
            "profiles": {name: _point_details(p, n_layers) for name, p in points.items()},
        },
        "figures": [p.figure for p in present],
        "analyses": list(dict.fromkeys(p.analysis for p in present)),
    }
    if primary is None or not primary.significant:
        reason = _no_transition_reason(primary, profiles[basis], expected)
        sentence = f"No transition: the {basis} has no clear two-level step ({reason}){also}."
        return Finding(headline="none", sentence=sentence, **common)
    sentence = (
        f"The second regime starts at layer {primary.index} of {n_layers} (relative depth "
        f"{_rel(primary.index, n_layers):.2f}): the {basis} {_verb(primary)} from a median "
        f"{primary.left:.3g} to {primary.right:.3g} (p = {primary.p_value:.3f} against random layer orders){also}."
    )
    return Finding(
        headline=_at(primary.index, n_layers),
        sentence=sentence,
        layer=primary.index,
        relative_depth=_rel(primary.index, n_layers),
        **common,
    )


def future_use(results: dict[str, Result], n_layers: int | None) -> Finding | None:
    """Layers whose future output change reaches a fraction of the first-half median."""
    if "future-effects" not in results:
        return None
    output_change = results["future-effects"].data["output_change"]
    use = rules.future_use(output_change)
    if use is None:
        return None
    n = n_layers or len(output_change)
    half = n // 2
    second = [layer for layer in use.layers if layer >= half]
    deepest = max(use.layers) if use.layers else None
    sentence = (
        f"{len(use.layers)} of {n} layers change future predictions by at least "
        f"{rules.FUTURE_FRACTION:g}× the first-half median ({use.reference:.3g}): "
        f"{rules.layer_ranges(use.layers)}; {len(second)} of the {n - half} second-half layers do"
    )
    if deepest is not None:
        sentence += f"; the deepest is layer {deepest} (relative depth {_rel(deepest, n):.2f})"
    return Finding(
        key="future_use",
        title="Layers used by future tokens",
        headline=f"{len(use.layers)} of {n}; deepest {_at(deepest, n)}",
        sentence=sentence + ".",
        layer=deepest,
        relative_depth=_rel(deepest, n),
        details={
            "count": len(use.layers),
            "layers": use.layers,
            "second_half_count": len(second),
            "fraction": round(len(use.layers) / n, 3),
            "reference": use.reference,
            "threshold": use.threshold,
        },
        figures=["future-effects_output_change_layer"],
        analyses=["future-effects"],
    )


def lens_convergence(results: dict[str, Result], n_layers: int | None) -> Finding | None:
    """First boundary whose top-k overlap reaches 0.5; boundary from which KL stays low."""
    if "logit-lens" not in results:
        return None
    data = results["logit-lens"].data
    overlap = np.asarray(data.get("topk_overlap", []), dtype=float)
    kl = np.asarray(data.get("kl", []), dtype=float)
    n = n_layers or max(len(overlap), len(kl))
    k = results["logit-lens"].settings.get("k", 5)
    first = rules.first_at_least(overlap, rules.LENS_OVERLAP) if overlap.size else None
    kl_ref = rules.first_half_median(kl)
    kl_low = None if kl_ref is None else rules.stays_below_from(kl, rules.LENS_KL_FRACTION * kl_ref)
    if first is not None:
        overlap_text = (
            f"top-{k} overlap with the output first reaches {rules.LENS_OVERLAP:g} at the input "
            f"of {_at(first, n)}"
        )
    else:
        overlap_text = f"top-{k} overlap never reaches {rules.LENS_OVERLAP:g}"
    level = f"{rules.LENS_KL_FRACTION:g}× its first-half median"
    if kl_low is not None:
        kl_text = f"KL stays below {level} ({kl_ref:.3g}) from the input of {_at(kl_low, n)} on"
    else:
        kl_text = f"KL never stays below {level}"
    return Finding(
        key="lens",
        title="Logit-lens convergence",
        headline=f"overlap {_at(first, n, 'boundary')}; KL {_at(kl_low, n, 'boundary')}",
        sentence=f"The logit lens: {overlap_text}; {kl_text}.",
        layer=first,
        relative_depth=_rel(first, n),
        details={
            "overlap_boundary": first,
            "kl_boundary": kl_low,
            "kl_relative_depth": _rel(kl_low, n),
            "kl_first_half_median": kl_ref,
        },
        figures=["logit-lens_topk_overlaps", "logit-lens_kl_div"],
        analyses=["logit-lens"],
    )


def _token_maps(result: Result) -> tuple[list, int]:
    """(matrices, row offset to a boundary): erasure rows are boundaries, IG rows layer outputs."""
    if result.analysis == "erasure":
        return list(result.data["effect"]), 0
    return list(result.data["attribution"]), 1


def _stops(result: Result, n_layers: int | None) -> list[dict]:
    maps, offset = _token_maps(result)
    data = result.data
    prompts = data.get("prompts") or list(range(len(maps)))
    tokens, answers = data.get("tokens") or [], data.get("answer_tokens") or []
    stops = []
    for index, matrix in enumerate(maps):
        matrix = np.asarray(matrix, dtype=float)
        alen = answers[index] if index < len(answers) else None
        columns = rules.context_columns(matrix.shape[1], alen)
        chosen, digits = rules.operand_columns(
            tokens[index] if index < len(tokens) else None, columns
        )
        row = rules.stop_mattering(matrix, chosen)
        boundary = None if row is None else row + offset
        stops.append(
            {
                "prompt": prompts[index] if index < len(prompts) else index,
                "boundary": boundary,
                "relative_depth": _rel(boundary, n_layers),
                "tokens": "operands (digit tokens)" if digits else "all context tokens",
            }
        )
    return stops


TOKEN_FIGURES = {"erasure": "erasure_prompt{}", "igrad": "igrad_layer_prompt{}"}


def operands(results: dict[str, Result], n_layers: int | None) -> Finding | None:
    """Boundary from which the operand tokens stop mattering, per prompt (erasure, else IG)."""
    per_analysis = {
        name: _stops(results[name], n_layers) for name in TOKEN_FIGURES if name in results
    }
    if not per_analysis:
        return None
    basis = next(iter(per_analysis))
    stops = per_analysis[basis]
    known = [s["boundary"] for s in stops if s["boundary"] is not None]
    deepest = max(known) if known else None
    listed = "; ".join(
        f"prompt {s['prompt']}: {_at(s['boundary'], n_layers, 'boundary')} ({s['tokens']})"
        for s in stops
    )
    method = "erasing them" if basis == "erasure" else "their integrated-gradient attribution"
    return Finding(
        key="operands",
        title="Operands stop mattering",
        headline=f"by {_at(deepest, n_layers, 'boundary')} (deepest prompt)",
        sentence=(
            f"Operand tokens stop mattering ({method} stays below {rules.TOKEN_SHARE:g}× its "
            f"maximum) from {listed}."
        ),
        layer=deepest,
        relative_depth=_rel(deepest, n_layers),
        details={"basis": basis, "per_prompt": per_analysis},
        figures=[
            TOKEN_FIGURES[name].format(s["prompt"]) for name, ss in per_analysis.items() for s in ss
        ],
        analyses=list(per_analysis),
    )


def difficulty(results: dict[str, Result], n_layers: int | None) -> Finding | None:
    """Depth score per difficulty level, and whether it grows from the easiest to the hardest."""
    if "depth-score" not in results:
        return None
    result = results["depth-score"]
    scores = {
        level: entry["depth_score_layer"]
        for level, entry in result.data["levels"].items()
        if isinstance(entry.get("depth_score_layer"), int | float)
    }
    if not scores:
        return None
    values = list(scores.values())
    grows = values[-1] > values[0] if len(values) > 1 else None
    listed = ", ".join(f"level {k}: {v:.2f} ({_rel(v, n_layers)})" for k, v in scores.items())
    trend = {None: "", True: "; harder problems use more depth"}.get(
        grows, "; harder problems do not use more depth"
    )
    aggregate = result.settings.get("aggregate", "max")
    return Finding(
        key="difficulty",
        title="Depth vs difficulty",
        headline=f"depth score {values[0]:.1f} → {values[-1]:.1f}",
        sentence=f"Depth score (0-based layer, relative depth) per level: {listed}{trend}.",
        layer=None,
        relative_depth=None,
        details={"depth_score_layer": scores, "grows": grows},
        figures=[f"depth-score_summary_{aggregate}"],
        analyses=["depth-score"],
    )


class FindingRule(NamedTuple):
    key: str
    title: str
    compute: Callable[[dict[str, Result], int | None], Finding | None]
    analyses: tuple[str, ...]  # any of these fills the finding
    command: str  # what `--analyses` (and options) to suggest when none ran


FINDINGS = (
    FindingRule(
        "transition",
        "Transition",
        transition,
        ("future-effects", "contributions"),
        "future-effects,contributions",
    ),
    FindingRule(
        "future_use",
        "Layers used by future tokens",
        future_use,
        ("future-effects",),
        "future-effects",
    ),
    FindingRule("lens", "Logit-lens convergence", lens_convergence, ("logit-lens",), "logit-lens"),
    FindingRule("operands", "Operands stop mattering", operands, ("erasure", "igrad"), "erasure"),
    FindingRule(
        "difficulty",
        "Depth vs difficulty",
        difficulty,
        ("depth-score",),
        "depth-score --data builtin:hops",
    ),
)


def summarize(run_dir: Path) -> Summary:
    """The verdict of ``run_dir`` from its saved results (missing analyses become commands)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DepthscopeError(
            f"run directory {run_dir} does not exist; pass the --out of `depthscope analyze`"
        )
    results, notes = load_results(run_dir)
    n_layers = _n_layers(results)
    first = next(iter(results.values()), None)
    summary = Summary(
        model=str(first.model.get("name", "model")) if first else "model",
        n_layers=n_layers,
        run_dir=str(run_dir),
        notes=notes,
        data_sources={name: r.extra.get("data_source") for name, r in results.items()},
        rules=rule_constants(),
    )
    if results and not any(a in results for rule in FINDINGS for a in rule.analyses):
        notes.append(f"no analysis of this run ({', '.join(results)}) feeds the verdict")
        return summary
    spec = model_spec(run_dir, results)

    def command(analyses: str) -> str:
        return (
            f"depthscope analyze {shlex.quote(spec)} --analyses {analyses} "
            f"--out {shlex.quote(str(run_dir))}"
        )

    for key, title, compute, analyses, wanted in FINDINGS:
        try:
            finding = compute(results, n_layers)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            notes.append(
                f"{title}: result malformed ({type(exc).__name__}: {exc}); rerun the analysis"
            )
            continue
        if finding is None:
            summary.missing.append(Missing(key, title, list(analyses), command(wanted)))
            continue
        summary.findings.append(finding)
        if key == "transition" and "future-effects" not in results:  # a fallback profile was used
            label = f"{title} by its own rule (future effects)"
            summary.missing.append(
                Missing(key, label, ["future-effects"], command("future-effects"))
            )
    return summary


def write_summary(run_dir: Path) -> Summary:
    """Compute the verdict and write ``run_dir/summary.json`` (atomically)."""
    summary = summarize(run_dir)
    atomic_write_json(Path(run_dir) / SUMMARY_FILE, summary.to_json())
    return summary


# ------------------------------------------------------------------------------ rendering


def summary_lines(summary: Summary) -> list[str]:
    """The verdict for the terminal: one line per finding, then the commands for missing ones."""
    depth = f"{summary.n_layers} layers" if summary.n_layers else "unknown depth"
    lines = [f"verdict for {summary.model} ({depth}; rules in {RULES_DOC}):"]
    for finding in summary.findings:
        lines.append(f"  {finding.title:<30} {finding.headline}")
        lines.append(f"    {finding.sentence}")
    for missing in summary.missing:
        lines.append(f"  {missing.title:<30} not measured; run: {missing.command}")
    lines += [f"  note: {note}" for note in summary.notes]
    return lines


CARD_STYLE = """
.verdict{border:1px solid #bbb;border-radius:6px;padding:.6em 1em;margin:1em 0;background:#fafafa}
.verdict h2{margin-top:.2em;border:none}.verdict td,.verdict th{padding:2px 10px}
.verdict .figs{color:#555;font-size:.85em}.verdict .missing{color:#a33}
"""


def _esc(value: object) -> str:
    return html.escape(str(value))


def summary_card_html(summary: Summary, figure_dir: str | None = "figures/") -> str:
    """A short HTML card: a table of numbers, one sentence per finding, its supporting figures.

    ``figure_dir`` is the figures' location relative to the page (None: no links). The styles are
    in :data:`CARD_STYLE`.
    """
    depth = f"its {summary.n_layers} layers" if summary.n_layers else "its depth"
    rows = "".join(
        f"<tr><th>{_esc(f.title)}</th><td>{_esc(f.headline)}</td></tr>" for f in summary.findings
    )
    items = []
    for finding in summary.findings:
        figures = ", ".join(
            f"<a href='{_esc(figure_dir)}{_esc(stem)}.png'>{_esc(stem)}</a>"
            if figure_dir is not None
            else _esc(stem)
            for stem in finding.figures
        )
        support = f" <span class='figs'>(figures: {figures})</span>" if figures else ""
        items.append(f"<li><b>{_esc(finding.title)}.</b> {_esc(finding.sentence)}{support}</li>")
    items += [
        f"<li class='missing'><b>{_esc(m.title)}:</b> not measured; run "
        f"<code>{_esc(m.command)}</code></li>"
        for m in summary.missing
    ]
    items += [f"<li class='missing'>{_esc(note)}</li>" for note in summary.notes]
    return (
        f"<section class='verdict' id='verdict'><h2>Verdict: how {_esc(summary.model)} uses "
        f"{_esc(depth)}</h2><table>{rows}</table><ul>{''.join(items)}</ul>"
        f"<p class='figs'>Relative depth = layer / L. Rules and thresholds: {RULES_DOC}.</p>"
        "</section>"
    )
