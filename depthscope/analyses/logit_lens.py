"""Logit lens (E5): how far each layer's input, read out by the final head, is from the output.

Paper §3.3, Fig. 4. For the input ``h_l`` of every layer (row 0 is the embedding),
``q_l = softmax(head(h_l))`` is compared with the model's output ``P``: ``KL(q_l ‖ P)`` (direction
configurable) and the overlap of the top-k token sets (k=5). Work is done in blocks of (layers ×
positions): the model's output over at most ``CHUNK_ELEMENTS`` vocabulary entries at once, and
about ``LENS_ROWS`` lens rows streamed together over vocabulary tiles (``engine.vocab_stream``):
``[layers, tokens, vocab]`` is never held. Averaging follows the paper: mean over a prompt's tokens,
then mean over prompts (``weighting="token"`` weights prompts by length instead).

With ``top_tokens=N`` the result also keeps, for the first ``top_prompts`` prompts, the N most likely
tokens (and their probabilities) that every layer's readout predicts at every position, plus the
model's own output as the last row: the per-position view logit-lens users look at first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from depthscope.analyses.base import Analysis, PromptBatch, RunContext, Tally
from depthscope.analyses.card import (
    Finding,
    PaperRef,
    Preset,
    Profile,
    VerdictRule,
    data_key,
    per_prompt_key,
)
from depthscope.core.registry import register
from depthscope.core.result import Result
from depthscope.data.sources import DEFAULT_SOURCE, GSM8K
from depthscope.engine.outputs import CHUNK_ELEMENTS, vocab_size
from depthscope.engine.state import state_type
from depthscope.engine.stats import Mean, finite_max
from depthscope.engine.tuned_lens import TunedLens, load_tuned_lens
from depthscope.engine.vocab_stream import FinalRows, final_log_probs, streamed_lens
from depthscope.figures.layers import draw_logit_lens
from depthscope.verdict import bootstrap, rules
from depthscope.verdict.sensitivity import sweep
from depthscope.verdict.words import at, rel

DIRECTIONS = ("lens||final", "final||lens")
# rows read through the head together: the head's matmul reaches its peak from a few hundred rows
# on, and the streamed lens holds only [rows, tile] logits (benchmarks/bench_logit_lens.py)
LENS_ROWS = 512
WEIGHTINGS = ("prompt", "token")


@dataclass
class LogitLensSettings:
    k: int = field(default=5, metadata={"help": "size of the top-k sets whose overlap is measured"})
    kl_direction: str = field(
        default="lens||final", metadata={"help": "lens||final (paper) or final||lens"}
    )
    weighting: str = field(
        default="prompt",
        metadata={"help": "prompt: mean per prompt, then over prompts (paper); token: token-mean"},
    )
    top_tokens: int = field(
        default=0,
        metadata={
            "help": "keep the N most likely tokens of every layer at every position (0: off)"
        },
    )
    top_prompts: int = field(
        default=4, metadata={"help": "... for this many prompts (the first ones)"}
    )
    lens: str = field(
        default="logit",
        metadata={
            "help": "logit, or tuned:DIR to measure a tuned lens (from `depthscope lens train` or "
            "the tuned-lens project) beside the logit lens"
        },
    )

    def __post_init__(self) -> None:
        if self.kl_direction not in DIRECTIONS:
            raise ValueError(f"kl_direction must be one of {DIRECTIONS}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}")
        if self.k < 1:
            raise ValueError("k must be >= 1")
        if self.top_tokens < 0 or self.top_prompts < 0:
            raise ValueError("top_tokens and top_prompts must be >= 0")
        if self.lens != "logit" and not (self.lens.startswith("tuned:") and len(self.lens) > 6):
            raise ValueError(f"lens must be logit or tuned:DIR, got {self.lens!r}")

    @property
    def tuned_folder(self) -> str | None:
        return self.lens.removeprefix("tuned:") if self.lens.startswith("tuned:") else None

    def check_model(self, vocab: int) -> None:
        """Settings that depend on the model, checked before its weights load."""
        if self.k > vocab or self.top_tokens > vocab:
            raise ValueError(f"k and top_tokens must not exceed the vocabulary ({vocab} tokens)")


def lens_metrics(
    lens_logp: torch.Tensor,
    final_logp: torch.Tensor,
    final_topk: torch.Tensor,
    k: int,
    direction: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row KL and top-k overlap between lens and final log-distributions ``[..., V]``: the
    materialised reference that ``streamed_lens`` (what runs) is tested against."""
    if direction == "lens||final":
        kl = F.kl_div(final_logp, lens_logp, reduction="none", log_target=True).sum(-1)
    else:
        kl = F.kl_div(lens_logp, final_logp, reduction="none", log_target=True).sum(-1)
    lens_topk = lens_logp.topk(k, dim=-1).indices
    overlap = (lens_topk[..., :, None] == final_topk[..., None, :]).any(-1).sum(-1).float() / k
    return kl, overlap


