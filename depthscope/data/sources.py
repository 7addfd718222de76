"""`--data` specs: where the prompts of a run come from.

Forms: ``builtin:arith-words`` (default), ``builtin:arith-chain[:K]``, ``builtin:hops[:K]``,
``builtin:nested[:K]``, ``builtin:paper``, ``builtin:text``, ``file:PATH`` (.txt/.jsonl),
``hf:gsm8k``, ``hf:math[:LEVEL]``, ``hf:mquake[:HOPS]``. For a levelled family without ``:K``,
``n`` counts examples per level and levels are interleaved (level 1 example 0, level 2 example 0, …).
"""

from __future__ import annotations

from depthscope.data import generators, hub
from depthscope.data.example import Example
from depthscope.data.files import load_file
from depthscope.data.text import prose_examples
from depthscope.errors import DepthscopeError

DEFAULT_SOURCE = "builtin:arith-words"
DEFAULT_N = 10
HUB_LEVELS = {"math": (1, 2, 3, 4, 5), "mquake": (2, 3, 4)}


def describe_sources() -> list[tuple[str, str]]:
    return [
        (
            "builtin:arith-words",
            "multi-step arithmetic word problems with worked solutions (default)",
        ),
        ("builtin:arith-chain[:K]", "sums/differences of K digits, K=2..6 ('5 + 7 + 5 =' → ' 17')"),
        ("builtin:hops[:K]", "K-hop lookups over invented entities in context, K=1..4"),
        ("builtin:nested[:K]", "arithmetic expressions with parenthesis nesting depth K=1..4"),
        ("builtin:paper", "the paper's two attribution prompts (arithmetic, two-hop question)"),
        ("builtin:text", "English prose passages (Python reference docs bundled with Python)"),
        ("file:PATH", ".txt (one prompt per line) or .jsonl ({text} or {prompt, answer, level})"),
        ("hf:gsm8k", "GSM8K test set in the paper's format (needs the hub and `datasets`)"),
        ("hf:math[:LEVEL]", "MATH intermediate algebra, levels 1-5 (needs the hub)"),
        ("hf:mquake[:HOPS]", "MQuAKE-Remastered CF3k, 2-4 hops (needs the hub)"),
    ]


def _bad_spec(spec: str) -> DepthscopeError:
    forms = ", ".join(form for form, _ in describe_sources())
    return DepthscopeError(f"unknown data source {spec!r}; use one of: {forms}")


def _parse_level(spec: str, text: str, allowed: tuple[int, ...]) -> int:
    try:
        level = int(text)
    except ValueError:
        raise _bad_spec(spec) from None
    if level not in allowed:
        raise DepthscopeError(f"{spec}: level must be one of {', '.join(map(str, allowed))}")
    return level


def load_levels(spec: str, n_per_level: int = 20, *, seed: int = 0) -> dict[int, list[Example]]:
    """Examples per difficulty level of a levelled source (all levels, or the one named by ``:K``)."""
    kind, _, rest = spec.partition(":")
    family, _, level_text = rest.partition(":")
    if kind == "builtin" and family in generators.LEVELLED:
        make, allowed = generators.LEVELLED[family]
        levels = [_parse_level(spec, level_text, allowed)] if level_text else list(allowed)
        return {k: [make(k, i, seed) for i in range(n_per_level)] for k in levels}
    if kind == "hf" and family in HUB_LEVELS:
        allowed = HUB_LEVELS[family]
        levels = [_parse_level(spec, level_text, allowed)] if level_text else list(allowed)
        loader = hub.math_levels if family == "math" else hub.mquake_levels
        return loader(levels, n_per_level)
    raise DepthscopeError(
        f"{spec} has no difficulty levels; use builtin:hops, builtin:arith-chain, builtin:nested, hf:math or hf:mquake"
    )


def _interleave(groups: dict[int, list[Example]]) -> list[Example]:
    out = []
    longest = max((len(g) for g in groups.values()), default=0)
    for i in range(longest):
        out.extend(group[i] for group in groups.values() if i < len(group))
    return out


def load_examples(spec: str, n: int | None = DEFAULT_N, *, seed: int = 0) -> list[Example]:
    """The examples of ``spec``: the first ``n`` of a file or dataset, or ``n`` generated ones."""
    kind, sep, rest = spec.partition(":")
    if not sep:
        raise _bad_spec(spec)
    family, _, level_text = rest.partition(":")
    count = DEFAULT_N if n is None and kind == "builtin" else n
    if kind == "builtin" and family == "arith-words" and not level_text:
        examples = [generators.arith_words(i, seed) for i in range(count)]
    elif kind == "builtin" and family == "paper" and not level_text:
        examples = list(generators.PAPER_PROMPTS)[: n or None]
    elif kind == "builtin" and family == "text" and not level_text:
        examples = prose_examples(n, seed)
    elif (kind == "builtin" and family in generators.LEVELLED) or (
        kind == "hf" and family in HUB_LEVELS
    ):
        examples = _interleave(load_levels(spec, count if count is not None else 20, seed=seed))
    elif kind == "file":
        examples = load_file(rest)[: n or None]
    elif kind == "hf" and family == "gsm8k" and not level_text:
        examples = hub.gsm8k(n)
    else:
        raise _bad_spec(spec)
    if not examples:
        raise DepthscopeError(f"data source {spec} gave no prompts; ask for at least one (-n 1)")
    return examples
