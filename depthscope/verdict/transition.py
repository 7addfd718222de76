"""The verdict's depth lines read from the transition indicators: the transition and the
threshold-free effective depth, each number with its interval and the rule that produced it.

- **Transition**: the consensus split of the indicators with a step (step-versus-trend rule,
  Holm over the indicators), disputed when paired tests separate them, and "no discrete
  transition" with each indicator's trend when none steps.
- **Effective depth**: each indicator's importance-weighted mean depth
  (:mod:`depthscope.verdict.depth`), no threshold involved.

Both are also swept over the rule's constants (:mod:`depthscope.verdict.sensitivity`).
"""

from __future__ import annotations

import numpy as np

from depthscope.analyses.card import Finding
from depthscope.verdict import evidence, regime, sensitivity
from depthscope.verdict.bootstrap import Interval
from depthscope.verdict.depth import IMPORTANCE
from depthscope.verdict.words import rel, trend_words

TRANSITION = "Transition"
DEPTH = "Effective depth"


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


def interval_details(interval: Interval | None, n_layers: int | None) -> dict | None:
    if interval is None:
        return None
    doc = interval.as_json()
    doc["relative"] = [rel(interval.low, n_layers), rel(interval.high, n_layers)]
    return doc


def _rounded(samples: np.ndarray | None, digits: int = 4) -> list | None:
    if samples is None:
        return None
    return [None if not np.isfinite(v) else round(float(v), digits) for v in samples]


def trend_text(item: evidence.Indicator, trend: Interval | None) -> str:
    """The indicator's trend over the profile (:func:`~depthscope.verdict.words.trend_words`)."""
    if trend is None:
        return ""
    return trend_words(trend.value, trend.low, trend.high, log=item.profile.log)


def _indicator_details(item: evidence.Indicator, n_layers: int) -> dict:
    found = item.regime
    interval = item.interval()
    depth = item.depth(n_layers)
    trend = item.trend()
    doc: dict = {"analysis": item.analysis, "n_prompts": item.n_prompts}
    doc["layer"] = item.split
    doc["relative_depth"] = rel(item.split, n_layers)
    doc["significant"] = item.significant
    doc["decision"] = found.decision if found else "too short or flat"
    doc["interval"] = interval_details(interval, n_layers)
    doc["step_vs_trend"] = found.as_json() if found else None
    doc["trend"] = trend.as_json() if trend else None
    doc["effective_depth"] = {
        **depth.as_json(),
        "importance": IMPORTANCE[item.profile.importance],
    }
    if item.paper is not None:
        doc["paper_aggregate"] = {
            "aggregate": item.paper_aggregate,
            "decision": item.paper.decision,
            "layer": item.paper.index if item.paper.significant else None,
            "step_vs_trend": item.paper.as_json(),
        }
    doc["expected"] = item.profile.expected
    doc["axis"] = item.profile.axis
    doc["figure"] = item.profile.figure
    doc["profile"] = [None if not np.isfinite(v) else float(v) for v in item.values]
    doc["draws"] = {
        "split": _rounded(item.split_draws(), 1),
        "effective_depth": _rounded(item.depth_draws(n_layers)),
    }
    return doc


def _no_step(item: evidence.Indicator) -> str:
    found = item.regime
    if found is None:
        return f"{item.name} (too short or flat to fit)"
    trend = trend_text(item, item.trend())
    kind = "gradual trend" if found.decision == "gradual" else "no clear trend"
    return f"{item.name}: {kind}{', ' + trend if trend else ''} ({found.reason})"


def _group_text(group: list[str], by_name: dict[str, evidence.Indicator]) -> str:
    """The change points of a group of indicators that do not differ: ``13 [12, 14]``."""
    items = [by_name[n] for n in group]
    intervals = [i.interval() for i in items]
    lows = [
        iv.low if iv and iv.low is not None else i.split
        for i, iv in zip(items, intervals, strict=True)
    ]
    highs = [
        iv.high if iv and iv.high is not None else i.split
        for i, iv in zip(items, intervals, strict=True)
    ]
    middle = int(np.median([i.split for i in items]))
    return f"{middle} [{min(lows):.0f}, {max(highs):.0f}]"


def _paper_text(found: list[evidence.Indicator]) -> str:
    shown = [i for i in found if i.paper is not None]
    if not shown:
        return ""
    parts = []
    for item in shown:
        where = f"layer {item.paper.index}" if item.paper.significant else "no step"
        parts.append(f"{item.name} {where}")
    return f" Under the paper's {shown[0].paper_aggregate}: {'; '.join(parts)}."


