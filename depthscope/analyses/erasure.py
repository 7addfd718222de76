"""Residual erasure over (boundary × token) (spec E8): until which depth each token is still used.

For every boundary ``l ∈ 0..L`` (0 = embedding output, ``l ≥ 1`` = output of layer ``l−1``) and
every position ``t``, the residual ``h_l[t]`` is replaced by an uninformative vector ``h̃_l`` (the
token-mean residual at that boundary over baseline prompts), the model is re-run from layer ``l``,
and ``E[l, t] = max_k ‖P[k] − P̄[k]‖₂`` over the positions ``k`` that predict the answer tokens.
All positions of a boundary are rows of one replay that starts at layer ``l``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from depthscope.analyses.base import Analysis, PromptBatch, register
from depthscope.analyses.outputs import OutputComparer
from depthscope.engine.batch import pad_batch, pad_id
from depthscope.engine.replay import replay
from depthscope.engine.stats import Mean
from depthscope.engine.trace import trace as run_trace
from depthscope.errors import DepthscopeError


@dataclass
class ErasureSettings:
    baseline_data: str = ""  # data source of the baseline prompts; "" = the run's own source
    baseline_n: int = 10  # number of baseline prompts (paper: first 10 GSM8K prompts)


def baseline_means(lm, sequences: list[list[int]], batch: int = 4) -> torch.Tensor:
    """Token-mean residual at every boundary over ``sequences`` (all positions, BOS included): ``[L+1, d]``."""
    mean = Mean()
    for start in range(0, len(sequences), batch):
        chunk = pad_batch(sequences[start : start + batch], pad_id(lm.tokenizer))
        traced = run_trace(lm.adapter, chunk, sublayers=False)
        valid = traced.valid.to(traced.resid.device)
        total = (traced.resid.float() * valid[None, :, :, None]).sum(dim=(1, 2))
        mean.add(total, int(valid.sum()))
    return mean.value.to(torch.float32)


def erasure_rows(
    resid: torch.Tensor, means: torch.Tensor, boundaries: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """Start residuals for rows (boundary, position): the clean residual with one position replaced."""
    starts = resid[boundaries].clone()  # [n, S, d]
    rows = torch.arange(boundaries.numel(), device=resid.device)
    starts[rows, positions] = means[boundaries].to(starts.dtype)
    return starts


@register
class Erasure(Analysis):
    name = "erasure"
    description = "replace one (layer, token) residual by a mean and measure the answer change (E8)"
    Settings = ErasureSettings
    needs_answers = True

    def new_state(self) -> dict:
        return {"prompts": [], "skipped": [], "means": None, "n_prompts": 0, "n_tokens": 0}

    def _means(self, state: dict) -> torch.Tensor:
        if state["means"] is None:
            sequences = self.options.baseline_sequences
            if not sequences:
                raise DepthscopeError(
                    "erasure needs baseline prompts; pass a data source with prompts"
                )
            state["means"] = baseline_means(self.lm, sequences)
            state["n_baseline"] = len(sequences)
        return state["means"]

    @torch.no_grad()
    def update(self, state: dict, batch: PromptBatch) -> None:
        trace = batch.trace
        n_layers = trace.n_layers
        means = self._means(state).to(trace.resid.device)
        for row, prompt_id in batch:
            alen = batch.answer_length(prompt_id)
            length = batch.length(row)
            if alen is None:
                state["skipped"].append(prompt_id)
                continue
            measured = torch.zeros(trace.seq_len, dtype=torch.bool, device=trace.resid.device)
            measured[length - alen - 1 : length - 1] = True
            outputs = OutputComparer(self.lm.adapter, trace.resid[n_layers, row, :length])
            grid = torch.cartesian_prod(torch.arange(n_layers + 1), torch.arange(length)).to(
                trace.resid.device
            )
            effect = torch.zeros(n_layers + 1, length)
            self.options.progress.start(f"{self.name} prompt {prompt_id}", int(grid.shape[0]))
            resid = trace.resid[:, row]
            for chunk in grid.split(self.options.batch_size):
                boundaries, positions = chunk[:, 0], chunk[:, 1]
                starts = erasure_rows(resid, means, boundaries, positions)
                finals = replay(self.lm.adapter, trace, row, boundaries, resid=starts)
                change = outputs.max_change(
                    finals[:, :length], measured[:length].expand(len(chunk), -1)
                )
                effect[boundaries.cpu(), positions.cpu()] = change.cpu()
                self.options.progress.advance(len(chunk))
            state["prompts"].append(
                {
                    "prompt": prompt_id,
                    "effect": effect,
                    "tokens": batch.prompts.token_strings[prompt_id],
                    "answer_tokens": alen,
                }
            )
            state["n_prompts"] += 1
            state["n_tokens"] += length

    def finish(self, state: dict) -> dict:
        prompts = sorted(state["prompts"], key=lambda e: e["prompt"])
        return {
            "effect": [e["effect"] for e in prompts],
            "tokens": [e["tokens"] for e in prompts],
            "answer_tokens": [e["answer_tokens"] for e in prompts],
            "prompts": [e["prompt"] for e in prompts],
            "skipped_prompts": state["skipped"],
            "n_baseline_prompts": state.get("n_baseline", 0),
            "baseline_source": self.options.baseline_source,
        }