@dataclass
class LensPrompt:
    """One prompt's lens: per-layer sums over positions, and optionally the top tokens everywhere."""

    kl_sum: torch.Tensor  # [L]
    overlap_sum: torch.Tensor  # [L]
    top_ids: torch.Tensor | None = None  # [L+1, T, N]: layer inputs, then the model's output
    top_probs: torch.Tensor | None = None


def lens_prompt(
    adapter,
    resid: torch.Tensor,
    k: int,
    direction: str,
    top: int = 0,
    lens: TunedLens | None = None,
) -> LensPrompt:
    """The lens of one prompt's residuals ``[L+1, T, d]``, blockwise over layers and positions;
    with ``lens``, each boundary's residual goes through its translator first (the tuned lens)."""
    n_layers, length = resid.shape[0] - 1, resid.shape[1]
    positions = min(length, max(1, CHUNK_ELEMENTS // vocab_size(adapter)))
    layers_per_block = max(1, LENS_ROWS // positions)
    kl_sum = torch.zeros(n_layers, dtype=torch.float64)
    overlap_sum = torch.zeros(n_layers, dtype=torch.float64)
    top_ids = torch.zeros(n_layers + 1, length, top, dtype=torch.long) if top else None
    top_probs = torch.zeros(n_layers + 1, length, top) if top else None
    for start in range(0, length, positions):
        stop = min(start + positions, length)
        final = FinalRows.of(final_log_probs(adapter, resid[n_layers, start:stop]), k, direction)
        if top:
            best = final.logp.topk(top, dim=-1)
            top_ids[n_layers, start:stop] = best.indices.cpu()
            top_probs[n_layers, start:stop] = best.values.exp().float().cpu()
        for first in range(0, n_layers, layers_per_block):
            last = min(first + layers_per_block, n_layers)
            block = resid[first:last, start:stop]
            if lens is not None:
                block = lens.translate(block, first)
            found = streamed_lens(adapter, block, final, k, direction, top)
            kl_sum[first:last] += found.kl.sum(-1).double().cpu()
            overlap_sum[first:last] += found.overlap.sum(-1).double().cpu()
            if top:
                top_ids[first:last, start:stop] = found.top_ids[..., :top].cpu()
                top_probs[first:last, start:stop] = found.top_logp[..., :top].exp().float().cpu()
    return LensPrompt(kl_sum, overlap_sum, top_ids, top_probs)


@state_type
@dataclass
class LensState:
    kl: Mean = field(default_factory=Mean)
    overlap: Mean = field(default_factory=Mean)
    tables: list = field(default_factory=list)  # per-position top tokens of the first prompts
    # per prompt: token-means of KL and overlap and the prompt's weight in the mean (resampling)
    per_prompt: list = field(default_factory=list)
    tuned: dict = field(default_factory=dict)  # the same through a tuned lens: "lens" -> LensState
    tally: Tally = field(default_factory=Tally)

    def fold(self, lens: LensPrompt, prompt_id: int, length: int, weighting: str) -> None:
        """One prompt's lens, weighted per prompt or per token."""
        if weighting == "prompt":
            self.kl.add(lens.kl_sum / length, 1)
            self.overlap.add(lens.overlap_sum / length, 1)
        else:
            self.kl.add(lens.kl_sum, length)
            self.overlap.add(lens.overlap_sum, length)
        self.per_prompt.append(
            {
                "prompt": prompt_id,
                "weight": 1 if weighting == "prompt" else length,
                "kl": (lens.kl_sum / length).cpu(),
                "topk_overlap": (lens.overlap_sum / length).cpu(),
            }
        )

    def data(self) -> dict:
        data = {"kl": self.kl.value, "topk_overlap": self.overlap.value}
        data["per_prompt"] = sorted(self.per_prompt, key=lambda e: e["prompt"])
        if self.tables:
            data["top_tokens"] = sorted(self.tables, key=lambda t: t["prompt"])
        return data


def _boundaries(block: dict) -> dict:
    """The two convergence boundaries of one lens's data, with their intervals where the data
    keep per-prompt profiles (on the weighted mean over prompts)."""
    overlap = np.asarray(block.get("topk_overlap", []), dtype=float)
    kl = np.asarray(block.get("kl", []), dtype=float)
    first, kl_low, kl_ref = rules.lens_boundaries(kl, overlap)
    found = {"overlap": first, "kl": kl_low, "kl_ref": kl_ref, "overlap_interval": None}
    found["kl_interval"] = None
    found["sensitivity"] = [
        sweep(
            "lens_overlap",
            rules.LENS_OVERLAP,
            lambda level: rules.lens_boundaries(kl, overlap, overlap_level=level)[0],
            "overlap boundary",
        ),
        sweep(
            "lens_kl_fraction",
            rules.LENS_KL_FRACTION,
            lambda fraction: rules.lens_boundaries(kl, overlap, kl_fraction=fraction)[1],
            "KL boundary",
        ),
    ]
    if block.get("per_prompt"):
        kls, weights = per_prompt_key("kl", weight="weight")(block)
        overlaps, _ = per_prompt_key("topk_overlap", weight="weight")(block)
        both = np.concatenate([kls, overlaps], axis=1)  # one draw resamples both alike
        width = kls.shape[1]

        def boundary(which: int):
            def statistic(rows: np.ndarray) -> np.ndarray:
                return rules.lens_boundary_rows(rows[:, :width], rows[:, width:])[which]

            return statistic

        found["overlap_interval"] = bootstrap.bootstrap(both, weights, boundary(0))
        found["kl_interval"] = bootstrap.bootstrap(both, weights, boundary(1))
    return found


def _lens_text(found: dict, k: int, n: int | None) -> tuple[str, str]:
    """(sentence part, headline part) for one lens's boundaries."""

    def where(index: int | None, interval) -> str:
        text = at(index, n)
        if interval is None or index is None:
            return text
        return f"layer {interval.text()}" + text.removeprefix(f"layer {index}")

    def short(index: int | None, interval) -> str:
        if index is None:
            return "never"
        return f"boundary {interval.text()}" if interval else at(index, n, "boundary")

    if found["overlap"] is not None:
        overlap_text = (
            f"top-{k} overlap with the output first reaches {rules.LENS_OVERLAP:g} at the input "
            f"of {where(found['overlap'], found['overlap_interval'])}"
        )
    else:
        overlap_text = f"top-{k} overlap never reaches {rules.LENS_OVERLAP:g}"
    level = f"{rules.LENS_KL_FRACTION:g}× its first-half median"
    if found["kl"] is not None:
        kl_text = (
            f"KL stays below {level} ({found['kl_ref']:.3g}) from the input of "
            f"{where(found['kl'], found['kl_interval'])} on"
        )
    else:
        kl_text = f"KL never stays below {level}"
    headline = (
        f"overlap {short(found['overlap'], found['overlap_interval'])}; "
        f"KL {short(found['kl'], found['kl_interval'])}"
    )
    return f"{overlap_text}; {kl_text}", headline


def _interval_json(interval) -> dict | None:
    return interval.as_json() if interval else None


def lens_convergence(result: Result, n_layers: int | None) -> Finding:
    """First boundary whose top-k overlap reaches 0.5; boundary from which KL stays low.

    On the (weighted) mean over prompts, with intervals from resampled prompts where the result
    keeps per-prompt profiles; for the tuned lens too where the run measured one, with how far
    its boundaries lie from the logit lens's.
    """
    data = result.data
    n = n_layers or len(data.get("kl", []))
    k = result.settings.get("k", 5)
    logit = _boundaries(data)
    text, headline = _lens_text(logit, k, n)
    sentence = f"The logit lens: {text}."
    details = {
        "overlap_boundary": logit["overlap"],
        "kl_boundary": logit["kl"],
        "kl_relative_depth": rel(logit["kl"], n),
        "kl_first_half_median": logit["kl_ref"],
        "overlap_interval": _interval_json(logit["overlap_interval"]),
        "kl_interval": _interval_json(logit["kl_interval"]),
        "sensitivity": logit["sensitivity"],
    }
    if data.get("tuned"):
        tuned = _boundaries(data["tuned"])
        tuned_text, tuned_headline = _lens_text(tuned, k, n)
        apart = [
            f"{what} {tuned[key] - logit[key]:+d} layers"
            for what, key in (("overlap", "overlap"), ("KL", "kl"))
            if tuned[key] is not None and logit[key] is not None
        ]
        sentence += f" The tuned lens: {tuned_text}"
        sentence += f" (tuned minus logit: {', '.join(apart)})." if apart else "."
        headline = f"logit {headline}; tuned {tuned_headline}"
        details["tuned"] = {
            "overlap_boundary": tuned["overlap"],
            "kl_boundary": tuned["kl"],
            "kl_first_half_median": tuned["kl_ref"],
            "overlap_interval": _interval_json(tuned["overlap_interval"]),
            "kl_interval": _interval_json(tuned["kl_interval"]),
            "apart": {
                key: None if tuned[key] is None or logit[key] is None else tuned[key] - logit[key]
                for key in ("overlap", "kl")
            },
        }
    return Finding(
        key="lens",
        title="Logit-lens convergence",
        headline=headline,
        sentence=sentence,
        layer=logit["overlap"],
        relative_depth=rel(logit["overlap"], n),
        details=details,
        figures=[f"{result.analysis}_topk_overlaps", f"{result.analysis}_kl_div"],
        analyses=[result.analysis],
    )


@register
class LogitLens(Analysis):
    name = "logit-lens"
    title = "Logit lens"
    description = "KL and top-k overlap of each layer's logit-lens prediction with the output (E5)"
    paper = PaperRef("E5", "§3.3", "Fig. 4")
    Settings = LogitLensSettings
    State = LensState
    in_default_run = True
    profiles = (
        Profile(
            "lens-kl",
            "logit-lens KL to the output",
            data_key("kl"),
            indicator="logit-lens KL",
            figure="logit-lens_kl_div",
            order=5,
            axis="boundary",
            per_prompt=per_prompt_key("kl", weight="weight"),
        ),
        Profile(
            "lens-overlap",
            "logit-lens top-k overlap",
            data_key("topk_overlap"),
            indicator="logit-lens top-k overlap",
            expected="up",
            log=False,
            figure="logit-lens_topk_overlaps",
            order=6,
            importance="one-minus",
            axis="boundary",
            per_prompt=per_prompt_key("topk_overlap", weight="weight"),
        ),
        Profile(
            "tuned-lens-kl",
            "tuned-lens KL to the output",
            data_key("tuned.kl"),
            indicator="tuned-lens KL",
            figure="logit-lens_kl_div",
            order=7,
            axis="boundary",
            per_prompt=per_prompt_key("tuned.kl", weight="weight"),
            requires="tuned",
        ),
        Profile(
            "tuned-lens-overlap",
            "tuned-lens top-k overlap",
            data_key("tuned.topk_overlap"),
            indicator="tuned-lens top-k overlap",
            expected="up",
            log=False,
            figure="logit-lens_topk_overlaps",
            order=8,
            importance="one-minus",
            axis="boundary",
            per_prompt=per_prompt_key("tuned.topk_overlap", weight="weight"),
            requires="tuned",
        ),
    )
    verdict = (VerdictRule("lens", "Logit-lens convergence", lens_convergence),)
    presets = {
        "paper": Preset(
            GSM8K,
            20,
            {"k": "5", "kl_direction": "lens||final", "weighting": "prompt"},
            DEFAULT_SOURCE,
            "§3.3: first 20 GSM8K prompts, KL(lens ‖ final), top-5",
        )
    }
    captions = {
        "kl_div": "KL divergence between what each layer's input would predict (read out by the "
        "final head) and the model's output; it falls where layers only refine the prediction.",
        "topk_overlaps": "Share of the model's top-k tokens that each layer's readout already "
        "ranks in its own top-k; 1 = same candidates as the output.",
        "tokens": "Most likely token of each layer's readout at each position (text) and its "
        "probability (colour); the last row is the model's output.",
    }

    tuned: TunedLens | None = None  # set by prepare() with lens=tuned:DIR

    @classmethod
    def plan_key(cls, settings: LogitLensSettings, data: str) -> dict:
        """A result of another tuned lens (other weights in the same folder) is recomputed."""
        folder = settings.tuned_folder
        return {"tuned_lens": load_tuned_lens(folder).fingerprint()} if folder else {}

    def prepare(self, context: RunContext) -> None:
        super().prepare(context)
        folder = self.settings.tuned_folder
        if folder:
            lens = load_tuned_lens(folder)
            lens.check_fits(self.lm.n_layers, self.lm.d_model, self.lm.name, folder)
            self.tuned = lens

    def prompt_cost(self, length: int, prompt_id: int) -> float:
        adapter = self.lm.adapter  # every position unembedded at every layer boundary
        lenses = 2 if self.settings.tuned_folder else 1
        return float(lenses * length * (adapter.n_layers + 1) * adapter.unembed_cost)

    @torch.no_grad()
    def update(self, state: LensState, batch: PromptBatch) -> None:
        trace = batch.trace
        s = self.settings
        self.options.progress.start(f"{self.name} batch", len(batch.rows))
        for prompt in self.prompts(state, batch):
            keep = s.top_tokens if prompt.prompt_id < s.top_prompts else 0
            lens = lens_prompt(
                self.lm.adapter,
                trace.resid[:, prompt.row, : prompt.length],
                s.k,
                s.kl_direction,
                top=keep,
            )
            state.fold(lens, prompt.prompt_id, prompt.length, s.weighting)
            if keep:
                state.tables.append(self._table(batch, prompt.prompt_id, lens))
            if self.tuned is not None:
                tuned = lens_prompt(
                    self.lm.adapter,
                    trace.resid[:, prompt.row, : prompt.length],
                    s.k,
                    s.kl_direction,
                    top=keep,
                    lens=self.tuned,
                )
                inner = state.tuned.setdefault("lens", LensState())
                inner.fold(tuned, prompt.prompt_id, prompt.length, s.weighting)
                if keep:
                    inner.tables.append(self._table(batch, prompt.prompt_id, tuned))
            self.options.progress.advance(1)

    def _table(self, batch: PromptBatch, prompt_id: int, lens: LensPrompt) -> dict:
        decode = getattr(self.lm.tokenizer, "decode", None)
        ids = lens.top_ids.tolist()
        words = [[[_word(decode, i) for i in cell] for cell in row] for row in ids]
        return {
            "prompt": prompt_id,
            "input_tokens": batch.prompts.token_strings[prompt_id],
            "tokens": words,
            "probs": lens.top_probs,
        }

    def finish(self, state: LensState) -> dict:
        self.require_some(state, "pass at least one prompt")
        data = state.data()
        if self.tuned is not None and "lens" in state.tuned:
            data["tuned"] = {
                **state.tuned["lens"].data(),
                "source": self.settings.tuned_folder,
                "fingerprint": self.tuned.fingerprint(),
                "trained": {
                    k: self.tuned.record.get(k) for k in ("data", "tokens", "seconds", "format")
                },
            }
        return data

    @classmethod
    def draw(cls, result: Result):
        return draw_logit_lens(result)

    @classmethod
    def numbers(cls, result: Result) -> list[str]:
        """When intermediate predictions start to agree with the final one."""
        k = result.settings.get("k", 5)
        lines = []
        overlap = np.asarray(result.data.get("topk_overlap", []), dtype=float)
        if overlap.size:
            above = np.nonzero(overlap > 0.5)[0]
            where = f"at layer {int(above[0])} of 0–{len(overlap) - 1}" if len(above) else "never"
            lines.append(f"top-{k} overlap with the final prediction first exceeds 0.5 {where}")
        kl = np.asarray(result.data.get("kl", []), dtype=float)
        if kl.size and np.isfinite(kl).any():
            peak = finite_max(kl)
            low = np.nonzero(kl < 0.5 * peak)[0]
            low = low[low > int(np.nanargmax(kl))]
            where = f"from layer {int(low[0])}" if len(low) else "never"
            lines.append(f"KL to the final distribution: max {peak:.3f}; below half of it {where}")
        return lines


def _word(decode, token_id: int) -> str:
    return decode([token_id]) if decode is not None else str(token_id)
