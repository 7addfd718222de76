"""Integrated gradients over (layer × token) (E7, Fig. 6a): which tokens matter where.

For every layer ``l`` and target activation (``layer``: the output ``h_{l+1}``; ``attention``:
``a_l``; ``mlp``: ``m_l``), the objective ``F`` = sum of the teacher-forced probabilities of the
answer tokens is attributed to the activation at every position by integrated gradients from the
baseline ``x'`` = the prompt's own position-mean of that activation:
``IG_l[p] = ∫_0^1 Σ_d ∂F/∂x_r[p,d] · (x[p,d] − x'[d]) dr`` with ``x_r = x' + r(x − x')``.
The paper approximates the integral by a left Riemann sum with N = 256 steps
(``r = 0, 1/N, …, (N−1)/N``); on a CPU that is too slow for every layer. The completeness gap
``|Σ_p IG_l[p] − (F(x) − F(x'))|`` is exactly the quadrature error of the 1-D integral of
``dF(x_r)/dr``, so it measures how good a rule is (rules in :mod:`depthscope.analyses.quadrature`).

``steps=N`` uses N steps of ``rule`` (riemann, trapezoid, simpson: N intervals; gauss: N
Gauss–Legendre nodes); with ``rule=auto`` that is the paper's Riemann sum, so ``--set steps=256``
alone reproduces the paper. ``steps=0`` (the default) is adaptive: Simpson panels (or the named
rule's panels) are halved where their measured error is large until the errors sum to at most
``tolerance`` — a bound on the completeness gap — or ``max_steps`` model evaluations are spent
(``stop=gap``: until the gap itself is, which is cheaper but lets errors of opposite sign cancel);
an adaptive ``riemann`` doubles N from ``START_STEPS`` instead. Steps run as batch rows of a
replay that starts right after (``layer``) or at (sublayers) layer ``l``; nothing before it is
recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from depthscope.analyses.base import Analysis, PromptBatch, Tally
from depthscope.analyses.card import Finding, PaperRef, Preset, VerdictRule
from depthscope.analyses.operands import operands_finding
from depthscope.analyses.quadrature import RULES as FIXED_RULES
from depthscope.analyses.quadrature import STOPS, adaptive_panels, midpoints, quadrature
from depthscope.core.registry import register
from depthscope.core.result import Result
from depthscope.engine.adaptive_batch import AdaptiveBatch, as_batches
from depthscope.engine.interventions import Replace
from depthscope.engine.replay import replay
from depthscope.engine.state import state_type
from depthscope.engine.stats import finite_max
from depthscope.engine.trace import Trace
from depthscope.figures.tokens import draw_igrad, igrad_targets, token_map_numbers
from depthscope.models.adapters import BoundAdapter

TARGETS = ("layer", "attention", "mlp")
Block = int | AdaptiveBatch  # steps per batch; an AdaptiveBatch halves it when memory runs out
RULES = ("auto", *FIXED_RULES)
DEFAULT_ADAPTIVE_RULE = "simpson"
START_STEPS = 8  # adaptive Riemann: the first step count, doubled until the gap is small enough
# A gap above this fraction of |F(x) − F(x')|, and above GAP_FLOOR in probability, means N steps are
# too few for that layer: the user is told once per prompt and target, with the fix.
GAP_WARNING = 0.05
GAP_FLOOR = 0.01


@dataclass
class IGSettings:
    rule: str = field(
        default="auto",
        metadata={
            "help": "auto (simpson when adaptive, riemann with steps=N), riemann, trapezoid, "
            "simpson, gauss (paper: riemann)"
        },
    )
    steps: int = field(
        default=0, metadata={"help": "0: adaptive panels; N: exactly N steps (paper: 256)"}
    )
    tolerance: float = field(
        default=0.005, metadata={"help": "adaptive: bound on the completeness gap (probability)"}
    )
    max_steps: int = field(
        default=256, metadata={"help": "adaptive: most model evaluations per (prompt, layer)"}
    )
    stop: str = field(
        default="bound",
        metadata={
            "help": "adaptive panels stop when the panel errors' magnitudes (bound: safe) or the "
            "completeness gap itself (gap: cheaper, errors may cancel) is <= tolerance"
        },
    )
    block: int = field(
        default=16, metadata={"help": "interpolation steps run together as batch rows"}
    )
    targets: tuple = field(default=TARGETS, metadata={"help": "layer, attention, mlp"})

    def __post_init__(self) -> None:
        if self.steps < 0 or self.block < 1:
            raise ValueError("steps must be >= 0 (0 = adaptive) and block >= 1")
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")
        if self.tolerance < 0 or self.max_steps < 1:
            raise ValueError("tolerance must be >= 0 and max_steps >= 1")
        if self.stop not in STOPS:
            raise ValueError(f"stop must be one of {STOPS}, got {self.stop!r}")
        unknown = set(self.targets) - set(TARGETS)
        if unknown:
            raise ValueError(f"targets must be among {TARGETS}, got {sorted(unknown)}")

    @property
    def adaptive(self) -> bool:
        return self.steps == 0

    @property
    def quadrature_rule(self) -> str:
        """The rule actually used: ``auto`` resolved."""
        if self.rule != "auto":
            return self.rule
        return DEFAULT_ADAPTIVE_RULE if self.adaptive else "riemann"


# --- the numerical core ------------------------------------------------------------------------


def answer_objective(
    adapter: BoundAdapter, finals: torch.Tensor, answer_ids: torch.Tensor, first: int
) -> torch.Tensor:
    """F per row: summed probabilities of the answer tokens, predicted at ``first .. first+alen-1``."""
    positions = torch.arange(first, first + answer_ids.numel(), device=finals.device)
    probs = torch.softmax(adapter.logits(finals[:, positions]).float(), dim=-1)
    return probs[:, torch.arange(answer_ids.numel()), answer_ids].sum(-1)


def clean_activation(trace: Trace, target: str, layer: int, row: int) -> torch.Tensor:
    if target == "layer":
        return trace.resid[layer + 1, row]
    return (trace.attn if target == "attention" else trace.mlp)[layer, row]


@dataclass
class IGPath:
    """One prompt's straight path from the baseline to the activation at one target and layer."""

    adapter: BoundAdapter
    trace: Trace
    row: int
    length: int
    answer_length: int
    target: str
    layer: int

    def __post_init__(self) -> None:
        self.answer_ids = self.trace.input_ids[
            self.row, self.length - self.answer_length : self.length
        ]
        self.first = self.length - self.answer_length - 1
        x = clean_activation(self.trace, self.target, self.layer, self.row).float()  # [S, d]
        baseline = x[: self.length].mean(dim=0, keepdim=True)
        self.delta = torch.zeros_like(x)
        self.delta[: self.length] = x[: self.length] - baseline
        self.start = x - self.delta  # the baseline at valid positions, x on padding

    def _objective(self, ratios: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(F per ratio, the interpolated activations it was computed from)."""
        n = int(ratios.numel())
        interpolated = self.start.unsqueeze(0) + ratios[:, None, None] * self.delta.unsqueeze(0)
        interpolated = interpolated.to(self.trace.resid.dtype).requires_grad_(True)
        if self.target == "layer":
            finals = replay(
                self.adapter, self.trace, self.row, [self.layer + 1] * n, resid=interpolated
            )
        else:
            layers = torch.full((n,), self.layer, dtype=torch.long, device=ratios.device)
            edit = Replace(site=self.target, layers=layers, values=interpolated)
            finals = replay(self.adapter, self.trace, self.row, layers, intervention=edit)
        return answer_objective(self.adapter, finals, self.answer_ids, self.first), interpolated

    def gradient_sum(
        self, ratios: torch.Tensor, weights: torch.Tensor | None, block: Block
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Σ_i w_i ∂F/∂x_{r_i}`` as ``[S, d]``, ``F(x_{r_i})`` per node), ``block`` rows at a time."""
        device = self.delta.device
        ratios = ratios.to(device=device, dtype=self.delta.dtype)
        grad_sum = torch.zeros_like(self.delta)
        values = []

        def step(start: int, stop: int) -> None:
            with torch.enable_grad():
                objective, interpolated = self._objective(ratios[start:stop])
                (grad,) = torch.autograd.grad(objective.sum(), interpolated)
            grad = grad.float()
            if weights is not None:
                grad = grad * weights[start:stop].to(device)[:, None, None]
            grad_sum.add_(grad.sum(dim=0))
            values.append(objective.detach())

        as_batches(block).run(int(ratios.numel()), step)
        return grad_sum, torch.cat(values)

    def evaluate(
        self, ratios: list[float], gradients: bool, block: Block
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``F(x_r)`` per ratio and, with ``gradients``, the per-position terms
        ``Σ_d ∂F/∂x_r[p,d]·(x[p,d] − x'[d])`` as ``[n, T]``; ``block`` rows at a time."""
        device = self.delta.device
        ratios_t = torch.tensor(ratios, dtype=self.delta.dtype, device=device)
        values, terms = [], []

        def step(start: int, stop: int) -> None:
            chunk = ratios_t[start:stop]
            if not gradients:
                with torch.no_grad():
                    values.append(self._objective(chunk)[0])
                return
            with torch.enable_grad():
                objective, interpolated = self._objective(chunk)
                (grad,) = torch.autograd.grad(objective.sum(), interpolated)
            terms.append((grad.float() * self.delta).sum(dim=-1)[:, : self.length])
            values.append(objective.detach())

        as_batches(block).run(len(ratios), step)
        return torch.cat(values).cpu(), (torch.cat(terms).cpu() if gradients else None)

    def attribution(self, grad_sum: torch.Tensor, divisor: float) -> torch.Tensor:
        return (grad_sum * self.delta).sum(dim=-1)[: self.length] / divisor

    def f_input(self) -> float:
        with torch.no_grad():
            final = self.trace.resid[self.trace.n_layers, self.row].unsqueeze(0)
            return float(answer_objective(self.adapter, final, self.answer_ids, self.first)[0])

    def f_baseline(self) -> float:
        with torch.no_grad():
            zero = torch.zeros(1, device=self.delta.device, dtype=self.delta.dtype)
            return float(self._objective(zero)[0][0])


@dataclass
class IGResult:
    """IG of one prompt, target and layer, with what it cost."""

    attribution: torch.Tensor  # [T]
    f_input: float
    f_baseline: float
    steps: int  # steps (fixed rules) or gradient nodes (adaptive panels) of the rule kept
    evaluations: int  # model evaluations spent, refinements and F(x') included

    @property
    def gap(self) -> float:
        return abs(float(self.attribution.sum()) - (self.f_input - self.f_baseline))


def fixed_ig(path: IGPath, rule: str, steps: int, block: Block) -> IGResult:
    """IG with exactly ``steps`` steps of ``rule`` (riemann, 256: the paper's computation)."""
    return _fixed(path, rule, steps, block)[0]


def _fixed(path: IGPath, rule: str, steps: int, block: Block) -> tuple[IGResult, torch.Tensor]:
    """The result and its (weighted) gradient sum, which nested refinements extend."""
    quad = quadrature(rule, steps)
    grad_sum, values = path.gradient_sum(quad.nodes, quad.weights, block)
    evaluations = int(quad.nodes.numel())
    if rule == "gauss":  # no node at r = 0: F(x') costs one forward pass of its own
        f_base, evaluations = path.f_baseline(), evaluations + 1
    else:
        f_base = float(values[0])
    attribution = path.attribution(grad_sum, quad.divisor)
    return IGResult(attribution, path.f_input(), f_base, steps, evaluations), grad_sum


def adaptive_riemann(
    path: IGPath, tolerance: float, max_steps: int, block: Block, start: int = START_STEPS
) -> IGResult:
    """The paper's left sum with N doubled from ``start`` (reusing every node) until the
    completeness gap is at most ``tolerance`` or N would exceed ``max_steps``."""
    steps = min(start, max_steps)
    result, grad_sum = _fixed(path, "riemann", steps, block)
    while result.gap > tolerance and 2 * steps <= max_steps:
        more, _ = path.gradient_sum(midpoints(steps), None, block)
        grad_sum += more
        steps *= 2
        result.evaluations = steps
        result.attribution = path.attribution(grad_sum, float(steps))
        result.steps = steps
    return result


def panel_ig(
    path: IGPath, rule: str, tolerance: float, max_steps: int, block: Block, stop: str = "bound"
) -> IGResult:
    """Adaptive panels of ``rule`` (trapezoid, simpson, gauss): see :func:`adaptive_panels`."""
    f_input = path.f_input()
    found = adaptive_panels(
        lambda ratios, gradients: path.evaluate(ratios, gradients, block),
        rule,
        tolerance,
        max_steps,
        f_end=f_input,
        stop=stop,
    )
    return IGResult(found.integral, f_input, found.f_start, found.nodes, found.evaluations)


def adaptive_ig(
    path: IGPath, rule: str, tolerance: float, max_steps: int, block: Block, stop: str = "bound"
) -> IGResult:
    """IG refined until the completeness gap is at most ``tolerance`` (at most ``max_steps``
    model evaluations): doubling for ``riemann`` (which has one error, the gap), adaptive panels
    for the other rules, stopping on their error ``bound`` or on the ``gap``."""
    if rule == "riemann":
        return adaptive_riemann(path, tolerance, max_steps, block)
    return panel_ig(path, rule, tolerance, max_steps, block, stop)


def integrated_gradients(
    path: IGPath, settings: IGSettings, block: Block | None = None
) -> IGResult:
    """IG of one prompt, target and layer as ``settings`` ask (fixed or adaptive); ``block``
    (default ``settings.block``) may be a shared :class:`AdaptiveBatch` that halves on OOM."""
    rule = settings.quadrature_rule
    block = settings.block if block is None else block
    if settings.adaptive:
        return adaptive_ig(path, rule, settings.tolerance, settings.max_steps, block, settings.stop)
    return fixed_ig(path, rule, settings.steps, block)


def coarse_integral_warning(
    gaps: list[float], f_input: float, f_bases: list[float], steps: int, adaptive: bool = False
) -> str | None:
    """Why and where ``steps`` is too coarse (the worst layer), or ``None`` when every gap is small.

    ``adaptive``: ``steps`` is the ``max_steps`` an adaptive rule stopped at.
    """
    coarse = [
        (gap, layer)
        for layer, (gap, f_base) in enumerate(zip(gaps, f_bases, strict=True))
        if gap > GAP_FLOOR and gap > GAP_WARNING * abs(f_input - f_base)
    ]
    if not coarse:
        return None
    gap, layer = max(coarse)
    change = f"completeness gap {gap:.3g} at layer {layer} (F(x) − F(x') = {f_input - f_bases[layer]:.3g}); "
    if adaptive:
        return change + (
            f"even {steps} model evaluations are too few there, rerun with --set max_steps={4 * steps} "
            "for a closer integral"
        )
    return change + (
        f"{steps} steps are too few there, rerun with --set steps={4 * steps} for a closer integral"
    )


@state_type
@dataclass
class IGState:
    prompts: list = field(default_factory=list)  # per prompt: tokens and, per target, the maps
    tally: Tally = field(default_factory=Tally)


def operands(result: Result, n_layers: int | None) -> Finding:
    """Rows of the attribution maps are layer outputs (row ``r`` is boundary ``r + 1``)."""
    return operands_finding(
        result,
        n_layers,
        maps=list(result.data["attribution"]),
        row_offset=1,
        method="their integrated-gradient attribution",
        figure=f"{result.analysis}_layer_prompt{{}}",
    )


@register
class IntegratedGradients(Analysis):
    name = "igrad"
    title = "Integrated gradients over layers × tokens"
    description = "integrated gradients of the answer probability over layers × tokens (E7)"
    paper = PaperRef("E7", "§3.5", "Fig. 6a, 6c")
    Settings = IGSettings
    State = IGState
    default_data = "builtin:paper"  # the paper's two hand-written prompts; IG is costly per prompt
    requires_answer = True
    uses_paper_split = True
    # erasure measures the same boundary more directly: the verdict prefers it when both ran
    verdict = (VerdictRule("operands", "Operands stop mattering", operands, rank=1),)
    presets = {
        "paper": Preset(
            "builtin:paper",
            None,
            {"steps": "256", "block": "16", "rule": "riemann"},
            None,
            "§3.5: the two hand-written prompts, 256-step left Riemann sum",
        )
    }
    captions = {
        "": "Column = input token, row = layer; colour = that token's share (signed) of the "
        "answer's probability, attributed at the layer's output. Where columns fade, deeper layers "
        "no longer use the token; red labels are the answer.",
    }

    def __init__(self, lm, settings: IGSettings, options) -> None:
        super().__init__(lm, settings, options)
        # one step-block size for the whole run: halved once on out-of-memory, then kept
        self.blocks = AdaptiveBatch(settings.block, options.progress, what="--set igrad.block")

    def update(self, state: IGState, batch: PromptBatch) -> None:
        s = self.settings
        trace = batch.trace
        for prompt in self.prompts(state, batch):
            row, prompt_id, length, alen = (
                prompt.row,
                prompt.prompt_id,
                prompt.length,
                prompt.answer_length,
            )
            self.options.progress.start(
                f"{self.name} prompt {prompt_id}", len(s.targets) * trace.n_layers
            )
            entry = {
                "prompt": prompt_id,
                "tokens": batch.prompts.token_strings[prompt_id],
                "answer_tokens": alen,
                "split": prompt.split,
            }
            for target in s.targets:
                results = []
                for layer in range(trace.n_layers):
                    path = IGPath(self.lm.adapter, trace, row, length, alen, target, layer)
                    results.append(integrated_gradients(path, s, self.blocks))
                    self.options.progress.advance(1)
                entry[target] = {
                    "attribution": torch.stack([r.attribution.cpu() for r in results]),
                    "completeness_gap": [r.gap for r in results],
                    "f_input": results[0].f_input,
                    "f_baseline": [r.f_baseline for r in results],
                    "steps": [r.steps for r in results],
                    "evaluations": [r.evaluations for r in results],
                }
            state.prompts.append(entry)

    def finish(self, state: IGState) -> dict:
        self.require_some(state, "use prompts with answers (e.g. --data builtin:paper)")
        prompts = sorted(state.prompts, key=lambda e: e["prompt"])
        data: dict = {
            "prompts": [e["prompt"] for e in prompts],
            "tokens": [e["tokens"] for e in prompts],
            "answer_tokens": [e["answer_tokens"] for e in prompts],
            "splits": [e.get("split") for e in prompts],  # the paper's split: as-given or shifted
            "skipped_prompts": state.tally.skipped_ids,
            "rule": self.settings.quadrature_rule,  # auto resolved
            "adaptive": self.settings.adaptive,
        }
        for target in self.settings.targets:
            self._warn_if_coarse(prompts, target)
            block = {
                key: [e[target][key] for e in prompts]
                for key in (
                    "attribution",
                    "completeness_gap",
                    "f_input",
                    "f_baseline",
                    "steps",  # per prompt and layer: the rule's step count kept
                    "evaluations",  # per prompt and layer: model evaluations spent
                )
            }
            if target == "layer":
                data.update(block)
            else:
                data[target] = block
        return data

    def _warn_if_coarse(self, prompts: list[dict], target: str) -> None:
        """At the end, so that prompts restored from a checkpoint are checked too."""
        for entry in prompts:
            result = entry[target]
            settings = self.settings
            warning = coarse_integral_warning(
                result["completeness_gap"],
                result["f_input"],
                result["f_baseline"],
                settings.max_steps if settings.adaptive else settings.steps,
                adaptive=settings.adaptive,
            )
            if warning:
                self.options.progress.note(
                    f"igrad: prompt {entry['prompt']}, target {target}: {warning}"
                )

    @classmethod
    def draw(cls, result: Result):
        return draw_igrad(result)

    @classmethod
    def numbers(cls, result: Result) -> list[str]:
        targets = igrad_targets(result)
        if not targets:
            return []
        target, block = targets[0]
        lines = token_map_numbers(result, block["attribution"], "layer")
        if target != "layer":
            lines = [f"{line} (target: {target})" for line in lines]
        gaps, f_input = block.get("completeness_gap") or [], block.get("f_input") or []
        prompts = result.data.get("prompts") or list(range(len(gaps)))
        for index, gap in enumerate(gaps):
            worst = finite_max(np.abs(np.asarray(gap, dtype=float)))
            f_x = f" (F(x) = {f_input[index]:.3g})" if index < len(f_input) else ""
            lines.append(
                f"prompt {prompts[index]}: largest |F(x) − F(x') − ΣIG| over layers {worst:.3g}{f_x}"
            )
        return lines
