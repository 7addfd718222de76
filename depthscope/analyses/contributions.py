"""Residual-stream norms, relative contributions and cosine similarities per layer (E2).

Paper §3.1, Fig. 2, 15, 16.
Per token and layer: ``‖a‖/‖h‖``, ``‖m‖/‖h+a‖``, ``‖a+m‖/‖h‖``, ``cos(a,h)``, ``cos(m,h+a)``,
``cos(a+m,h)``, ``cos(h_{l+1},h)`` and the norms of ``a``, ``m``, ``h``. Means are token-means over
every valid token of every prompt (mean of ratios); maxima are over the same tokens. On parallel
blocks the MLP reads ``h``, so it is measured against ``h``. Unlike the original code, mean norms
accumulate over all prompts (the original code kept only the last prompt's sums).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from depthscope.analyses.base import Analysis, PromptBatch, Tally
from depthscope.analyses.card import PaperRef, Preset, Profile, data_key, per_prompt_key
from depthscope.core.registry import register
from depthscope.core.result import Result
from depthscope.data.sources import DEFAULT_SOURCE, GSM8K
from depthscope.engine.state import state_type
from depthscope.engine.stats import (
    Max,
    Mean,
    finite_mean,
    first_vs_second_half,
    masked_max,
    safe_ratio,
)
from depthscope.figures.layers import draw_contributions

MEANS = (
    "rel_att",
    "rel_mlp",
    "rel_layer",
    "cos_att",
    "cos_mlp",
    "cos_layer",
    "cos_io",
    "norm_att",
    "norm_mlp",
    "norm_resid",
)
MAXES = ("rel_att", "rel_mlp", "rel_layer", "norm_att", "norm_mlp", "norm_resid")
PER_PROMPT = ("rel_layer", "cos_layer")  # kept per prompt: the verdict resamples prompts


@dataclass
class ContributionSettings:
    eps: float = field(
        default=1e-6, metadata={"help": "norm-ratio denominators are clamped at this (paper value)"}
    )

    def __post_init__(self) -> None:
        if not self.eps > 0:
            raise ValueError(f"eps must be a positive number, got {self.eps}")


@state_type
@dataclass
class ContributionState:
    means: dict = field(default_factory=lambda: {k: Mean() for k in MEANS})
    maxes: dict = field(default_factory=lambda: {k: Max() for k in MAXES})
    # per prompt: its token count and token-means of the transition indicators (resampling)
    per_prompt: list = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)


def layer_quantities(
    h: torch.Tensor, a: torch.Tensor, m: torch.Tensor, parallel: bool, eps: float
) -> dict:
    """Per-token quantities for one layer (inputs ``[..., d]``, outputs ``[...]``)."""
    h, a, m = h.float(), a.float(), m.float()
    mlp_base = h if parallel else h + a
    c = a + m
    norm_h = h.norm(dim=-1)
    return {
        "rel_att": safe_ratio(a.norm(dim=-1), norm_h, eps),
        "rel_mlp": safe_ratio(m.norm(dim=-1), mlp_base.norm(dim=-1), eps),
        "rel_layer": safe_ratio(c.norm(dim=-1), norm_h, eps),
        "cos_att": F.cosine_similarity(a, h, dim=-1),
        "cos_mlp": F.cosine_similarity(m, mlp_base, dim=-1),
        "cos_layer": F.cosine_similarity(c, h, dim=-1),
        "cos_io": F.cosine_similarity(h + c, h, dim=-1),
        "norm_att": a.norm(dim=-1),
        "norm_mlp": m.norm(dim=-1),
        "norm_resid": norm_h,
    }


@register
class Contributions(Analysis):
    name = "contributions"
    title = "Residual norms, relative contributions and cosines"
    description = "norms, relative contributions and cosine similarities of each sublayer (E2)"
    paper = PaperRef("E2", "§3.1", "Fig. 2, 15, 16")
    Settings = ContributionSettings
    State = ContributionState
    in_default_run = True
    per_prompt = False  # one cheap pass over the batch; summing per batch keeps results exact
    profiles = (
        Profile(
            "relative-contribution",
            "relative contribution ‖a+m‖/‖h‖",
            data_key("rel_layer"),
            indicator="relative contribution",
            figure="contributions_mean_relative_contribution",
            order=3,
            per_prompt=per_prompt_key("rel_layer", weight="n_tokens"),
        ),
        Profile(
            "cosine",
            "cos(a+m, h)",
            data_key("cos_layer"),
            indicator="cosine to the residual",
            expected="up",
            log=False,  # signed
            figure="contributions_avg_cossims",
            order=4,
            importance="dissimilarity",
            per_prompt=per_prompt_key("cos_layer", weight="n_tokens"),
        ),
    )
    presets = {
        "paper": Preset(
            GSM8K, 20, {"eps": "1e-6"}, DEFAULT_SOURCE, "§3.1: first 20 GSM8K test prompts"
        )
    }
    captions = {
        "mean_norms": "Average size of what attention and the MLP add, and of the residual they "
        "add to; the residual usually grows much faster.",
        "max_norms": "Largest sizes over all tokens; a spike marks massive activations.",
        "mean_relative_contribution": "How much each sublayer changes the residual relative to "
        "its size; a drop near the middle is the paper's phase transition.",
        "max_relative_contribution": "Largest relative change over all tokens.",
        "avg_cossims": "Cosine between what a sublayer adds and the residual: below 0 it erases "
        "features, above 0 it strengthens existing ones.",
        "avg_io_cossims": "Cosine of each layer's output with its input: close to 1 everywhere "
        "(residual anisotropy), so uninformative on its own.",
    }

    def update(self, state: ContributionState, batch: PromptBatch) -> None:
        trace = batch.trace
        valid = batch.valid()
        n_valid = int(valid.sum())
        sums = {k: [] for k in MEANS}
        maxes = {k: [] for k in MAXES}
        row_sums = {k: [] for k in PER_PROMPT}
        for layer in range(trace.n_layers):
            q = layer_quantities(
                trace.resid[layer],
                trace.attn[layer],
                trace.mlp[layer],
                self.lm.adapter.parallel,
                self.settings.eps,
            )
            for key in MEANS:
                sums[key].append(q[key][valid].double().sum())
            for key in PER_PROMPT:
                row_sums[key].append((q[key].double() * valid).sum(dim=1))
            for key in MAXES:
                maxes[key].append(masked_max(q[key].flatten(), valid.flatten()))
        for key in MEANS:
            state.means[key].add(torch.stack(sums[key]), n_valid)
        for key in MAXES:
            state.maxes[key].add(torch.stack(maxes[key]))
        state.tally.n_prompts += len(batch.prompt_ids)
        state.tally.n_tokens += n_valid
        for row, prompt_id in batch:
            length = batch.length(row)
            entry = {"prompt": prompt_id, "n_tokens": length}
            for key in PER_PROMPT:
                entry[key] = torch.stack([s[row] for s in row_sums[key]]).cpu() / length
            state.per_prompt.append(entry)

    def finish(self, state: ContributionState) -> dict:
        self.require_some(state, "pass at least one prompt")
        data = {}
        for key in MEANS:
            name = key if key.startswith(("rel", "cos")) else "mean_" + key
            data[name] = state.means[key].value
        for key in MAXES:
            data["max_" + key] = state.maxes[key].value
        data["per_prompt"] = sorted(state.per_prompt, key=lambda e: e["prompt"])
        return data

    @classmethod
    def draw(cls, result: Result):
        return draw_contributions(result)

    @classmethod
    def numbers(cls, result: Result) -> list[str]:
        """Where the relative contribution collapses, how the cosine changes sign."""
        rel = np.asarray(result.data["rel_layer"], dtype=float)
        n, half = len(rel), len(rel) // 2
        lines = []
        # layer 0 (reading the raw embedding) is usually an outlier, so the reference starts at 1
        ref, second = finite_mean(rel[1:half]), finite_mean(rel[half:])
        if np.isfinite(ref):
            below = [i for i in range(1, n) if rel[i] < 0.5 * ref]
            where = f"at layer {below[0]}" if below else "never"
            lines.append(
                f"relative contribution ‖a+m‖/‖h‖: mean {ref:.3f} over layers 1–{half - 1}, "
                f"{second:.3f} over {half}–{n - 1}; drops below half of the first-half mean {where}"
            )
        cos = np.asarray(result.data["cos_layer"], dtype=float)
        first, second = first_vs_second_half(cos)
        lines.append(
            f"cos(a+m, h): first half {first:.3f}, second half {second:.3f}; "
            f"negative (erasing) at {int(np.sum(cos < 0))} of {n} layers"
        )
        norms = np.asarray(result.data.get("max_norm_resid", []), dtype=float)
        if norms.size and np.isfinite(norms).any():
            top = int(np.nanargmax(norms))
            lines.append(f"largest residual norm {norms[top]:.4g} (entering layer {top})")
        return lines
