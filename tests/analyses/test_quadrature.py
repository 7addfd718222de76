"""Quadrature rules and adaptive panels for integrated gradients, on functions known in closed form.

The model is replaced by an evaluator of ``F(r)`` and its derivative split over two "positions",
so exactness, the measured panel errors, node reuse and the evaluation budget can be checked
against exact integrals.
"""

from __future__ import annotations

import math

import pytest
import torch

from depthscope.analyses.quadrature import (
    PANELS,
    adaptive_panels,
    midpoints,
    quadrature,
)

SHARES = torch.tensor([0.3, 0.7])  # how dF/dr splits over two positions


class Recorder:
    """Evaluates ``F`` and ``F' · SHARES`` at ratios, remembering every call."""

    def __init__(self, f, df) -> None:
        self.f, self.df = f, df
        self.gradient_ratios: list[float] = []
        self.value_ratios: list[float] = []

    def __call__(self, ratios, gradients):
        (self.gradient_ratios if gradients else self.value_ratios).extend(ratios)
        values = torch.tensor([self.f(r) for r in ratios], dtype=torch.float64)
        if not gradients:
            return values, None
        slopes = torch.tensor([self.df(r) for r in ratios], dtype=torch.float64)
        return values, slopes[:, None] * SHARES.double()


def sigmoid_step(centre: float, sharpness: float) -> Recorder:
    """F jumps by 0.5 within about 1/sharpness of ``centre`` (a saturating softmax)."""

    def sigmoid(r):
        return 0.5 * (1 + math.tanh(sharpness * (r - centre) / 2))

    def f(r):
        return 0.5 * sigmoid(r) + 0.1 * r

    def df(r):
        return 0.5 * sharpness * sigmoid(r) * (1 - sigmoid(r)) + 0.1

    return Recorder(f, df)


def test_fixed_rules_are_exact_where_their_order_says():
    for n in (1, 3, 8):  # Gauss–Legendre with n nodes integrates r^(2n−1) exactly
        quad = quadrature("gauss", n)
        value = (quad.weights.double() * quad.nodes.double() ** (2 * n - 1)).sum() / quad.divisor
        assert float(value) == pytest.approx(1 / (2 * n), rel=1e-5)
        assert torch.all((quad.nodes > 0) & (quad.nodes < 1))
    trap = quadrature("trapezoid", 4)  # exact for linear functions, both ends included
    assert trap.nodes.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert float((trap.weights * (3 * trap.nodes + 1)).sum() / trap.divisor) == pytest.approx(2.5)
    simpson = quadrature("simpson", 4)  # exact for cubics
    cubic = (simpson.weights.double() * simpson.nodes.double() ** 3).sum() / simpson.divisor
    assert float(cubic) == pytest.approx(0.25, rel=1e-12)
    riemann = quadrature("riemann", 4)  # the paper's left sum: r = 0 in, r = 1 out
    assert riemann.nodes.tolist() == [0, 0.25, 0.5, 0.75] and riemann.weights is None
    for rule in ("riemann", "trapezoid"):  # doubling adds exactly the midpoints: nested
        coarse, fine = quadrature(rule, 4).nodes.tolist(), quadrature(rule, 8).nodes.tolist()
        assert sorted(coarse + midpoints(4).tolist()) == fine
    with pytest.raises(ValueError, match="even"):
        quadrature("simpson", 3)


@pytest.mark.parametrize("rule", sorted(PANELS))
def test_panels_find_a_jump_and_bound_the_gap(rule):
    step = sigmoid_step(centre=0.13, sharpness=3000.0)  # narrower than a 1/256 step
    exact = step.f(1.0) - step.f(0.0)
    found = adaptive_panels(step, rule, tolerance=1e-4, max_evaluations=400, f_end=step.f(1.0))
    total = float(found.integral.sum())
    assert abs(total - exact) <= found.error_bound <= 1e-4
    assert torch.allclose(found.integral, exact * SHARES.double(), atol=1e-4)
    assert found.evaluations <= 400 and found.f_start == step.f(0.0)
    near = [r for r in step.gradient_ratios if abs(r - 0.13) < 0.05]
    assert len(near) > len(step.gradient_ratios) / 2, "nodes concentrate around the jump"
    # the paper's 256-step left Riemann sum is far off on the same function
    paper = sum(step.df(i / 256) for i in range(256)) / 256
    assert abs(paper - exact) > 100 * abs(total - exact)


