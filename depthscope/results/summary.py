"""The effective-depth verdict of a run: a few numbers, each as a layer and a relative depth.

Computed from the saved ``results/*.json`` only (so ``depthscope plot`` can recompute it), by the
rules of :mod:`depthscope.analyses.rules` (documented in docs/summary.md). What the verdict holds
is declared by the analysis cards, never named here:

- **transition**: where the second regime starts — the change point of the first transition
  indicator a run holds (cards' :class:`~depthscope.analyses.card.Profile` s with an indicator:
  the future effect on later layers first), with the other indicators' change points alongside;
- one line per key of the cards' :class:`~depthscope.analyses.card.VerdictRule` s (layers used
  by future tokens, lens convergence, operands, difficulty), filled by the lowest-ranked card
  present.

A finding whose analysis is missing is replaced by the command that would produce it; a malformed
result becomes a note. Nothing here raises for a run directory that exists.
"""

from __future__ import annotations

import dataclasses
import html
import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from depthscope.analyses import bootstrap, rules
from depthscope.analyses.bootstrap import Interval
from depthscope.analyses.card import Finding, VerdictRule
from depthscope.analyses.catalog import cards, paper_order
from depthscope.analyses.verdict import rel
from depthscope.core.errors import DepthscopeError
from depthscope.core.files import atomic_write_json
from depthscope.results import evidence
from depthscope.results.document import Result

