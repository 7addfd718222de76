"""The run's prompts as token ids, with where each answer sits and each difficulty level."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from depthscope.data.answer_split import paper_split
from depthscope.data.example import Example


def tokenize(tokenizer, text: str) -> list[int]:
    """Token ids exactly as the model's tokenizer makes them by default (special tokens included)."""
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def answer_length(tokenizer, example: Example, ids: Sequence[int]) -> int | None:
    """Number of answer tokens at the end of ``ids``, or None when the answer is not its tail.

    The answer is tokenised on its own (no special tokens), as the paper does; if tokenising
    prompt+answer merged tokens across the boundary, the answer positions would be wrong, so the
    example cannot be used by answer-based analyses.
    """
    if not example.answer:
        return None
    answer_ids = list(tokenizer(example.answer, add_special_tokens=False)["input_ids"])
    n = len(answer_ids)
    if n == 0 or n >= len(ids) or list(ids[-n:]) != answer_ids:
        return None
    return n


@dataclass
class PromptSet:
    """Token ids per prompt; ``answer_lengths[i]`` answer tokens end prompt ``i`` (None: no usable answer)."""

    sequences: list[list[int]]
    answer_lengths: list[int | None] = field(default_factory=list)
    levels: list = field(default_factory=list)
    token_strings: list[list[str]] = field(default_factory=list)
    problems: dict[int, str] = field(default_factory=dict)
    # the examples the ids were made from (empty when ids were given): where their answers begin
    # under another split is known only from the text (:func:`paper_answers`)
    examples: list[Example] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.sequences)
        self.answer_lengths = self.answer_lengths or [None] * n
        self.levels = self.levels or [None] * n
        self.token_strings = self.token_strings or [[str(t) for t in s] for s in self.sequences]

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def n_tokens(self) -> int:
        return sum(len(s) for s in self.sequences)

    @classmethod
    def from_examples(cls, tokenizer, examples: Sequence[Example]) -> PromptSet:
        sequences = [tokenize(tokenizer, ex.text) for ex in examples]
        lengths, problems = [], {}
        for index, (example, ids) in enumerate(zip(examples, sequences, strict=True)):
            n = answer_length(tokenizer, example, ids)
            lengths.append(n)
            if example.answer and n is None:
                problems[index] = (
                    f"example {index}: answer {example.answer!r} is not the tail of the tokenised "
                    f"prompt+answer (tokens merge across the boundary)"
                )
        return cls(
            sequences=sequences,
            answer_lengths=lengths,
            levels=[ex.level for ex in examples],
            token_strings=[tokenizer.convert_ids_to_tokens(ids) for ids in sequences],
            problems=problems,
            examples=list(examples),
        )


@dataclass(frozen=True)
class AnswerSplits:
    """Per prompt: answer tokens at the end (None: unusable) and which split gave them."""

    lengths: list[int | None]
    splits: list[str | None]  # "as-given", "shifted", "not-tail"; None without an answer


def paper_answers(tokenizer, prompts: PromptSet) -> AnswerSplits:
    """The paper's prompt/answer split of every prompt, for this tokenizer (paper §3.5, Fig. 6).

    The source's own split where its answer is the tail of the tokens, else the boundary
    whitespace moved (:func:`depthscope.data.answer_split.paper_split`). The ids are not changed:
    only where the answer begins. Prompts given as ids keep their given answer lengths.
    """
    if not prompts.examples:
        lengths = list(prompts.answer_lengths)
        return AnswerSplits(lengths, [None if n is None else "as-given" for n in lengths])
    lengths, splits = [], []
    for example, ids in zip(prompts.examples, prompts.sequences, strict=True):
        if not example.answer:
            lengths.append(None)
            splits.append(None)
            continue
        chosen = paper_split(tokenizer, example)
        n = answer_length(tokenizer, chosen, ids)
        lengths.append(n)
        splits.append("not-tail" if n is None else chosen.meta["split"])
    return AnswerSplits(lengths, splits)
