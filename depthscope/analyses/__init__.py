"""The paper's analyses, one card each; importing this package registers them and loads plugins.

Other packages add analyses through the ``depthscope.analyses`` entry point
(:mod:`depthscope.core.registry`); a plugin that fails to import is reported on one line.
"""

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
from depthscope.analyses.base import Analysis, PromptBatch, RunOptions, Tally
from depthscope.analyses.card import Card, Finding, PaperRef, Preset, Profile, VerdictRule, data_key
from depthscope.analyses.catalog import analysis_class, cards, default_run, paper_order, runnable
from depthscope.core.registry import ENTRY_POINT_GROUP as PLUGIN_GROUP
from depthscope.core.registry import card, register
from depthscope.core.registry import load_cards as load_plugins

load_plugins()

__all__ = [
    "PLUGIN_GROUP",
    "load_plugins",
    "Analysis",
    "Card",
    "Finding",
    "PaperRef",
    "Preset",
    "Profile",
    "PromptBatch",
    "RunOptions",
    "Tally",
    "VerdictRule",
    "data_key",
    "analysis_class",
    "card",
    "cards",
    "default_run",
    "paper_order",
    "register",
    "runnable",
]
