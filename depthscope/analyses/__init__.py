"""The paper's analyses, one card each; importing this package registers them in ``REGISTRY``."""

from depthscope.analyses import (  # noqa: F401  (imported for registration)
    contributions,
    depth_score,
    effects,
    erasure,
    igrad,
    linear_map,
    local_effects,
    logit_lens,
)
from depthscope.analyses.base import (
    REGISTRY,
    Analysis,
    Card,
    PaperRef,
    RunOptions,
    analysis_class,
    card,
    default_run,
    paper_order,
    register,
    runnable,
)

__all__ = [
    "REGISTRY",
    "Analysis",
    "Card",
    "PaperRef",
    "RunOptions",
    "analysis_class",
    "card",
    "default_run",
    "paper_order",
    "register",
    "runnable",
]
