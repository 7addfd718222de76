"""Two runs' verdicts compared number by number: effective depths first, then change points.

Every number is a relative depth (``index / L``), so models of any depth compare. The bootstrap
draws that each ``summary.json`` keeps are paired by index: draw ``i`` of both runs resamples the
same prompt numbers with the same seed — a paired bootstrap where both runs measured the same
prompts (a model and its fine-tuned version, fp32 and bf16), an independent one where they did
not. All rows of one comparison are tested together (:mod:`depthscope.verdict.differences`: Holm,
equivalence within ±``DEPTH_MARGIN``), so "the same" is claimed only inside the margin and a
difference only after the correction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from depthscope.verdict.bootstrap import interval_of
from depthscope.verdict.differences import DEPTH_MARGIN, Difference, compare_all


class Verdict(Protocol):
    """What a comparison reads of a verdict (:class:`depthscope.verdict.summary.Summary`)."""

    n_layers: int | None

    def finding(self, key: str): ...


@dataclass(frozen=True)
class Measured:
    """One verdict number of one run as a relative depth, with its bootstrap draws."""

    quantity: str  # "future output change" or "consensus transition"
    measure: str  # "effective depth" or "change point"
    value: float | None
    draws: np.ndarray | None
    disputed: bool = False  # a consensus whose indicators differ

    def shown(self) -> dict:
        doc = {"x": self.value, "low": None, "high": None, "disputed": self.disputed}
        if self.draws is not None:
            interval = interval_of(self.value, self.draws)
            doc.update({"low": interval.low, "high": interval.high})
        return doc


def _array(values, scale: float) -> np.ndarray | None:
    if not values:
        return None
    return np.array([np.nan if v is None else float(v) / scale for v in values])


def measured(summary: Verdict) -> dict[tuple[str, str], Measured]:
    """Every comparable number of a run's verdict: each indicator's effective depth and change
    point, and the consensus transition."""
    finding = summary.finding("transition")
    if finding is None or not summary.n_layers:
        return {}
    n = summary.n_layers
    out: dict[tuple[str, str], Measured] = {}
    for name, entry in finding.details.get("profiles", {}).items():
        draws = entry.get("draws") or {}
        depth = entry.get("effective_depth") or {}
        out[(name, "effective depth")] = Measured(
            name, "effective depth", depth.get("value"), _array(draws.get("effective_depth"), 1)
        )
        layer = entry.get("layer")
        out[(name, "change point")] = Measured(
            name,
            "change point",
            None if layer is None else layer / n,
            _array(draws.get("split"), n),
        )
    consensus = finding.details.get("consensus") or {}
    layer = consensus.get("layer")
    out[("consensus transition", "change point")] = Measured(
        "consensus transition",
        "change point",
        None if layer is None else layer / n,
        _array(consensus.get("draws"), n),
        disputed=consensus.get("agreed") is False,
    )
    return out


def _verdict(difference: Difference, labels: tuple[str, str]) -> str:
    first, second = labels
    outcome = difference.outcome
    if outcome == "differ":
        # the difference is second − first: positive means later in the second run
        return f"later in {second}" if difference.value > 0 else f"later in {first}"
    if outcome == "equivalent":
        return f"the same within ±{difference.margin:g}"
    return "inconclusive at these prompt counts"


def compare_summaries(a: Verdict, b: Verdict, labels: tuple[str, str]) -> list[dict]:
    """One row per number both verdicts hold (effective depths, then change points), tested
    together: the difference ``b − a`` with its interval, Holm-corrected p-value and outcome."""
    first, second = measured(a), measured(b)
    keys = [k for k in first if k in second]
    keys.sort(key=lambda k: (k[1] != "effective depth", k[0] != "consensus transition"))
    testable = {}
    rows = []
    for key in keys:
        x, y = first[key], second[key]
        row = {
            "quantity": key[0],
            "measure": key[1],
            "runs": list(labels),
            labels[0]: x.shown(),
            labels[1]: y.shown(),
        }
        if x.value is None or y.value is None:
            missing = (
                "either"
                if x.value is None and y.value is None
                else (labels[0] if x.value is None else labels[1])
            )
            row.update({"verdict": f"no {key[1]} in {missing}", "difference": None})
        elif x.draws is None or y.draws is None:
            row.update(
                {
                    "verdict": "no interval (results saved without per-prompt data)",
                    "difference": None,
                }
            )
        else:
            testable[" | ".join(key)] = (x.value, y.value, x.draws, y.draws)
        rows.append(row)
    tested = compare_all(testable, margin=DEPTH_MARGIN, unit="relative depth")
    for row in rows:
        name = f"{row['quantity']} | {row['measure']}"
        if name in tested:
            row["difference"] = tested[name].as_json()
            row["verdict"] = _verdict(tested[name], labels)
    return rows


def row_line(row: dict) -> str:
    """``future output change, effective depth: A 0.36 [0.35, 0.37] vs B 0.30 [...]: later in A
    (−0.06 [−0.08, −0.04] relative depth, Holm p = 0.002)``."""

    def shown(label: str) -> str:
        c = row[label]
        if c["x"] is None:
            return f"{label} none"
        where = f"{label} {c['x']:.2f}"
        if c["low"] is not None:
            where += f" [{c['low']:.2f}, {c['high']:.2f}]"
        return where + (" (its indicators disagree)" if c.get("disputed") else "")

    a, b = row["runs"]
    text = f"{row['quantity']}, {row['measure']}: {shown(a)} vs {shown(b)}: {row['verdict']}"
    difference = row.get("difference")
    interval = (difference or {}).get("interval") or {}
    if difference and difference.get("difference") is not None and interval.get("low") is not None:
        text += (
            f" ({b} − {a}: {difference['difference']:+.2f} [{interval['low']:+.2f}, "
            f"{interval['high']:+.2f}], Holm p = {difference['p_adjusted']:.3f})"
        )
    return text
