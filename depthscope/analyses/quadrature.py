"""Quadrature on [0, 1] for integrated gradients (paper E7): fixed rules and adaptive panels.

Integrated gradients integrate ``g(r) = dF(x_r)/dr``, split over positions, along the straight
path ``x_r = x' + r(x − x')``. The integral of ``g`` over any piece ``[a, b]`` of the path is known
exactly: ``F(x_b) − F(x_a)`` (completeness), and every gradient evaluation yields ``F`` as well. So
a panel's quadrature error is *measured*, not estimated: ``|Σ_p Q_[a,b][p] − (F(b) − F(a))|``.
:func:`adaptive_panels` halves the panels whose measured error is large until the errors sum to at
most the tolerance, which bounds the completeness gap of the whole integral. On the built-in
models ``F(x_r)`` can jump within 1 % of the path (a softmax saturating), where a global rule of
any order needs hundreds of nodes; the panels find the jump and spend their nodes there.

Fixed rules (:func:`quadrature`): ``riemann`` (the paper's left sum ``r = i/N``), ``trapezoid``
and ``simpson`` (composite, N intervals, both ends included) and ``gauss`` (Gauss–Legendre, N
nodes). Panels (:data:`PANELS`): trapezoid (2 nodes, the ends), Simpson (3 nodes: ends and
middle; halving reuses all three) and 4-node Gauss–Legendre (interior nodes; the ends cost a
forward pass each for ``F``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

RULES = ("riemann", "trapezoid", "simpson", "gauss")
# When adaptive panels stop: ``bound`` once the panel errors' magnitudes sum to at most the
# tolerance (no cancellation can hide an error), ``gap`` once the completeness gap itself, their
# signed sum, is (the paper's accuracy measure; cheaper, but errors of opposite sign can cancel).
STOPS = ("bound", "gap")
# Each refinement round halves the panels whose measured error is at least this fraction of the
# largest one (and above their share of the tolerance): nearly greedy, but batched.
SPLIT_SHARE = 0.5


@dataclass(frozen=True)
class Quadrature:
    """``∫_0^1 g(r) dr ≈ Σ_i weights[i]·g(nodes[i]) / divisor`` (weights None: all 1)."""

    nodes: torch.Tensor  # float32 ratios r
    weights: torch.Tensor | None
    divisor: float


def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of n-point Gauss–Legendre on [0, 1]."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return (nodes + 1) / 2, weights / 2


def quadrature(rule: str, steps: int) -> Quadrature:
    """``rule`` with ``steps`` steps: intervals (riemann, trapezoid, simpson) or nodes (gauss)."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    if rule == "riemann":  # r = i/N exactly as the paper (and as depthscope always computed it)
        return Quadrature(torch.arange(steps, dtype=torch.float32) / steps, None, float(steps))
    nodes = torch.arange(steps + 1, dtype=torch.float32) / steps
    if rule == "trapezoid":
        weights = torch.ones(steps + 1)
        weights[[0, -1]] = 0.5
        return Quadrature(nodes, weights, float(steps))
    if rule == "simpson":
        if steps % 2:
            raise ValueError("simpson needs an even number of steps")
        weights = torch.where(torch.arange(steps + 1) % 2 == 1, 4.0, 2.0)
        weights[[0, -1]] = 1.0
        return Quadrature(nodes, weights, 3.0 * steps)
    if rule == "gauss":
        gauss_nodes, gauss_weights = _gauss_legendre(steps)
        return Quadrature(
            torch.tensor(gauss_nodes, dtype=torch.float32),
            torch.tensor(gauss_weights, dtype=torch.float32),
            1.0,
        )
    raise ValueError(f"unknown quadrature rule {rule!r}; use one of {RULES}")


def midpoints(steps: int) -> torch.Tensor:
    """The nodes that refine a Riemann or trapezoid rule from ``steps`` to ``2·steps`` intervals."""
    return (2 * torch.arange(steps, dtype=torch.float32) + 1) / (2 * steps)


# --- adaptive panels -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelRule:
    """Nodes and weights on one panel scaled to [0, 1], and how many panels to start with."""

    nodes: tuple[float, ...]
    weights: tuple[float, ...]
    start_panels: int


_GAUSS4 = _gauss_legendre(4)
PANELS = {
    "trapezoid": PanelRule((0.0, 1.0), (0.5, 0.5), start_panels=8),
    "simpson": PanelRule((0.0, 0.5, 1.0), (1 / 6, 4 / 6, 1 / 6), start_panels=4),
    "gauss": PanelRule(tuple(_GAUSS4[0]), tuple(_GAUSS4[1]), start_panels=2),
}

# evaluate(ratios, gradients) -> (F at each ratio [n], per-position terms [n, T] or None).
# The terms are Σ_d ∂F/∂x_r[p, d]·(x[p, d] − x'[d]); gradients=False may skip them (forward only).
Evaluate = Callable[[list[float], bool], tuple[torch.Tensor, torch.Tensor | None]]