def transition(
    found: list[evidence.Indicator], n_layers: int, *, sweeps: bool = True
) -> Finding | None:
    """The transition line from the judged indicators (:mod:`.evidence`)."""
    if not found:
        return None
    agreed = evidence.consensus(found)
    by_name = {i.name: i for i in found}
    details = {
        "basis": "consensus",
        "rule": evidence.RULE,
        "profiles": {i.name: _indicator_details(i, n_layers) for i in found},
        "consensus": {
            "layer": agreed.layer,
            "relative_depth": rel(agreed.layer, n_layers),
            "interval": interval_details(agreed.interval, n_layers),
            "members": agreed.members,
            "groups": agreed.groups,
            "agreed": agreed.agreed,
            "pairs": {name: d.as_json() for name, d in agreed.pairs.items()},
            "draws": _rounded(agreed.samples, 1),
        },
        "sensitivity": transition_sweeps(found) if sweeps else [],
    }
    common = {
        "key": "transition",
        "title": TRANSITION,
        "details": details,
        "figures": [i.profile.figure for i in found],
        "analyses": list(dict.fromkeys(i.analysis for i in found)),
    }
    flat = [_no_step(i) for i in found if not i.significant]
    paper = _paper_text(found)
    if agreed.layer is None:
        sentence = (
            f"No discrete transition: no indicator steps beyond a smooth trend: {'; '.join(flat)}."
        )
        return Finding(
            headline="none (no step beyond a smooth trend)", sentence=sentence + paper, **common
        )

    def shown(name: str) -> str:
        item = by_name[name]
        interval = item.interval()
        where = interval.text() if interval else f"{item.split}"
        verb = "drops" if item.regime.direction == "down" else "rises"
        return f"{name} {verb} at {where} (Holm p = {item.regime.p_adjusted:.3f})"

    where = with_interval(agreed.layer, agreed.interval, n_layers)
    no_step = f" No step in: {'; '.join(flat)}." if flat else ""
    if agreed.agreed:
        sentence = (
            f"The second regime starts at {where} of {n_layers}: the joint split of "
            f"{len(agreed.members)} of {len(found)} indicators whose change points do not differ "
            f"(paired tests): {'; '.join(shown(n) for n in agreed.members)}.{no_step}"
        )
        headline = where
    else:
        apart = [
            f"{name.replace(' | ', ' to ')} {d.text()}"
            for name, d in agreed.pairs.items()
            if d.outcome == "differ"
        ]
        groups = "; ".join(
            f"{', '.join(group)} {_group_text(group, by_name)}" for group in agreed.groups
        )
        sentence = (
            f"Indicators disagree: {groups} (differences: {'; '.join(apart)}). Their joint split, "
            f"{where}, is not a transition all of them show; read the indicators.{no_step}"
        )
        headline = "disputed: " + " vs ".join(_group_text(g, by_name) for g in agreed.groups)
    return Finding(
        headline=headline,
        sentence=sentence + paper,
        layer=agreed.layer,
        relative_depth=rel(agreed.layer, n_layers),
        **common,
    )


_REFIT = {  # constants of the fit and its null: changing one fits the profile again
    "smooth_span": regime.SMOOTH_SPAN,
    "penalty": regime.PENALTY,
    "rho_quantile": regime.RHO_QUANTILE,
}


def _consensus_with(found: list[evidence.Indicator], **constants) -> int | None:
    """The consensus split (all-prompt profiles only) under other constants of the step rule."""
    items = []
    for item in found:
        if item.regime is None:
            continue
        refit = {k: v for k, v in constants.items() if k in _REFIT and v != _REFIT[k]}
        if refit:
            fitted = regime.regime(
                item.values, item.profile.expected, log=item.profile.log, **refit
            )
        else:
            fitted = item.regime
        if fitted is None:
            continue
        items.append(
            evidence.Indicator(
                item.name, item.analysis, item.profile, item.values, None, None, fitted
            )
        )
    adjusted = regime.holm_adjusted({i.name: i.regime.p_value for i in items})
    alpha = constants.get("alpha", regime.ALPHA)
    min_step = constants.get("min_step", regime.MIN_STEP)
    for i in items:
        i.regime = regime.judged(i.regime, adjusted[i.name], alpha, min_step)
    return evidence.consensus(items).layer


def transition_sweeps(found: list[evidence.Indicator]) -> list[dict]:
    """The consensus split over each constant of the step rule's documented range."""
    return [
        sensitivity.sweep(
            name,
            default,
            lambda value, name=name: _consensus_with(found, **{name: value}),
            "consensus split (layer; None: no transition)",
        )
        for name, default in (
            ("alpha", regime.ALPHA),
            ("min_step", regime.MIN_STEP),
            *_REFIT.items(),
        )
    ]


def effective_depth(found: list[evidence.Indicator], n_layers: int) -> Finding | None:
    """Each indicator's threshold-free effective depth with its interval."""
    if not found:
        return None
    depths = {i.name: i.depth(n_layers) for i in found}
    shown = [(name, d) for name, d in depths.items() if d.value is not None]
    if not shown:
        return None
    lead_name, lead = shown[0]
    parts = "; ".join(f"{name} {d.text(2)}" for name, d in shown)
    return Finding(
        key="effective_depth",
        title=DEPTH,
        headline=f"{lead.text(2)} ({lead_name})",
        sentence=(
            "Importance-weighted mean depth of each indicator (relative depth; no threshold; "
            f"equal importance everywhere gives about 0.5): {parts}."
        ),
        layer=None,
        relative_depth=lead.value,
        details={
            "rule": "Σ_i i·w_i / Σ_i w_i / L with w the indicator's importance (docs/summary.md)",
            "indicators": {
                name: {**d.as_json(), "importance": IMPORTANCE[by.profile.importance]}
                for (name, d), by in zip(depths.items(), found, strict=True)
            },
        },
        figures=[i.profile.figure for i in found],
        analyses=list(dict.fromkeys(i.analysis for i in found)),
    )
