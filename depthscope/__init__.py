"""depthscope: measure how a language model uses its depth.

    import depthscope as ds
    lm = ds.load_model("smollm2-135m")
    result = ds.analyze(lm, "future-effects", "The capital of France is Paris. The capital of")
    result.plot()

Names are imported on first use, so ``import depthscope`` is cheap and the command line starts fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "load_model": "depthscope.models.loading.loader",
    "LoadedModel": "depthscope.models.loading.loader",
    "Adapter": "depthscope.models.adapters",
    "register_adapter": "depthscope.models.adapters",
    "analyze": "depthscope.api",
    "trace": "depthscope.api",
    "Result": "depthscope.core.result",
    "Example": "depthscope.data.example",
    "PromptSet": "depthscope.data.prompts",
    "load_examples": "depthscope.data.sources",
    "replay": "depthscope.engine.replay",
    "Knockout": "depthscope.engine.interventions",
    "RemoveContribution": "depthscope.engine.interventions",
    "Replace": "depthscope.engine.interventions",
    "Analysis": "depthscope.analyses.base",
    "Card": "depthscope.analyses.base",
    "register": "depthscope.core.registry",
    "fit_linear_maps": "depthscope.experiments.maps.fit_maps",
    "DepthscopeError": "depthscope.core.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'depthscope' has no attribute {name!r}")
    if name in {"Analysis", "Card", "register"}:
        importlib.import_module("depthscope.analyses")  # the built-in cards are registered too
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
