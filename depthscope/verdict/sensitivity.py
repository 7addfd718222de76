"""How a thresholded verdict number moves with its constant: a sweep over a documented range.

Every number the verdict gets from a threshold (layers used by future tokens, lens boundaries,
operand boundary, and the transition rule's level, step size, smoothness, parameter penalty and the null's ρ) is recomputed for
each value in :data:`RANGES` on the all-prompt profile. ``summary.json`` keeps the sweep beside the
number, the report draws it, and a reader sees whether the answer is a property of the model or
of the constant.
"""

from __future__ import annotations

from collections.abc import Callable

RANGES: dict[str, tuple[float, ...]] = {
    "alpha": (0.01, 0.02, 0.05, 0.1),
    "min_step": (0.1, 0.25, 0.4),
    "smooth_span": (0.25, 1 / 3, 0.5),
    "penalty": (0.0, 0.5, 1.0, 1.5),  # 0: the best fits by SSE alone (the earlier statistic)
    "rho_quantile": (0.3, 0.4, 0.5),
    "future_fraction": (0.3, 0.4, 0.5, 0.6, 0.7),
    "lens_overlap": (0.3, 0.4, 0.5, 0.6, 0.7),
    "lens_kl_fraction": (0.3, 0.4, 0.5, 0.6, 0.7),
    "token_share": (0.05, 0.1, 0.15, 0.2),
}


def sweep(
    constant: str, default: float, number: Callable[[float], float | None], label: str
) -> dict:
    """``number`` (a constant's value -> the verdict number, None: none) over the constant's range."""
    values = RANGES[constant]
    return {
        "constant": constant,
        "number": label,
        "default": default,
        "values": [round(v, 4) for v in values],
        "results": [number(v) for v in values],
    }
