"""Where the prompt ends and the answer begins, per tokenizer (the E7/E8 prompts, Fig. 6).

The paper writes its arithmetic IG/erasure prompt as ``"5 + 7 + 5 + 3 + 1 + 7 = "`` + ``"28"`` and
assumes that the separately tokenised answer is the tail of the tokenised prompt+answer. That holds
for Llama 3 and Qwen tokenizers (the space before a number is a token of its own) and for both
built-in models, but not for tokenizers that merge the space into the number (GPT-2's ``"Ġ28"``):
there the same text is split as ``"… ="`` + ``" 28"`` instead. :func:`paper_split` keeps an
example's own split whenever the tokenizer allows it and moves the whitespace at the boundary to
the other side only when it does not, recording which split was used in ``meta["split"]``:

- ``"as-given"``: the source's own split (for ``builtin:paper`` that is the paper's split);
- ``"shifted"``: the boundary whitespace was moved (``"… = " + "28"`` became ``"… =" + " 28"``,
  or the other way round), so the answer is the tail of the tokens;
- ``"not-tail"``: neither split tokenises as the tail; answer-based analyses skip the example.

The text the model reads (``prompt + answer``) is never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from depthscope.data.example import Example

SPLITS = ("as-given", "shifted", "not-tail")


def answer_is_tail(tokenizer, example: Example) -> bool:
    """Does the answer, tokenised on its own, end the tokenised prompt+answer?"""
    if not example.answer:
        return False
    full = list(tokenizer(example.text, add_special_tokens=True)["input_ids"])
    answer = list(tokenizer(example.answer, add_special_tokens=False)["input_ids"])
    return 0 < len(answer) < len(full) and full[-len(answer) :] == answer


def shifted(example: Example) -> Example | None:
    """The same text with the whitespace at the boundary on the other side, or None if there is none."""
    prompt, answer = example.prompt, example.answer
    trailing = len(prompt) - len(prompt.rstrip())
    if trailing:  # "… = " + "28" -> "… =" + " 28"
        return replace(example, prompt=prompt[:-trailing], answer=prompt[-trailing:] + answer)
    leading = len(answer) - len(answer.lstrip())
    if leading and answer.strip():  # "… =" + " 28" -> "… = " + "28"
        return replace(example, prompt=prompt + answer[:leading], answer=answer[leading:])
    return None


def paper_split(tokenizer, example: Example) -> Example:
    """``example`` split so that its answer is the tail of the tokens, ``meta["split"]`` saying how.

    Examples without an answer are returned unchanged; an example split before keeps its record
    (splitting twice changes nothing).
    """
    if not example.answer:
        return example
    if answer_is_tail(tokenizer, example):
        return _with_split(
            example, "shifted" if example.meta.get("split") == "shifted" else "as-given"
        )
    other = shifted(example)
    if other is not None and answer_is_tail(tokenizer, other):
        return _with_split(other, "shifted")
    return _with_split(example, "not-tail")


def paper_splits(tokenizer, examples: Sequence[Example]) -> list[Example]:
    """:func:`paper_split` of every example."""
    return [paper_split(tokenizer, example) for example in examples]


def _with_split(example: Example, split: str) -> Example:
    return replace(example, meta={**example.meta, "split": split})
