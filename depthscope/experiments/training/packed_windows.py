"""Packed training windows: whole examples side by side, and which tokens are answer tokens.

As in the paper's data pipeline (App. E), random examples are appended to a window until the next
one would not fit; examples are never split and the rest of the window is padding. Every window is
a pure function of (seed, step, row), so training is reproducible and a resumed run sees exactly
the windows an uninterrupted one would.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from depthscope.core.errors import DepthscopeError
from depthscope.data.example import Example
from depthscope.data.prompts import tokenize

MAX_SKIPPED = 100  # consecutive examples longer than a window before giving up


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids of prompt + answer; ``ids[answer_start:]`` are the answer's tokens."""

    ids: tuple[int, ...]
    answer_start: int

    @property
    def has_answer(self) -> bool:
        return self.answer_start < len(self.ids)


def tokenize_example(tokenizer, example: Example) -> TokenizedExample:
    """The prompt as the model's tokenizer makes it (BOS included if it adds one), then the answer
    tokenised on its own, so the answer positions are exact."""
    prompt = tokenize(tokenizer, example.prompt)
    answer = list(tokenizer(example.answer, add_special_tokens=False)["input_ids"])
    return TokenizedExample(tuple(prompt + answer), len(prompt))


@dataclass(frozen=True)
class PackedBatch:
    """``[B, T]`` token ids, real-token mask, and answer-token mask."""

    input_ids: torch.Tensor
    valid: torch.Tensor
    answer: torch.Tensor


Draw = Callable[[random.Random], TokenizedExample]


def window_rng(seed: int, step: int, row: int) -> random.Random:
    return random.Random(f"depthscope:train-window:{seed}:{step}:{row}")


def pack_window(
    draw: Draw, rng: random.Random, seq_len: int, separator: Sequence[int]
) -> tuple[list[int], list[bool]]:
    """Token ids and answer flags of one window: examples joined by ``separator``."""
    ids: list[int] = []
    answer: list[bool] = []
    skipped = 0
    while True:
        example = draw(rng)
        joint = list(separator) if ids else []
        if len(example.ids) > seq_len:
            skipped += 1
            if skipped >= MAX_SKIPPED:
                raise DepthscopeError(
                    f"training examples are longer than the window of {seq_len} tokens; raise "
                    f"--seq-len"
                )
            continue
        if len(ids) + len(joint) + len(example.ids) > seq_len:
            return ids, answer
        ids += joint + list(example.ids)
        answer += [False] * (len(joint) + example.answer_start)
        answer += [True] * (len(example.ids) - example.answer_start)


def pack_batch(
    draw: Draw,
    *,
    seed: int,
    step: int,
    rows: int,
    seq_len: int,
    pad_id: int,
    separator: Sequence[int] = (),
) -> PackedBatch:
    """The ``rows`` windows of training step ``step``."""
    input_ids = torch.full((rows, seq_len), pad_id, dtype=torch.long)
    valid = torch.zeros((rows, seq_len), dtype=torch.bool)
    answer = torch.zeros((rows, seq_len), dtype=torch.bool)
    for row in range(rows):
        ids, flags = pack_window(draw, window_rng(seed, step, row), seq_len, separator)
        n = len(ids)
        input_ids[row, :n] = torch.tensor(ids, dtype=torch.long)
        valid[row, :n] = True
        answer[row, :n] = torch.tensor(flags, dtype=torch.bool)
    return PackedBatch(input_ids, valid, answer)


def token_loss(logits: torch.Tensor, batch: PackedBatch, loss_on: str) -> torch.Tensor:
    """Mean next-token cross-entropy over the counted targets.

    ``loss_on="all"``: every real token is a target ("modelling the question", the paper's
    default); ``"answer"``: only answer tokens are (``loss_on_target_only``), so predictions made
    while reading the question do not enter the loss at all.
    """
    targets = batch.input_ids[:, 1:]
    counted = batch.valid[:, 1:] if loss_on == "all" else batch.answer[:, 1:]
    logits = logits[:, :-1].float()
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
    ).view_as(targets)
    ce = torch.where(counted, ce, torch.zeros_like(ce))
    return ce.sum() / counted.sum().clamp_min(1)
