"""The paper's analyses; importing this package registers them in ``REGISTRY``."""

from depthscope.analyses import (  # noqa: F401  (imported for registration)
    contributions,
    depth_score,
    effects,
    erasure,
    igrad,
    local_effects,
    logit_lens,
)
from depthscope.analyses.base import REGISTRY, Analysis, RunOptions

# The paper's order (E2..E9); the first five are what `--analyses all` runs.
PAPER_ORDER = (
    "contributions",
    "current-effects",
    "future-effects",
    "logit-lens",
    "local-effects",
    "igrad",
    "erasure",
    "depth-score",
)

__all__ = ["PAPER_ORDER", "REGISTRY", "Analysis", "RunOptions"]
