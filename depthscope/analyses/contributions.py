"""Residual-stream norms, relative contributions and cosine similarities per layer (spec E2).

Per token and layer: ``‖a‖/‖h‖``, ``‖m‖/‖h+a‖``, ``‖a+m‖/‖h‖``, ``cos(a,h)``, ``cos(m,h+a)``,
``cos(a+m,h)``, ``cos(h_{l+1},h)`` and the norms of ``a``, ``m``, ``h``. Means are token-means over
every valid token of every prompt (mean of ratios); maxima are over the same tokens. On parallel
blocks the MLP reads ``h``, so it is measured against ``h``. Unlike the original code, mean norms
accumulate over all prompts (spec §14.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from depthscope.analyses.base import Analysis, PromptBatch, register
from depthscope.engine.stats import Max, Mean, masked_max, safe_ratio

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


@dataclass
class ContributionSettings:
    eps: float = 1e-6  # norm-ratio denominators are clamped at this (paper value)


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
    description = "norms, relative contributions and cosine similarities of each sublayer (E2)"
    Settings = ContributionSettings

    def new_state(self) -> dict:
        return {
            "mean": {k: Mean() for k in MEANS},
            "max": {k: Max() for k in MAXES},
            "n_prompts": 0,
            "n_tokens": 0,
        }

    def update(self, state: dict, batch: PromptBatch) -> None:
        trace = batch.trace
        valid = batch.valid()
        n_valid = int(valid.sum())
        sums = {k: [] for k in MEANS}
        maxes = {k: [] for k in MAXES}
        for layer in range(trace.n_layers):
            q = layer_quantities(
                trace.resid[layer],
                trace.attn[layer],
                trace.mlp[layer],
                self.lm.adapter.parallel,
                self.settings.eps,
            )
            for key in MEANS:
                sums[key].append(q[key][valid].sum())
            for key in MAXES:
                maxes[key].append(masked_max(q[key].flatten(), valid.flatten()))
        for key in MEANS:
            state["mean"][key].add(torch.stack(sums[key]), n_valid)
        for key in MAXES:
            state["max"][key].add(torch.stack(maxes[key]))
        state["n_prompts"] += len(batch.prompt_ids)
        state["n_tokens"] += n_valid

    def finish(self, state: dict) -> dict:
        data = {}
        for key in MEANS:
            name = key if key.startswith(("rel", "cos")) else "mean_" + key
            data[name] = state["mean"][key].value
        for key in MAXES:
            data["max_" + key] = state["max"][key].value
        return data