@dataclass
class PanelIntegral:
    """The adaptive integral and what it cost."""

    integral: torch.Tensor  # [T]: Σ over panels of the per-position integrals
    f_start: float  # F at r = 0
    f_end: float  # F at r = 1
    panels: int
    nodes: int  # gradient nodes in the final rule
    evaluations: int  # model evaluations spent: gradient nodes and forward-only ends
    error_bound: float  # Σ over panels of |Σ_p Q[p] − (F(b) − F(a))|, ≥ the completeness gap


class _Cache:
    """F and terms per ratio, so that nodes shared by panels are evaluated once."""

    def __init__(self, evaluate: Evaluate, f_end: float | None) -> None:
        self.evaluate = evaluate
        self.f: dict[float, float] = {} if f_end is None else {1.0: f_end}
        self.terms: dict[float, torch.Tensor] = {}
        self.evaluations = 0

    def fill(self, gradient_ratios: set[float], value_ratios: set[float]) -> None:
        need_grad = sorted(r for r in gradient_ratios if r not in self.terms)
        if need_grad:
            values, terms = self.evaluate(need_grad, True)
            for i, r in enumerate(need_grad):
                self.f[r] = float(values[i])
                self.terms[r] = terms[i]
            self.evaluations += len(need_grad)
        need_value = sorted(r for r in value_ratios if r not in self.f)
        if need_value:
            values, _ = self.evaluate(need_value, False)
            for i, r in enumerate(need_value):
                self.f[r] = float(values[i])
            self.evaluations += len(need_value)

    def missing(self, gradient_ratios: set[float], value_ratios: set[float]) -> int:
        grads = {r for r in gradient_ratios if r not in self.terms}
        return len(grads) + len({r for r in value_ratios if r not in self.f} - grads)


def _nodes(rule: PanelRule, a: float, b: float) -> list[float]:
    return [a + (b - a) * t for t in rule.nodes]


def adaptive_panels(
    evaluate: Evaluate,
    rule: str,
    tolerance: float,
    max_evaluations: int,
    f_end: float | None = None,
    stop: str = "bound",
) -> PanelIntegral:
    """Integrate ``g`` over [0, 1] on panels, halving those whose measured error is too large.

    Each round halves the panels whose error exceeds ``tolerance·(b − a)`` (their share of the
    tolerance) and is at least ``SPLIT_SHARE`` of the largest error, largest first, as long as
    the evaluations fit in ``max_evaluations``. ``stop="bound"``: refinement stops once the panel
    errors sum to at most ``tolerance``, which bounds the completeness gap (errors of opposite
    sign cannot hide); ``stop="gap"``: once the completeness gap (their signed sum) is at most
    ``tolerance``. ``f_end``: F at r = 1 when known already (the clean run), which saves an
    evaluation for Gauss panels.
    """
    if stop not in STOPS:
        raise ValueError(f"stop must be one of {STOPS}, got {stop!r}")
    panel_rule = PANELS[rule]
    cache = _Cache(evaluate, f_end)
    count = panel_rule.start_panels
    panels = [(i / count, (i + 1) / count) for i in range(count)]

    def needs(chosen: list[tuple[float, float]]) -> tuple[set[float], set[float]]:
        grads = {r for a, b in chosen for r in _nodes(panel_rule, a, b)}
        return grads, {r for a, b in chosen for r in (a, b)}

    cache.fill(*needs(panels))
    while True:
        sums = [_panel_sum(cache, panel_rule, a, b) for a, b in panels]
        signed = [
            float(s.sum()) - (cache.f[b] - cache.f[a])
            for s, (a, b) in zip(sums, panels, strict=True)
        ]
        errors = [abs(e) for e in signed]
        if (sum(errors) if stop == "bound" else abs(sum(signed))) <= tolerance:
            break
        over = [i for i, (a, b) in enumerate(panels) if errors[i] > tolerance * (b - a)]
        over.sort(key=lambda i: -errors[i])  # not empty: the errors sum to more than tolerance
        split: list[int] = []
        for i in over:
            if errors[i] < SPLIT_SHARE * errors[over[0]]:
                break
            planned = [half for j in [*split, i] for half in _halves(panels[j])]
            if cache.evaluations + cache.missing(*needs(planned)) > max_evaluations:
                continue
            split.append(i)
        if not split:
            break
        panels = [
            half
            for i, panel in enumerate(panels)
            for half in (_halves(panel) if i in split else [panel])
        ]
        cache.fill(*needs(panels))
    grads, _ = needs(panels)
    return PanelIntegral(
        integral=torch.stack(sums).sum(dim=0),
        f_start=cache.f[0.0],
        f_end=cache.f[1.0],
        panels=len(panels),
        nodes=len(grads),
        evaluations=cache.evaluations,
        error_bound=sum(errors),
    )


def _halves(panel: tuple[float, float]) -> list[tuple[float, float]]:
    a, b = panel
    return [(a, (a + b) / 2), ((a + b) / 2, b)]


def _panel_sum(cache: _Cache, rule: PanelRule, a: float, b: float) -> torch.Tensor:
    """Per-position quadrature of ``g`` over ``[a, b]``."""
    return (b - a) * sum(
        w * cache.terms[r] for w, r in zip(rule.weights, _nodes(rule, a, b), strict=True)
    )