SCHEMA = 1
SUMMARY_FILE = "summary.json"
RULES_DOC = "docs/summary.md"


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
            "log_scale": list(
                dict.fromkeys(p.indicator for _, p in evidence.indicator_profiles() if p.log)
            ),
            "min_step": rules.MIN_STEP,
        },
        "consensus": evidence.RULE,
        "bootstrap": {
            "over": "prompts",
            "resamples": bootstrap.RESAMPLES,
            "level": bootstrap.LEVEL,
            "seed": bootstrap.SEED,
            "aggregate": "weighted mean over prompts of the per-prompt profiles",
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
    """The model's depth as the results record it, else the length of a per-layer profile."""
    for result in results.values():
        value = result.model.get("n_layers")
        if isinstance(value, int) and value > 0:
            return value
    for name, profile in evidence.indicator_profiles():
        if name in results and profile.axis == "layer":
            return len(profile.read(results[name].data))
    return None


# ------------------------------------------------------------------------------ findings


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


def with_interval(value: float | None, interval: Interval | None, n_layers: int | None) -> str:
    """``layer 13 [12, 14] (relative depth 0.43 [0.40, 0.47])``; the interval left out where none
    was computed (results without per-prompt data)."""
    if value is None:
        return "none"
    text = f"layer {value:.0f}"
    if interval is not None:
        text = f"layer {interval.text()}"
    relative = rel(value, n_layers)
    if relative is None:
        return text
    if interval is None or interval.low is None:
        return f"{text} (relative depth {relative:.2f})"
    tail = " or none" if interval.covers_none else ""
    return (
        f"{text} (relative depth {relative:.2f} [{rel(interval.low, n_layers):.2f}, "
        f"{rel(interval.high, n_layers):.2f}{tail}])"
    )


def _interval_details(interval: Interval | None, n_layers: int | None) -> dict | None:
    if interval is None:
        return None
    doc = interval.as_json()
    doc["relative"] = [rel(interval.low, n_layers), rel(interval.high, n_layers)]
    return doc


def _indicator_details(
    found: evidence.Indicator, interval: Interval | None, n_layers: int | None
) -> dict:
    point = found.point
    doc: dict = {"analysis": found.analysis, "n_prompts": found.n_prompts}
    if point is not None:
        doc.update(
            {
                "layer": point.index,
                "relative_depth": rel(point.index, n_layers),
                "quality": round(point.quality, 3),
                "p_value": point.p_value,
                "left_median": point.left,
                "right_median": point.right,
                "direction": point.direction,
                "significant": point.significant,
            }
        )
    else:
        doc.update({"layer": None, "significant": False})
    doc["interval"] = _interval_details(interval, n_layers)
    doc["expected"] = found.profile.expected
    doc["axis"] = found.profile.axis
    doc["figure"] = found.profile.figure
    doc["profile"] = [None if not np.isfinite(v) else float(v) for v in found.values]
    return doc


def transition(results: dict[str, Result], n_layers: int | None) -> Finding | None:
    """The consensus change point of every transition indicator the run holds (:mod:`.evidence`)."""
    found = evidence.indicators(results)
    if not found:
        return None
    intervals = {i.name: i.interval() for i in found}
    agreed = evidence.consensus(found, intervals)
    common = {
        "key": "transition",
        "title": TRANSITION,
        "details": {
            "basis": "consensus",
            "rule": evidence.RULE,
            "profiles": {i.name: _indicator_details(i, intervals[i.name], n_layers) for i in found},
            "consensus": {
                "layer": agreed.layer,
                "relative_depth": rel(agreed.layer, n_layers),
                "interval": _interval_details(agreed.interval, n_layers),
                "members": agreed.members,
                "groups": agreed.groups,
                "agreed": agreed.agreed,
            },
        },
        "figures": [i.profile.figure for i in found],
        "analyses": list(dict.fromkeys(i.analysis for i in found)),
    }
    flat = [
        f"{i.name} ({_no_transition_reason(i.point, i.values, i.profile.expected)})"
        for i in found
        if not i.significant
    ]
    if agreed.layer is None:
        sentence = f"No transition: no indicator has a clear two-level step: {'; '.join(flat)}."
        return Finding(headline="none", sentence=sentence, **common)

    by_name = {i.name: i for i in found}

    def shown(name: str) -> str:
        item = by_name[name]
        text = intervals[name].text() if intervals[name] else f"{item.point.index}"
        return f"{name} {_verb(item.point)} at {text} (p = {item.point.p_value:.3f})"

    where = with_interval(agreed.layer, agreed.interval, n_layers)
    no_step = f"; no step in the {', '.join(flat)}" if flat else ""
    no_step += _narrowing(agreed.interval, [i.n_prompts for i in found])
    if agreed.agreed:
        sentence = (
            f"The second regime starts at {where} of {n_layers}: the joint split of "
            f"{len(agreed.members)} of {len(found)} indicators, which agree within their 90 % "
            f"intervals: {'; '.join(shown(n) for n in agreed.members)}{no_step}."
        )
        headline = where
    else:
        groups = "; ".join(
            f"{', '.join(group)} {_group_text(group, by_name, intervals)}"
            for group in agreed.groups
        )
        sentence = (
            f"Indicators disagree: {groups}. Their joint split, {where}, is not a transition all "
            f"of them show; read the indicators{no_step}."
        )
        headline = "disputed: " + " vs ".join(
            _group_text(group, by_name, intervals) for group in agreed.groups
        )
    return Finding(
        headline=headline,
        sentence=sentence,
        layer=agreed.layer,
        relative_depth=rel(agreed.layer, n_layers),
        **common,
    )


WIDE = 4  # a consensus interval wider than ±2 layers is called wide


def _narrowing(interval: Interval | None, counts: list[int | None]) -> str:
    """When the consensus interval is wide: how many prompts would narrow it to ±2 layers
    (intervals shrink as 1/√n)."""
    n = max((c for c in counts if c), default=0)
    if interval is None or interval.low is None or not n:
        return ""
    width = interval.high - interval.low
    if width <= WIDE:
        return ""
    needed = int(np.ceil(n * (width / WIDE) ** 2))
    return (
        f"; the consensus interval is wide ({width:.0f} layers on {n} prompts): about {needed} "
        f"prompts (-n {needed}) would narrow it to ±2 layers"
    )


def _group_text(group: list[str], by_name: dict, intervals: dict[str, Interval | None]) -> str:
    """The change points of a group of agreeing indicators: ``13 [12, 14]`` (their range)."""
    points = [by_name[n].point.index for n in group]
    lows = [
        intervals[n].low
        if intervals[n] and intervals[n].low is not None
        else by_name[n].point.index
        for n in group
    ]
    highs = [
        intervals[n].high
        if intervals[n] and intervals[n].high is not None
        else by_name[n].point.index
        for n in group
    ]
    middle = int(np.median(points))
    return f"{middle} [{min(lows):.0f}, {max(highs):.0f}]"


TRANSITION = "Transition"


@dataclass(frozen=True)
class Line:
    """One line the verdict can hold, and the analyses that fill it (preferred first)."""

    key: str
    title: str
    providers: list[tuple[str, VerdictRule | None]]  # (analysis, its rule; None: transition)

    def suggestion(self) -> str:
        """What ``--analyses`` (and options) to suggest when none of the providers ran."""
        name, rule = self.providers[0]
        return f"{name} {rule.suggest}".strip() if rule is not None else name


def verdict_lines() -> list[Line]:
    """The transition, then each card's verdict rules in the paper's order (one line per key)."""
    lines = []
    present = evidence.indicator_profiles()
    if present:
        lines.append(Line("transition", TRANSITION, [(name, None) for name, _ in present]))
    by_key: dict[str, Line] = {}
    for card in cards():
        for rule in card.verdict:
            line = by_key.get(rule.key)
            if line is None:
                line = by_key[rule.key] = Line(rule.key, rule.title, [])
                lines.append(line)
            line.providers.append((card.name, rule))
    for line in by_key.values():
        line.providers.sort(key=lambda item: item[1].rank)
    return lines


def _compute(line: Line, results: dict[str, Result], n_layers: int | None) -> Finding | None:
    if line.key == "transition":
        return transition(results, n_layers)
    for name, rule in line.providers:
        if name in results:
            return rule.compute(results[name], n_layers)
    return None


def summarize(run_dir: Path) -> Summary:
    """The verdict of ``run_dir`` from its saved results (missing analyses become commands)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DepthscopeError(
            f"run directory {run_dir} does not exist; pass the --out of `depthscope analyze`"
        )
    results, notes = load_results(run_dir)
    return summarize_results(results, run_dir, notes)


def first_prompts(results: dict[str, Result], n: int) -> dict[str, Result]:
    """The results as if only their first ``n`` prompts had run, for what the verdict reads from
    per-prompt data (a prompt-count study without re-running the model)."""
    cut = {}
    for name, result in results.items():
        data = dict(result.data)
        if isinstance(data.get("per_prompt"), list):
            data["per_prompt"] = data["per_prompt"][:n]
        cut[name] = dataclasses.replace(result, data=data, n_prompts=min(n, result.n_prompts))
    return cut


def summarize_results(
    results: dict[str, Result], run_dir: Path, notes: list[str] | None = None
) -> Summary:
    """The verdict of results already read (``run_dir`` names where they live, for commands)."""
    run_dir = Path(run_dir)
    notes = list(notes or [])
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
    lines = verdict_lines()
    if results and not any(name in results for line in lines for name, _ in line.providers):
        notes.append(f"no analysis of this run ({', '.join(results)}) feeds the verdict")
        return summary
    spec = model_spec(run_dir, results)

    def command(analyses: str) -> str:
        return (
            f"depthscope analyze {shlex.quote(spec)} --analyses {analyses} "
            f"--out {shlex.quote(str(run_dir))}"
        )

    for line in lines:
        try:
            finding = _compute(line, results, n_layers)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            notes.append(
                f"{line.title}: result malformed ({type(exc).__name__}: {exc}); rerun the analysis"
            )
            continue
        names = [name for name, _ in line.providers]
        if finding is None:
            summary.missing.append(Missing(line.key, line.title, names, command(line.suggestion())))
            continue
        summary.findings.append(finding)
        order = paper_order()
        absent = sorted({n for n in names if n not in results}, key=order.index)
        if line.key == "transition" and absent:  # some indicators are not in this run
            label = f"{line.title}: more indicators"
            summary.missing.append(Missing(line.key, label, absent, command(",".join(absent))))
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
