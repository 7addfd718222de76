"""Measure a model with layers removed: perplexity on held-out text, answer accuracy on tasks.

The fast path traces each evaluation sequence once and, for every candidate set of removed
layers, replays only from the set's first removed layer (:class:`SkipLayers`): the clean prefix
is exact and shared by all candidates. The naive path (:func:`evaluate_naive`), one pruned model
copy per candidate and a full forward pass per sequence, is the reference the tests and the
benchmark compare against.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from depthscope.core.progress import Progress
from depthscope.engine.batch import pad_batch, pad_id
from depthscope.engine.interventions import SkipLayers
from depthscope.engine.replay import replay
from depthscope.engine.trace import trace
from depthscope.experiments.prune.surgery import pruned_copy
from depthscope.models.loading.loader import LoadedModel

RemovalSet = tuple[int, ...]


@dataclass
class EvalData:
    """Token sequences to measure on: ``kind="text"`` scores every next token (perplexity);
    ``"task"`` scores the answer tokens that end each sequence (teacher-forced accuracy)."""

    source: str
    kind: str
    sequences: list[list[int]]
    answer_lengths: list[int | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in ("text", "task"):
            raise ValueError(f"kind must be text or task, got {self.kind!r}")
        if not self.answer_lengths:
            self.answer_lengths = [None] * len(self.sequences)


@dataclass
class Tally:
    """Sums for one candidate on one data set (sums, so sequences can be added in any order)."""

    nll: float = 0.0  # summed negative log-likelihood of the scored tokens (nats)
    tokens: int = 0
    correct: int = 0  # tasks: sequences whose every answer token is the argmax
    examples: int = 0
    # (nll, tokens, correct) of each sequence, in order: the units intervals resample
    per_sequence: list = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.nll += other.nll
        self.tokens += other.tokens
        self.correct += other.correct
        self.examples += other.examples
        self.per_sequence += other.per_sequence

    def metrics(self, kind: str) -> dict:
        mean_nll = self.nll / self.tokens if self.tokens else float("nan")
        if kind == "text":
            perplexity = math.inf if mean_nll > 700 else math.exp(mean_nll)
            return {"perplexity": perplexity, "nll": mean_nll, "tokens": self.tokens}
        accuracy = self.correct / self.examples if self.examples else float("nan")
        return {"accuracy": accuracy, "answer_nll": mean_nll, "examples": self.examples}


def score_logits(logits: torch.Tensor, ids: Sequence[int], answer_length: int | None) -> Tally:
    """Score one sequence from the logits of the positions that predict the scored tokens."""
    targets = torch.as_tensor(ids[1:], device=logits.device)
    if answer_length is not None:
        logits, targets = logits[-answer_length:], targets[-answer_length:]
    logp = torch.log_softmax(logits.float(), dim=-1)
    nll, tokens = float(-logp.gather(-1, targets[:, None]).sum()), int(targets.numel())
    if answer_length is None:
        return Tally(nll=nll, tokens=tokens, per_sequence=[(nll, tokens, 0)])
    correct = int(bool((logits.argmax(dim=-1) == targets).all()))
    return Tally(nll, tokens, correct, 1, per_sequence=[(nll, tokens, correct)])


def _scored_positions(length: int, answer_length: int | None) -> slice:
    first = 0 if answer_length is None else length - 1 - answer_length
    return slice(first, length - 1)


def _check(data: EvalData) -> None:
    if data.kind == "task" and any(a is None for a in data.answer_lengths):
        raise ValueError("task data needs an answer length for every sequence")


@torch.no_grad()
def evaluate(
    lm: LoadedModel,
    candidates: Sequence[RemovalSet],
    datasets: Sequence[EvalData],
    *,
    batch_size: int = 16,
    progress: Progress | None = None,
) -> list[dict[str, Tally]]:
    """Per candidate, ``{data source: Tally}``: trace once, replay from the first removed layer."""
    progress = progress or Progress()
    n_layers = lm.n_layers
    skipped = torch.zeros(len(candidates), n_layers, dtype=torch.bool)
    for row, removed in enumerate(candidates):
        skipped[row, list(removed)] = True
    starts = SkipLayers(skipped).starts()
    order = torch.argsort(starts, stable=True)  # rows that start late run together, on few layers
    tallies = [{d.source: Tally() for d in datasets} for _ in candidates]
    total = sum(len(d.sequences) for d in datasets)
    progress.start(f"{len(candidates)} layer sets × {total} sequences", total)
    for data in datasets:
        _check(data)
        for ids, answer_length in zip(data.sequences, data.answer_lengths, strict=True):
            traced = trace(lm.adapter, pad_batch([ids], pad_id(lm.tokenizer)), sublayers=False)
            device = traced.resid.device
            positions = _scored_positions(len(ids), answer_length)
            for chunk in order.split(batch_size):
                skip = SkipLayers(skipped[chunk].to(device))
                finals = replay(lm.adapter, traced, 0, skip.starts(), intervention=skip)
                for index, row in enumerate(chunk.tolist()):
                    logits = lm.adapter.logits(finals[index, positions])
                    tallies[row][data.source].add(score_logits(logits, ids, answer_length))
            progress.advance(1)
    return tallies


@torch.no_grad()
def evaluate_naive(
    lm: LoadedModel,
    candidates: Sequence[RemovalSet],
    datasets: Sequence[EvalData],
    *,
    make_model: Callable[[LoadedModel, RemovalSet], torch.nn.Module] | None = None,
) -> list[dict[str, Tally]]:
    """The reference: one pruned model copy per candidate, a full forward pass per sequence."""

    make_model = make_model or pruned_copy
    tallies = []
    for removed in candidates:
        model = make_model(lm, removed)
        per_data = {}
        for data in datasets:
            _check(data)
            tally = Tally()
            for ids, answer_length in zip(data.sequences, data.answer_lengths, strict=True):
                input_ids = torch.tensor([ids], device=lm.device)
                logits = model(input_ids=input_ids, use_cache=False).logits[0]
                positions = _scored_positions(len(ids), answer_length)
                tally.add(score_logits(logits[positions], ids, answer_length))
            per_data[data.source] = tally
        tallies.append(per_data)
        del model
    return tallies
