"""Integrated gradients over (layer × token) (E7): which tokens matter at which depth.

Paper §3.5, Fig. 6a/c.
For every layer ``l`` and target activation (``layer``: the output ``h_{l+1}``; ``attention``:
``a_l``; ``mlp``: ``m_l``), the objective ``F`` = sum of the teacher-forced probabilities of the
answer tokens is attributed to the activation at every position by integrated gradients from the
baseline ``x'`` = the prompt's own position-mean of that activation:
``IG_l[p] = (1/N) Σ_r Σ_d ∂F/∂x_r[p,d] · (x[p,d] − x'[d])`` with ``x_r = x' + r(x − x')`` and
``r = 0, 1/N, …, (N−1)/N`` (left Riemann sum, as the paper). Steps run as batch rows of a replay
that starts right after (``layer``) or at (sublayers) layer ``l``; nothing before it is recomputed.
The completeness gap ``|Σ_p IG_l[p] − (F(x) − F(x'))|`` shows how well N steps approximate the
integral.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from depthscope.analyses.base import Analysis, PaperRef, PromptBatch, Tally, register
from depthscope.engine.interventions import Replace
from depthscope.engine.replay import replay
from depthscope.engine.state import state_type
from depthscope.engine.trace import Trace
from depthscope.figures.common import finite_max
from depthscope.figures.tokens import draw_igrad, igrad_targets, token_map_numbers
from depthscope.models.adapters import BoundAdapter

if TYPE_CHECKING:
    from depthscope.results import Result

TARGETS = ("layer", "attention", "mlp")
# A gap above this fraction of |F(x) − F(x')|, and above GAP_FLOOR in probability, means N steps are
# too few for that layer: the user is told once per prompt and target, with the fix.
GAP_WARNING = 0.05
GAP_FLOOR = 0.01


@dataclass
class IGSettings:
    steps: int = field(
        default=256, metadata={"help": "interpolation steps (paper: 256, left Riemann)"}
    )
    block: int = field(
        default=16, metadata={"help": "interpolation steps run together as batch rows"}
    )
    targets: tuple = field(default=TARGETS, metadata={"help": "layer, attention, mlp"})

    def __post_init__(self) -> None:
        if self.steps < 1 or self.block < 1:
            raise ValueError("steps and block must be >= 1")
        unknown = set(self.targets) - set(TARGETS)
        if unknown:
            raise ValueError(f"targets must be among {TARGETS}, got {sorted(unknown)}")


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


def integrated_gradients(
    adapter: BoundAdapter,
    trace: Trace,
    row: int,
    length: int,
    answer_length: int,
    target: str,
    layer: int,
    steps: int,
    block: int,
) -> tuple[torch.Tensor, float, float]:
    """``(IG[T], F(x), F(x'))`` for one prompt, target and layer."""
    n_layers = trace.n_layers
    answer_ids = trace.input_ids[row, length - answer_length : length]
    first = length - answer_length - 1
    x = clean_activation(trace, target, layer, row).float()  # [S, d] (S = padded length)
    baseline = x[:length].mean(dim=0, keepdim=True)
    delta = torch.zeros_like(x)
    delta[:length] = x[:length] - baseline
    grad_sum = torch.zeros_like(x)
    f_base = f_input = None
    for start in range(0, steps, block):
        ratios = (
            torch.arange(start, min(start + block, steps), device=x.device, dtype=x.dtype) / steps
        )
        n = int(ratios.numel())
        interpolated = (x - delta).unsqueeze(0) + ratios[:, None, None] * delta.unsqueeze(0)
        interpolated = interpolated.to(trace.resid.dtype).requires_grad_(True)
        with torch.enable_grad():
            if target == "layer":
                finals = replay(adapter, trace, row, [layer + 1] * n, resid=interpolated)
            else:
                layers = torch.full((n,), layer, dtype=torch.long, device=x.device)
                edit = Replace(site=target, layers=layers, values=interpolated)
                finals = replay(adapter, trace, row, layers, intervention=edit)
            objective = answer_objective(adapter, finals, answer_ids, first)
            (grad,) = torch.autograd.grad(objective.sum(), interpolated)
        grad_sum += grad.float().sum(dim=0)
        if start == 0:
            f_base = float(objective[0].detach())
    with torch.no_grad():
        final = trace.resid[n_layers, row].unsqueeze(0)
        f_input = float(answer_objective(adapter, final, answer_ids, first)[0])
    attribution = (grad_sum * delta).sum(dim=-1)[:length] / steps
    return attribution, f_input, f_base


def coarse_integral_warning(
    gaps: list[float], f_input: float, f_bases: list[float], steps: int
) -> str | None:
    """Why and where ``steps`` is too coarse (the worst layer), or ``None`` when every gap is small."""
    coarse = [
        (gap, layer)
        for layer, (gap, f_base) in enumerate(zip(gaps, f_bases, strict=True))
        if gap > GAP_FLOOR and gap > GAP_WARNING * abs(f_input - f_base)
    ]
    if not coarse:
        return None
    gap, layer = max(coarse)
    return (
        f"completeness gap {gap:.3g} at layer {layer} (F(x) − F(x') = {f_input - f_bases[layer]:.3g}); "
        f"{steps} steps are too few there, rerun with --set steps={4 * steps} for a closer integral"
    )


@state_type
@dataclass
class IGState:
    prompts: list = field(default_factory=list)  # per prompt: tokens and, per target, the maps
    tally: Tally = field(default_factory=Tally)


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
    captions = {
        "": "Column = input token, row = layer; colour = that token's share (signed) of the "
        "answer's probability, attributed at the layer's output. Where columns fade, deeper layers "
        "no longer use the token; red labels are the answer.",
    }

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
            }
            for target in s.targets:
                rows, gaps, f_inputs, f_bases = [], [], [], []
                for layer in range(trace.n_layers):
                    ig, f_input, f_base = integrated_gradients(
                        self.lm.adapter, trace, row, length, alen, target, layer, s.steps, s.block
                    )
                    rows.append(ig.cpu())
                    gaps.append(abs(float(ig.sum()) - (f_input - f_base)))
                    f_inputs.append(f_input)
                    f_bases.append(f_base)
                    self.options.progress.advance(1)
                entry[target] = {
                    "attribution": torch.stack(rows),
                    "completeness_gap": gaps,
                    "f_input": f_inputs[0],
                    "f_baseline": f_bases,
                }
            state.prompts.append(entry)

    def finish(self, state: IGState) -> dict:
        self.require_some(state, "use prompts with answers (e.g. --data builtin:paper)")
        prompts = sorted(state.prompts, key=lambda e: e["prompt"])
        data: dict = {
            "prompts": [e["prompt"] for e in prompts],
            "tokens": [e["tokens"] for e in prompts],
            "answer_tokens": [e["answer_tokens"] for e in prompts],
            "skipped_prompts": state.tally.skipped_ids,
        }
        for target in self.settings.targets:
            self._warn_if_coarse(prompts, target)
            block = {
                "attribution": [e[target]["attribution"] for e in prompts],
                "completeness_gap": [e[target]["completeness_gap"] for e in prompts],
                "f_input": [e[target]["f_input"] for e in prompts],
                "f_baseline": [e[target]["f_baseline"] for e in prompts],
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
            warning = coarse_integral_warning(
                result["completeness_gap"],
                result["f_input"],
                result["f_baseline"],
                self.settings.steps,
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
