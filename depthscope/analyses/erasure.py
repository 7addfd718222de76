"""Residual erasure over (boundary × token) (E8): until which depth each token is still used.

Paper §3.5, Fig. 6b/d. For every boundary ``l ∈ 0..L`` (0 = embedding output, ``l ≥ 1`` = output
of layer ``l−1``) and every position ``t``, the residual ``h_l[t]`` is replaced by an uninformative
vector ``h̃_l`` (the token-mean residual at that boundary over baseline prompts), the model is re-run
from layer ``l``, and ``E[l, t] = max_k ‖P̄[k] − P[k]‖₂`` over the positions ``k`` that predict the
answer tokens. All positions of a boundary are rows of one replay that starts at layer ``l``.

The baseline prompts never include a prompt being erased: they come from ``baseline_data``
(default: the built-in GSM8K-style word problems, like the paper's GSM8K mean), and any baseline
prompt identical to a prompt of the run is replaced by the next one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from depthscope.analyses.base import Analysis, PromptBatch, RunContext, Tally
from depthscope.analyses.card import Finding, PaperRef, Preset, VerdictRule
from depthscope.analyses.operands import operands_finding
from depthscope.core.errors import DepthscopeError
from depthscope.core.registry import register
from depthscope.core.result import Result
from depthscope.data.prompts import tokenize
from depthscope.data.sources import DEFAULT_SOURCE, GSM8K, load_examples
from depthscope.engine.batch import pad_batch, pad_id
from depthscope.engine.outputs import OutputComparer
from depthscope.engine.replay import replay
from depthscope.engine.state import same, state_type
from depthscope.engine.stats import Mean
from depthscope.engine.trace import trace as run_trace
from depthscope.figures.tokens import draw_erasure, token_map_numbers


@dataclass
class ErasureSettings:
    baseline_data: str = field(
        default="",
        metadata={
            "help": f"source of the baseline prompts (default: {DEFAULT_SOURCE}; paper: GSM8K)"
        },
    )
    baseline_n: int = field(default=10, metadata={"help": "number of baseline prompts (paper: 10)"})

    def __post_init__(self) -> None:
        if self.baseline_n < 1:
            raise ValueError("baseline_n must be >= 1")


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


def baseline_sequences(
    tokenizer, source: str, n: int, seed: int, exclude: list[list[int]]
) -> list[list[int]]:
    """``n`` tokenised prompts of ``source`` none of which equals a prompt in ``exclude``."""
    excluded = {tuple(s) for s in exclude}
    wanted = n + len(excluded)
    chosen = [
        ids
        for ids in (tokenize(tokenizer, ex.text) for ex in load_examples(source, wanted, seed=seed))
        if tuple(ids) not in excluded
    ][:n]
    if len(chosen) < n:
        raise DepthscopeError(
            f"erasure: {source} gives only {len(chosen)} baseline prompts that are not also erased; "
            f"set erasure.baseline_data to another source or lower erasure.baseline_n"
        )
    return chosen


def erasure_rows(
    resid: torch.Tensor, means: torch.Tensor, boundaries: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """Start residuals for rows (boundary, position): the clean residual with one position replaced."""
    starts = resid[boundaries].clone()  # [n, S, d]
    rows = torch.arange(boundaries.numel(), device=resid.device)
    starts[rows, positions] = means[boundaries].to(starts.dtype)
    return starts


@state_type
@dataclass
class ErasureState:
    prompts: list = field(default_factory=list)  # {"prompt", "effect", "tokens", "answer_tokens"}
    means: torch.Tensor | None = same()  # [L+1, d] baseline, identical on every shard
    n_baseline: int = same(0)
    tally: Tally = field(default_factory=Tally)


def operands(result: Result, n_layers: int | None) -> Finding:
    """Rows of the erasure maps are residual boundaries (the input of layer ``r`` is row ``r``)."""
    return operands_finding(
        result,
        n_layers,
        maps=list(result.data["effect"]),
        row_offset=0,
        method="erasing them",
        figure=f"{result.analysis}_prompt{{}}",
    )


@register
class Erasure(Analysis):
    name = "erasure"
    title = "Residual erasure over layers × tokens"
    description = "replace one (layer, token) residual by a mean and measure the answer change (E8)"
    paper = PaperRef("E8", "§3.5", "Fig. 6b, 6d")
    Settings = ErasureSettings
    State = ErasureState
    default_data = "builtin:paper"  # the paper's two hand-written prompts
    requires_answer = True
    uses_paper_split = True
    verdict = (VerdictRule("operands", "Operands stop mattering", operands, rank=0),)
    presets = {
        "paper": Preset(
            "builtin:paper",
            None,
            {"baseline_data": GSM8K, "baseline_n": "10"},
            None,
            "§3.5: the two prompts, baseline = mean over the first 10 GSM8K prompts",
        )
    }
    captions = {
        "": "Column = input token, row = depth at which that token's residual is replaced by a "
        "mean; colour = how much the answer's prediction changes. Where a column goes dark, the "
        "token's information is no longer used there; red labels are the answer.",
    }

    baseline: list[list[int]] | None = None  # set by prepare(), or by a caller beforehand
    baseline_source: str = ""

    def prepare(self, context: RunContext) -> None:
        super().prepare(context)
        if self.baseline is not None:
            return
        self.baseline_source = self.settings.baseline_data or DEFAULT_SOURCE
        self.baseline = baseline_sequences(
            self.lm.tokenizer,
            self.baseline_source,
            self.settings.baseline_n,
            context.seed,
            context.prompts.sequences,
        )

    def _means(self, state: ErasureState) -> torch.Tensor:
        if state.means is None:
            if not self.baseline:
                raise DepthscopeError(
                    "erasure needs baseline prompts; set erasure.baseline_data to a source with prompts"
                )
            state.means = baseline_means(self.lm, self.baseline)
            state.n_baseline = len(self.baseline)
        return state.means

    @torch.no_grad()
    def update(self, state: ErasureState, batch: PromptBatch) -> None:
        trace = batch.trace
        n_layers = trace.n_layers
        means = self._means(state).to(trace.resid.device)
        for prompt in self.prompts(state, batch):
            row, length, alen = prompt.row, prompt.length, prompt.answer_length
            measured = torch.zeros(trace.seq_len, dtype=torch.bool, device=trace.resid.device)
            measured[length - alen - 1 : length - 1] = True
            outputs = OutputComparer(self.lm.adapter, trace.resid[n_layers, row, :length])
            grid = torch.cartesian_prod(torch.arange(n_layers + 1), torch.arange(length)).to(
                trace.resid.device
            )
            effect = torch.zeros(n_layers + 1, length)
            self.options.progress.start(
                f"{self.name} prompt {prompt.prompt_id}", int(grid.shape[0])
            )
            resid = trace.resid[:, row]

            def erase(
                start: int,
                stop: int,
                row=row,
                resid=resid,
                outputs=outputs,
                measured=measured,
                effect=effect,
                grid=grid,
                length=length,
            ) -> None:
                chunk = grid[start:stop]
                boundaries, positions = chunk[:, 0], chunk[:, 1]
                starts = erasure_rows(resid, means, boundaries, positions)
                finals = replay(self.lm.adapter, trace, row, boundaries, resid=starts)
                change = outputs.max_change(
                    finals[:, :length], measured[:length].expand(len(chunk), -1)
                )
                effect[boundaries.cpu(), positions.cpu()] = change.cpu()
                self.options.progress.advance(len(chunk))

            self.options.batches.run(int(grid.shape[0]), erase)
            state.prompts.append(
                {
                    "prompt": prompt.prompt_id,
                    "effect": effect,
                    "tokens": batch.prompts.token_strings[prompt.prompt_id],
                    "answer_tokens": alen,
                    "split": prompt.split,
                }
            )

    def finish(self, state: ErasureState) -> dict:
        self.require_some(state, "use prompts with answers (e.g. --data builtin:paper)")
        prompts = sorted(state.prompts, key=lambda e: e["prompt"])
        return {
            "effect": [e["effect"] for e in prompts],
            "tokens": [e["tokens"] for e in prompts],
            "answer_tokens": [e["answer_tokens"] for e in prompts],
            "splits": [e.get("split") for e in prompts],  # the paper's split: as-given or shifted
            "prompts": [e["prompt"] for e in prompts],
            "skipped_prompts": state.tally.skipped_ids,
            "n_baseline_prompts": state.n_baseline,
            "baseline_source": self.baseline_source,
        }

    @classmethod
    def draw(cls, result: Result):
        return draw_erasure(result)

    @classmethod
    def numbers(cls, result: Result) -> list[str]:
        return token_map_numbers(result, result.data["effect"], "boundary")
