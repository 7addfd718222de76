"""How one saved result is drawn: the paper's plot style and one drawer per kind of figure.

Drawers take a :class:`~depthscope.core.result.Result` and return ``{what: Figure}``; they never see
live tensors, so every figure can be redrawn from disk. Analysis cards name their drawer; the
report layer decides where files go.
"""
