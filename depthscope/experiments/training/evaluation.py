"""Teacher-forced full-answer accuracy, the paper's metric for the DM-math models (App. E).

An example counts as correct when the argmax prediction is right on *every* answer token, with the
true answer fed in (teacher forcing), as the paper's validation does per DM-math file.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from depthscope.engine.batch import pad_batch
from depthscope.experiments.training.packed_windows import TokenizedExample


@torch.no_grad()
def correct_answers(
    model: torch.nn.Module,
    examples: Sequence[TokenizedExample],
    pad_id: int,
    batch_size: int = 32,
) -> list[bool]:
    """For each example, whether every answer token is the model's argmax prediction."""
    device = next(model.parameters()).device
    verdicts: list[bool] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        batch = pad_batch([e.ids for e in chunk], pad_id).to(device)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.valid.long()).logits
        predicted = logits.argmax(dim=-1)
        for row, example in enumerate(chunk):
            end = len(example.ids)
            guesses = predicted[row, example.answer_start - 1 : end - 1].tolist()
            verdicts.append(guesses == list(example.ids[example.answer_start :]))
    return verdicts


def accuracy(
    model: torch.nn.Module, examples: Sequence[TokenizedExample], pad_id: int, batch_size: int = 32
) -> float:
    """Fraction of ``examples`` answered correctly (teacher-forced, every answer token)."""
    verdicts = correct_answers(model, examples, pad_id, batch_size)
    return sum(verdicts) / len(verdicts) if verdicts else float("nan")