@pytest.mark.parametrize("rule", sorted(PANELS))
def test_panels_evaluate_every_ratio_once_and_respect_the_budget(rule):
    step = sigmoid_step(centre=0.61, sharpness=2000.0)
    found = adaptive_panels(step, rule, tolerance=1e-9, max_evaluations=60, f_end=step.f(1.0))
    assert len(step.gradient_ratios) == len(set(step.gradient_ratios))
    assert not set(step.value_ratios) & set(step.gradient_ratios)
    assert 1.0 not in step.value_ratios  # F(1) was given
    assert found.evaluations == len(step.gradient_ratios) + len(step.value_ratios) <= 60
    assert found.error_bound > 1e-9  # the budget, not the tolerance, stopped it


def test_simpson_panels_stop_at_once_on_a_cubic():
    cubic = Recorder(lambda r: r**4 / 4 + r, lambda r: r**3 + 1)  # F' cubic: Simpson is exact
    found = adaptive_panels(cubic, "simpson", tolerance=1e-12, max_evaluations=100)
    assert found.evaluations == found.nodes == 9 and found.panels == 4  # the start, no refinement
    assert found.error_bound < 1e-12
    assert cubic.value_ratios == []  # Simpson panels get F at their ends from the gradient runs


def test_gauss_panels_pay_for_their_ends_with_forward_passes():
    cubic = Recorder(lambda r: r**4 / 4 + r, lambda r: r**3 + 1)
    found = adaptive_panels(cubic, "gauss", tolerance=1e-12, max_evaluations=100, f_end=1.25)
    assert sorted(cubic.value_ratios) == [0.0, 0.5]  # r = 1 given, the rest forward-only
    assert found.nodes == 8 and found.evaluations == 10


class UpAndDown:
    """F steps up at r = 0.13 through position 0 and back down at r = 0.63 through position 1:
    the same jump at the same place of two starting Simpson panels, so their errors are equal and
    opposite, while each position's integral (+0.5 and −0.5) is off by that error."""

    SHARPNESS = 3000.0

    @classmethod
    def step(cls, r: float, centre: float) -> tuple[float, float]:
        t = math.tanh(cls.SHARPNESS * (r - centre) / 2)
        return 0.25 * (1 + t), 0.25 * cls.SHARPNESS * (1 - t * t) / 2  # F and dF/dr

    def __call__(self, ratios, gradients):
        up = [self.step(r, 0.13) for r in ratios]
        down = [self.step(r, 0.63) for r in ratios]
        values = torch.tensor(
            [u[0] - d[0] for u, d in zip(up, down, strict=True)], dtype=torch.float64
        )
        terms = torch.tensor(
            [[u[1], -d[1]] for u, d in zip(up, down, strict=True)], dtype=torch.float64
        )
        return values, terms if gradients else None


def test_gap_stop_meets_the_tolerance_on_the_gap_at_no_more_cost():
    """``stop="gap"`` stops once the completeness gap itself is small, never later than ``bound``."""
    for centre in (0.13, 0.61, 0.9):
        by_bound, by_gap = (
            adaptive_panels(
                sigmoid_step(centre, 2000.0), "simpson", 1e-4, 400, f_end=None, stop=stop
            )
            for stop in ("bound", "gap")
        )
        step = sigmoid_step(centre, 2000.0)
        exact = step.f(1.0) - step.f(0.0)
        assert abs(float(by_gap.integral.sum()) - exact) <= 1e-4
        assert by_gap.evaluations <= by_bound.evaluations
    with pytest.raises(ValueError, match="stop must be one of"):
        adaptive_panels(sigmoid_step(0.5, 10.0), "simpson", 1e-4, 100, stop="never")


def test_gap_stop_is_fooled_by_errors_that_cancel_and_bound_is_not():
    """Why ``bound`` is the default: two wrong panels whose errors cancel give a zero gap."""
    exact = torch.tensor([0.5, -0.5], dtype=torch.float64)  # each jump through its own position
    fooled = adaptive_panels(UpAndDown(), "simpson", 1e-6, 400, stop="gap")
    assert fooled.evaluations == 9  # the starting panels: their errors cancel
    assert abs(float(fooled.integral.sum())) <= 1e-6 < 0.1 < fooled.error_bound
    assert (fooled.integral - exact).abs().max() > 0.1  # yet each position is far off
    safe = adaptive_panels(UpAndDown(), "simpson", 1e-6, 400, stop="bound")
    assert safe.error_bound <= 1e-6 and safe.evaluations > 9
    assert torch.allclose(safe.integral, exact, atol=1e-5)
