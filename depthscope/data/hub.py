"""Hugging Face datasets in the paper's exact formats (spec §1.4, §1.5); need the hub and `datasets`."""

from __future__ import annotations

import random

from depthscope.data.example import Example
from depthscope.errors import DepthscopeError

GSM8K_INSTRUCTION = (
    "Given the following problem, reason and give a final answer to the problem.\nProblem: {question}\n"
    'Your response should end with "The final answer is [answer]" where [answer] is the response to the problem.\n\n'
)


def gsm8k_example(row: dict) -> Example:
    """Spec §1.4: instruction, question, worked rationale, ``The final answer is {final}``.

    The prompt ends with ``"The final answer is"`` and the answer is ``" {final}"``, so ``.text``
    is exactly the paper's string and the answer can be measured.
    """
    rationale, final = row["answer"].split("####")
    prompt = GSM8K_INSTRUCTION.format(question=row["question"]) + rationale + "The final answer is"
    return Example(prompt=prompt, answer=" " + final.strip(), meta={"source": "openai/gsm8k"})


def math_example(row: dict) -> Example:
    """Spec §1.5 ``Math(level)``: prompt ``Problem: …\\nAnswer:``, answer the full solution."""
    return Example(
        prompt=f"Problem: {row['problem']}\nAnswer:",
        answer=f" {row['solution']}",
        level=int(row["level"][-1]),
        meta={"source": "EleutherAI/hendrycks_math"},
    )


def mquake_example(row: dict) -> Example:
    """Spec §1.5 ``MQuake(n_hops)``: first question, original answer."""
    return Example(
        prompt=f"Question: {row['questions'][0]}\nAnswer:",
        answer=f" {row['answer']}",
        level=len(row["orig_triples"]),
        meta={"source": "henryzhongsc/MQuAKE-Remastered"},
    )


def _load(name: str, *args: str, split: str):
    try:
        import datasets
    except ImportError:
        raise DepthscopeError(
            "hf: sources need the `datasets` package; pip install 'depthscope[hf]' (or use builtin:/file: sources)"
        ) from None
    try:
        return datasets.load_dataset(name, *args, split=split)
    except Exception as exc:
        raise DepthscopeError(
            f"could not load {name} from the Hugging Face hub ({type(exc).__name__}; offline?); "
            f"use builtin:arith-words or file:PATH instead"
        ) from None


def gsm8k(n: int | None) -> list[Example]:
    rows = _load("openai/gsm8k", "main", split="test")
    count = len(rows) if n is None else min(n, len(rows))
    return [gsm8k_example(rows[i]) for i in range(count)]


def math_levels(levels: list[int], n_per_level: int | None) -> dict[int, list[Example]]:
    rows = list(_load("EleutherAI/hendrycks_math", "intermediate_algebra", split="test"))
    random.Random(42).shuffle(rows)
    out = {}
    for level in levels:
        chosen = [r for r in rows if r["level"][-1:].isdigit() and int(r["level"][-1]) == level]
        out[level] = [math_example(r) for r in chosen[:n_per_level]]
    return out


def mquake_levels(levels: list[int], n_per_level: int | None) -> dict[int, list[Example]]:
    rows = list(_load("henryzhongsc/MQuAKE-Remastered", split="CF3k"))
    random.Random(42).shuffle(rows)
    out = {}
    for level in levels:
        chosen = [r for r in rows if len(r["orig_triples"]) == level]
        out[level] = [mquake_example(r) for r in chosen[:n_per_level]]
    return out
