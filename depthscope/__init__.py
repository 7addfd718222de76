"""depthscope: measure how a language model uses its depth."""

__version__ = "0.1.0"
