"""What the trained model shows beyond the same architecture with random weights.

``depthscope analyze MODEL --reference random-init`` also runs the analyses on
``random-init:SEED:MODEL`` (the architecture with freshly initialised weights, the family's own
initialiser, seeded) with the same prompts and settings, into ``DIR/reference-random-init``. A
profile shape that random weights produce too — residual growth alone makes relative
contributions fall with depth — is a property of the architecture, not of what training learned.
The verdict then compares the two runs number by number (:mod:`depthscope.verdict.comparison`:
the same prompts and seed, so the bootstrap draws are paired) and says whether the random model
names a transition.
"""

from __future__ import annotations

from depthscope.analyses.card import Finding
from depthscope.core.run_folder import REFERENCE
from depthscope.verdict.comparison import compare_summaries, row_line
from depthscope.verdict.differences import DEPTH_MARGIN

TITLE = "Beyond random weights"


def finding(trained, random) -> Finding | None:
    """The trained verdict against the random-weight verdict (both :class:`Summary`)."""
    if random.finding("transition") is None or trained.finding("transition") is None:
        return None
    labels = ("random init", "trained")
    rows = compare_summaries(random, trained, labels)
    depth_rows = [r for r in rows if r["measure"] == "effective depth" and r.get("difference")]
    beyond = [r["quantity"] for r in depth_rows if r["difference"]["outcome"] == "differ"]
    same = [r["quantity"] for r in depth_rows if r["difference"]["outcome"] == "equivalent"]
    random_transition = random.finding("transition")
    names = (
        "no transition"
        if random_transition.layer is None
        else (f"a transition at layer {random_transition.layer}")
    )
    headline = f"{len(beyond)} of {len(depth_rows)} effective depths differ; random init: {names}"
    parts = [f"Random weights name {names} ({random_transition.headline})"]
    if beyond:
        parts.append(f"the trained model's effective depth differs in {', '.join(beyond)}")
    if same:
        parts.append(
            f"it is the same as with random weights (within ±{DEPTH_MARGIN:g}) in "
            f"{', '.join(same)}: "
            "there this number does not show what training changed"
        )
    return Finding(
        key="reference",
        title=TITLE,
        headline=headline,
        sentence="; ".join(parts) + ".",
        details={
            "reference": REFERENCE,
            "random_transition": random_transition.headline,
            "differences": rows,
            "lines": [row_line(r) for r in rows],
        },
        analyses=[],
    )
