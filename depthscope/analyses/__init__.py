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

PLUGIN_GROUP = "depthscope.analyses"


def load_plugins() -> list[str]:
    """Import the analyses other packages declare under the ``depthscope.analyses`` entry point.

    A plugin that fails to import is reported on one line and skipped; the built-in analyses work.
    """
    import sys
    from importlib.metadata import entry_points

    loaded = []
    for entry in entry_points(group=PLUGIN_GROUP):
        try:
            entry.load()
            loaded.append(entry.name)
        except Exception as exc:  # a broken plugin must not break depthscope
            print(
                f"depthscope: warning: analysis plugin {entry.name!r} ({entry.value}) could not be "
                f"loaded: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
    return loaded


load_plugins()

__all__ = [
    "PLUGIN_GROUP",
    "load_plugins",
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
