"""Hugging Face datasets in the paper's exact formats (as its code builds them).

The formatting functions are pure (a row dict in, an :class:`Example` out) so they are tested
offline; the loaders need the optional ``datasets`` package and the hub (or its local cache), and
turn every failure into one actionable line. Field names follow the reference code
(``ShayanTalaei/llm_effective_depth`` ``analysis/lib/datasets``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

from depthscope.core.errors import DepthscopeError
from depthscope.core.hub_access import hub_reachable, offline_requested
from depthscope.data.example import Example

GSM8K = ("openai/gsm8k", "main", "test")
MATH = ("EleutherAI/hendrycks_math", "intermediate_algebra", "test")
MQUAKE = ("henryzhongsc/MQuAKE-Remastered", None, "CF3k")
SHUFFLE_SEED = 42  # the reference shuffles each filtered level with random.Random(42)

GSM8K_HEAD = (
    "Given the following problem, reason and give a final answer to the problem.\n"
    "Problem: {question}\n"
    'Your response should end with "The final answer is [answer]" where [answer] is the '
    "response to the problem.\n\n"
)


def gsm8k_example(row: dict) -> Example:
    """GSM8K as the paper's code formats it: instruction, question, GSM8K's worked rationale, ``The final answer is {final}``.

    Split: the prompt ends with ``"The final answer is"`` and the answer is ``" " + final``, so
    ``.text`` is exactly the reference string and the answer's tokens can be measured.
    """
    parts = row["answer"].split("####")
    if len(parts) != 2:
        raise DepthscopeError(
            "GSM8K row has no single '####' before its final answer; the dataset format changed, "
            "use file:PATH instead"
        )
    rationale, final = parts
    prompt = GSM8K_HEAD.format(question=row["question"]) + rationale + "The final answer is"
    return Example(prompt=prompt, answer=" " + final.strip(), meta={"source": GSM8K[0]})


def math_level(row: dict) -> int | None:
    """The MATH difficulty ("Level 3" -> 3); None for "Level ?" (the reference would crash)."""
    last = str(row["level"])[-1:]
    return int(last) if last.isdigit() else None


def math_example(row: dict) -> Example:
    """MATH as the paper's code formats it: prompt ``"Problem: {problem}\\nAnswer:"``, answer the solution."""
    return Example(
        prompt=f"Problem: {row['problem']}\nAnswer:",
        answer=f" {row['solution']}",
        level=math_level(row),
        meta={"source": MATH[0]},
    )


def mquake_example(row: dict) -> Example:
    """MQuAKE as the paper's code formats it: the first paraphrase of the question, the original answer."""
    return Example(
        prompt=f"Question: {row['questions'][0]}\nAnswer:",
        answer=f" {row['answer']}",
        level=len(row["orig_triples"]),
        meta={"source": MQUAKE[0]},
    )


@contextmanager
def _quiet_hub_logs() -> Iterator[None]:
    """Hide huggingface_hub's retry warnings: a failure becomes one DepthscopeError line."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _load(name: str, config: str | None, split: str) -> Iterable[dict]:
    """The dataset split, or a one-line error saying how to install or what to use instead.

    With ``HF_HUB_OFFLINE=1`` the local ``datasets`` cache is used and the network never asked.
    """
    try:
        import datasets
    except ImportError:
        raise DepthscopeError(
            f"hf: data sources need the optional `datasets` package to load {name}; "
            "pip install 'depthscope[hf]', or use builtin:arith-words or file:PATH"
        ) from None
    # without the probe, ``datasets`` retries for ~25 s and prints a dozen warnings before failing
    if not offline_requested() and not hub_reachable():
        raise DepthscopeError(
            f"could not reach the Hugging Face hub to load {name} (offline?); use "
            "builtin:arith-words or file:PATH instead, or HF_HUB_OFFLINE=1 to use a local cache"
        )
    args = (name,) if config is None else (name, config)
    try:
        with _quiet_hub_logs():
            return datasets.load_dataset(*args, split=split)
    except Exception as exc:  # network, offline mode, missing cache, renamed repo: all the same fix
        raise DepthscopeError(
            f"could not load {name} from the Hugging Face hub ({type(exc).__name__}; offline?); "
            "use builtin:arith-words or file:PATH instead"
        ) from None


def _format(rows: Iterable[dict], fmt: Callable[[dict], Example], name: str) -> list[Example]:
    """Format rows, reporting a changed dataset schema in one line instead of a KeyError."""
    try:
        return [fmt(row) for row in rows]
    except (KeyError, IndexError, TypeError) as exc:
        raise DepthscopeError(
            f"{name} rows lack the expected fields ({type(exc).__name__}: {exc}); "
            "the dataset format changed, use file:PATH instead"
        ) from None


def gsm8k(n: int | None) -> list[Example]:
    """The first ``n`` (all if None) GSM8K test problems in dataset order, as the paper's code."""
    return _format(islice(_load(*GSM8K), n), gsm8k_example, GSM8K[0])


def _levels(
    rows: Iterable[dict],
    level_of: Callable[[dict], Any],
    levels: list[int],
    n_per_level: int | None,
) -> dict[int, list[dict]]:
    """Rows per level: filter, then shuffle each level with ``Random(42)``, then take the first n.

    The order matters: the reference filters first and shuffles the filtered list, so the same
    seed on the whole split would pick different examples.
    """
    rows = list(rows)
    out = {}
    for level in levels:
        chosen = [row for row in rows if level_of(row) == level]
        random.Random(SHUFFLE_SEED).shuffle(chosen)
        out[level] = chosen[:n_per_level]
    return out


def math_levels(levels: list[int], n_per_level: int | None) -> dict[int, list[Example]]:
    """MATH intermediate algebra, per level (E9, Fig. 7)."""
    try:
        grouped = _levels(_load(*MATH), math_level, levels, n_per_level)
    except KeyError as exc:
        raise DepthscopeError(
            f"{MATH[0]} rows lack the field {exc}; use file:PATH instead"
        ) from None
    return {k: _format(rows, math_example, MATH[0]) for k, rows in grouped.items()}


def mquake_levels(levels: list[int], n_per_level: int | None) -> dict[int, list[Example]]:
    """MQuAKE-Remastered CF3k, per number of hops (E9, Fig. 7)."""
    try:
        grouped = _levels(_load(*MQUAKE), lambda r: len(r["orig_triples"]), levels, n_per_level)
    except KeyError as exc:
        raise DepthscopeError(
            f"{MQUAKE[0]} rows lack the field {exc}; use file:PATH instead"
        ) from None
    return {k: _format(rows, mquake_example, MQUAKE[0]) for k, rows in grouped.items()}
