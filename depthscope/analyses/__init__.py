"""The paper's analyses; importing this package registers them in ``REGISTRY`` (in run order)."""

from depthscope.analyses import contributions, effects, local_effects, logit_lens  # noqa: F401
from depthscope.analyses.base import REGISTRY, Analysis, RunOptions

__all__ = ["REGISTRY", "Analysis", "RunOptions"]
