"""Tokenised, right-padded batches of texts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from depthscope.core.errors import DepthscopeError
from depthscope.data.prompts import tokenize


@dataclass(frozen=True)
class Batch:
    """Right-padded token ids; ``valid[b, t]`` is False on padding, which every statistic skips."""

    input_ids: torch.Tensor  # [B, T] long
    valid: torch.Tensor  # [B, T] bool

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def lengths(self) -> list[int]:
        return self.valid.sum(dim=1).tolist()

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.input_ids.to(device), self.valid.to(device))


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> Batch:
    """Right-pad token id lists into a :class:`Batch`."""
    if not sequences:
        raise DepthscopeError("no prompts to run; pass at least one prompt (e.g. -n 10)")
    if any(len(s) == 0 for s in sequences):
        raise DepthscopeError(
            "a prompt tokenised to zero tokens; remove empty prompts from the data"
        )
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    valid = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        valid[row, : len(seq)] = True
    return Batch(ids, valid)


def pad_id(tokenizer) -> int:
    """The tokenizer's pad id, else EOS, else 0 (padding is masked, so its value never matters)."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def encode(tokenizer, texts: Sequence[str]) -> Batch:
    """Tokenise texts with the tokenizer's defaults and right-pad them into one batch."""
    return pad_batch([tokenize(tokenizer, t) for t in texts], pad_id(tokenizer))
