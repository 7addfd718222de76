"""The verdict per prompt distribution, and whether the distributions agree.

A run on a mixture of sources (``--data A+B``; the default job reads arithmetic word problems and
prose) records which source each prompt came from (``prompt_sources`` in each result). The verdict
is then also computed on each source's prompts alone, and the sources are compared number by
number (:mod:`depthscope.verdict.comparison`: effective depths and change points as relative
depths, differences with intervals, Holm-corrected, "the same" only within the equivalence
margin). Different prompts: the bootstrap draws of the two sources are independent.
"""

from __future__ import annotations

import dataclasses

from depthscope.analyses.card import Finding
from depthscope.core.result import Result
from depthscope.verdict.comparison import compare_summaries, row_line

TITLE = "Across distributions"


def sources_of(results: dict[str, Result]) -> list[str]:
    """The distinct prompt sources the results record, in order of first appearance."""
    seen: dict[str, None] = {}
    for result in results.values():
        for source in result.extra.get("prompt_sources") or []:
            if source is not None:
                seen.setdefault(str(source), None)
    return list(seen)


def by_source(results: dict[str, Result]) -> dict[str, dict[str, Result]] | None:
    """Per source, the results restricted to that source's prompts (per-prompt data only);
    None unless the results record at least two sources."""
    sources = sources_of(results)
    if len(sources) < 2:
        return None
    out: dict[str, dict[str, Result]] = {}
    for source in sources:
        subset = {}
        for name, result in results.items():
            labels = result.extra.get("prompt_sources")
            entries = result.data.get("per_prompt")
            if not labels or not isinstance(entries, list):
                continue
            kept = [
                e
                for e in entries
                if isinstance(e, dict)
                and isinstance(e.get("prompt"), int)
                and e["prompt"] < len(labels)
                and labels[e["prompt"]] == source
            ]
            if not kept:
                continue
            data = {**result.data, "per_prompt": kept}
            subset[name] = dataclasses.replace(result, data=data, n_prompts=len(kept))
        if subset:
            out[source] = subset
    return out if len(out) >= 2 else None


def _agreement(rows: list[dict]) -> str:
    depth = [r for r in rows if r["measure"] == "effective depth" and r.get("difference")]
    outcomes = [r["difference"]["outcome"] for r in depth]
    if not outcomes:
        return "not comparable (no per-prompt data)"
    if all(o == "equivalent" for o in outcomes):
        return "they agree: every effective depth is the same within the margin"
    differing = [r["quantity"] for r in depth if r["difference"]["outcome"] == "differ"]
    if differing:
        return f"they differ in {', '.join(differing)}"
    return "inconclusive: neither a difference nor equivalence at these prompt counts"


def finding(summaries: dict, n_layers: int | None) -> Finding | None:
    """The distributions' verdicts side by side and compared with the first source's."""
    if len(summaries) < 2:
        return None
    labels = list(summaries)
    first = labels[0]
    rows = []
    for other in labels[1:]:
        rows += compare_summaries(summaries[first], summaries[other], (first, other))
    parts = []
    for label, summary in summaries.items():
        transition = summary.finding("transition")
        depth = summary.finding("effective_depth")
        shown = transition.headline if transition else "not measured"
        shown += f"; effective depth {depth.headline}" if depth else ""
        parts.append(f"{label} ({_prompts(summary)} prompts): transition {shown}")
    agreement = _agreement(rows)
    sentence = (
        f"The verdict on each source's prompts alone: {'; '.join(parts)}. Compared "
        f"({', '.join(f'{o} − {first}' for o in labels[1:])}, Holm-corrected): {agreement}."
    )
    return Finding(
        key="distributions",
        title=TITLE,
        headline=agreement.split(":")[0],
        sentence=sentence,
        details={
            "sources": labels,
            "verdicts": {label: s.to_json() for label, s in summaries.items()},
            "differences": rows,
            "lines": [row_line(r) for r in rows],
            "agreement": agreement,
        },
        analyses=[],
    )


def _prompts(summary) -> int:
    finding = summary.finding("transition")
    if finding is None:
        return 0
    counts = [p.get("n_prompts") or 0 for p in finding.details.get("profiles", {}).values()]
    return max(counts, default=0)
