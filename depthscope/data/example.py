"""The unit of input: a prompt, optionally followed by the answer the model should produce."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Example:
    """One input text for an analysis.

    ``prompt + answer`` is what the model reads (teacher forcing). Analyses that need an answer
    (integrated gradients, erasure, depth score) measure at the answer's token positions, which
    must be the tail of the tokenised full text. ``level`` is the difficulty level of levelled
    tasks (hops, operands, nesting depth, MATH level); ``meta`` carries source-specific fields.
    """

    prompt: str
    answer: str = ""
    level: int | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def text(self) -> str:
        return self.prompt + self.answer
