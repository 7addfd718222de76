"""Mergeable statistics: results are identical whether prompts run one by one, batched or sharded."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Mean:
    """Running sum and count (float64), so means over any split of the data agree exactly."""

    total: torch.Tensor | None = None
    count: torch.Tensor | float = 0.0

    def add(self, values: torch.Tensor, weight: torch.Tensor | float = 1.0) -> None:
        """Add ``values`` (already summed over the items they stand for) with ``weight`` items."""
        values = values.detach().to("cpu", torch.float64)
        self.total = values if self.total is None else self.total + values
        self.count = self.count + (
            weight.detach().cpu().double() if torch.is_tensor(weight) else weight
        )

    def merge(self, other: Mean) -> None:
        if other.total is not None:
            self.add(other.total, other.count)

    @property
    def value(self) -> torch.Tensor:
        if self.total is None:
            raise ValueError("no values were added")
        return self.total / self.count


@dataclass
class Max:
    """Running elementwise maximum."""

    current: torch.Tensor | None = field(default=None)

    def add(self, values: torch.Tensor) -> None:
        values = values.detach().to("cpu", torch.float64)
        self.current = values if self.current is None else torch.maximum(self.current, values)

    def merge(self, other: Max) -> None:
        if other.current is not None:
            self.add(other.current)

    @property
    def value(self) -> torch.Tensor:
        if self.current is None:
            raise ValueError("no values were added")
        return self.current


def masked_max(values: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Max over ``dim`` counting only ``mask`` entries; 0 where nothing is selected."""
    filled = values.masked_fill(~mask, float("-inf"))
    result = filled.amax(dim=dim)
    return torch.where(torch.isinf(result), torch.zeros_like(result), result)


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Sum over ``dim`` counting only ``mask`` entries (a NaN outside the mask does not leak)."""
    return torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum(
        dim=dim
    )


def safe_ratio(
    numerator: torch.Tensor, denominator: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """``numerator / max(denominator, eps)``: the paper's clamp for norm ratios."""
    return numerator / denominator.clamp_min(eps)


def relative_change(
    recomputed: torch.Tensor, clean: torch.Tensor, clean_norm: torch.Tensor | None = None
) -> torch.Tensor:
    """``‖c̄ − c‖ / max(‖c‖, 1e-6)`` per position: how much an intervention changed a vector.

    The paper's measure of a layer's changed computation (§3.2, Fig. 3): ``c`` is the layer's clean
    contribution, ``c̄`` the one after the intervention. ``clean_norm`` may be passed precomputed.
    """
    norm = clean.norm(dim=-1) if clean_norm is None else clean_norm
    return safe_ratio((recomputed - clean).norm(dim=-1), norm)


# ---------------------------------------------------------------- NaN-safe summaries of saved numbers


def finite(values: object) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


def finite_max(values: object, default: float = float("nan")) -> float:
    """Max over finite entries (``default`` if none): NaN-safe without numpy's warnings."""
    array = finite(values)
    return float(array.max()) if array.size else default


def finite_min(values: object, default: float = float("nan")) -> float:
    array = finite(values)
    return float(array.min()) if array.size else default


def finite_mean(values: object, default: float = float("nan")) -> float:
    array = finite(values)
    return float(array.mean()) if array.size else default


def first_vs_second_half(values: object) -> tuple[float, float]:
    """Mean of the first and second half (NaN-aware; an odd middle goes to the second half)."""
    array = np.asarray(values, dtype=float)
    half = len(array) // 2
    return finite_mean(array[:half]), finite_mean(array[half:])


def share_above(values: object, cap: float) -> float:
    """Fraction of the finite entries of ``values`` above ``cap``."""
    array = finite(values)
    return float((array > cap).mean()) if array.size else 0.0
