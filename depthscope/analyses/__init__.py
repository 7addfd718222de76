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
from depthscope.results import PAPER_ORDER

__all__ = ["PAPER_ORDER", "REGISTRY", "Analysis", "RunOptions"]
