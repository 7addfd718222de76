"""``--data`` specs: where the prompts of a run come from.

Forms (see :func:`describe_sources`): ``builtin:arith-words`` (the default), the levelled
families ``builtin:arith-chain[:K]``, ``builtin:arith-fewshot[:K]``, ``builtin:hops[:K]``,
``builtin:nested[:K]``, DeepMind-style arithmetic ``builtin:dm-arith[:SCALE]``, the fixed sets
``builtin:paper``, ``builtin:e11``, ``builtin:e11-small``, ``builtin:e11-baseline``,
``builtin:e12``, and ``builtin:text``, ``file:PATH`` (.txt/.jsonl), ``hf:gsm8k``,
``hf:math[:LEVEL]`` and ``hf:mquake[:HOPS]``.

How many: ``n`` generated examples (10 if None) for generators; the first ``n`` (all if None) of a
file, corpus or dataset. For a levelled family ``n`` counts examples *per level*; without ``:K``
every level is used and :func:`load_examples` interleaves them (level 1 example 0, level 2
example 0, ..., level 1 example 1, ...), so a larger ``n`` only appends examples. Generated
sources give at most ``MAX_GENERATED`` examples per level: a larger ``n`` is capped, with a notice
(:func:`capped_count`), before anything is generated.

Each source also says where the depth score splits its examples (:func:`split_rule_for`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby

from depthscope.core.errors import DepthscopeError
from depthscope.data import dm_arith, generators, hub_datasets
from depthscope.data.dm_arith_prompts import SETS as DM_ARITH_SETS
from depthscope.data.example import Example
from depthscope.data.prompt_files import load_file
from depthscope.data.text import prose_examples, short_prose_examples

DEFAULT_SOURCE = "builtin:arith-words"
# The residual-stream analyses' default data: two distributions, so the verdict can say whether
# what it finds holds beyond one generator (``A+B``: -n counts prompts per source).
DEFAULT_DATA = "builtin:arith-words+builtin:prose"
MIXTURE = "+"
KINDS = ("builtin", "file", "hf")
GSM8K = "hf:gsm8k"  # the paper's prompts for E2-E6 (needs the hub)
DEFAULT_N = 10  # generated examples (per level for levelled families) when n is None
HUB_LEVELS = {"math": (1, 2, 3, 4, 5), "mquake": (2, 3, 4)}
# The paper's depth-score split rule per hub dataset (E9): MATH's long worked solutions are split
# at offsets inside the answer; MQuAKE's short answers at their first token. Every other source
# (generated tasks, GSM8K's final answer, builtin:paper, files) splits at the answer start.
HUB_SPLIT_RULES = {"math": "in-answer", "mquake": "answer-start", "gsm8k": "answer-start"}
# DeepMind-style arithmetic (E11, E12): ``builtin:dm-arith[:SCALE]``. Without a scale it is the
# small one, which the laptop-scale E11 models are trained on (`depthscope scratch`'s default).
DM_ARITH = "builtin:dm-arith"
DM_ARITH_DEFAULT_SCALE = "small"
DM_ARITH_STREAM = "analysis"  # its own problem stream: independent of training and evaluation
# Fixed prompt sets, given whole (the first n with -n, never generated, never capped): the paper's
# E7/E8 prompts, and the analysis prompts of E11 (App. E) and E12 (App. D.5).
FIXED_SETS: dict[str, tuple[Example, ...]] = {
    "builtin:paper": generators.PAPER_PROMPTS,
    **{f"builtin:{name}": examples for name, examples in DM_ARITH_SETS.items()},
}
# Most examples a generated source gives per level: far more than any analysis needs (the paper
# uses 20 per level), small enough that generating them takes seconds and little memory.
MAX_GENERATED = 10_000


def describe_sources() -> list[tuple[str, str]]:
    """(spec form, one-line description) of every source, for ``--help`` and the docs."""
    return [
        (DEFAULT_SOURCE, "arithmetic word problems, 2-4 steps, with worked solution (default)"),
        ("builtin:arith-chain[:K]", "sums/differences of K digits, '5 + 7 + 3 =' -> ' 15'; K=2..6"),
        ("builtin:arith-fewshot[:K]", "3 solved sums of K operands 1-4, then one to solve; K=2..6"),
        ("builtin:hops[:K]", "K-hop lookups over invented people in context; K=1..4"),
        ("builtin:nested[:K]", "expressions with parenthesis depth K, '((3 + 4) - 2) ='; K=1..4"),
        (
            f"{DM_ARITH}[:SCALE]",
            "DeepMind-style arithmetic, 'Q: What is -6 - 4? A:' -> ' -10'; SCALE small (default), dm",
        ),
        ("builtin:paper", "the paper's two IG/erasure prompts (arithmetic, two-hop question)"),
        ("builtin:e11", "E11's four erasure prompts (DM arithmetic, paper-sized numbers)"),
        ("builtin:e11-small", "E11's four prompt shapes with one-digit operands (scale small)"),
        ("builtin:e11-baseline", "E11's counterfactual prompt, for erasure.baseline_data"),
        ("builtin:e12", "E12's 17 DM-arithmetic prompts for future effects"),
        ("builtin:text", "English prose passages (Python's bundled reference docs)"),
        ("builtin:prose", "short prose passages, 200-320 characters (same docs)"),
        ("SOURCE+SOURCE", f"a mixture, -n prompts of each, interleaved (default: {DEFAULT_DATA})"),
        ("file:PATH", ".txt (a prompt per line) or .jsonl ({text} or {prompt, answer, level})"),
        ("hf:gsm8k", "GSM8K test in the paper's format (needs `datasets` and the hub)"),
        ("hf:math[:LEVEL]", "MATH intermediate algebra, levels 1-5 (needs the hub)"),
        ("hf:mquake[:HOPS]", "MQuAKE-Remastered CF3k, 2-4 hops (needs the hub)"),
    ]


def _bad_spec(spec: str) -> DepthscopeError:
    forms = ", ".join(form for form, _ in describe_sources())
    return DepthscopeError(f"unknown data source {spec!r}; use one of: {forms}")


def _check_n(n: int | None, what: str) -> None:
    if n is not None and n < 1:
        raise DepthscopeError(f"{what} must be at least 1 (got {n})")


def _levels_wanted(spec: str, level_text: str, allowed: tuple[int, ...]) -> list[int]:
    """All levels of the family, or the one named after the second colon."""
    if not level_text:
        return list(allowed)
    try:
        level = int(level_text)
    except ValueError:
        raise _bad_spec(spec) from None
    if level not in allowed:
        raise DepthscopeError(
            f"{spec}: level {level} does not exist; use one of {', '.join(map(str, allowed))}"
        )
    return [level]


def _file_levels(path: str, n_per_level: int | None) -> dict[int, list[Example]]:
    """A .jsonl file's examples grouped by their "level" field, file order kept within a level."""
    examples = load_file(path)
    if any(example.level is None for example in examples):
        raise DepthscopeError(
            f'{path}: every line needs an integer "level" to be used by level; add it or drop the line'
        )
    ordered = sorted(examples, key=lambda e: e.level)  # stable: file order within a level
    return {k: list(group)[:n_per_level] for k, group in groupby(ordered, key=lambda e: e.level)}


def load_levels(
    spec: str,
    n_per_level: int | None = 20,
    *,
    seed: int = 0,
    notify: Callable[[str], None] | None = None,
) -> dict[int, list[Example]]:
    """Examples per difficulty level: every level of the family, or only ``K`` for ``family:K``.

    Levelled sources: ``builtin:arith-chain|arith-fewshot|hops|nested``, ``hf:math``,
    ``hf:mquake``, and ``file:PATH.jsonl`` whose lines carry ``"level"``. The depth score (E9)
    compares levels. ``n_per_level`` is capped as in :func:`load_examples`.
    """
    _check_n(n_per_level, "the number of examples per level")
    spec = spec.strip()
    n_per_level = _capped(spec, n_per_level, notify)
    kind, _, rest = spec.partition(":")
    family, _, level_text = rest.partition(":")
    if kind == "builtin" and family in generators.LEVELLED:
        task = generators.LEVELLED[family]
        count = DEFAULT_N if n_per_level is None else n_per_level
        levels = _levels_wanted(spec, level_text, task.levels)
        return {k: [task.make(k, i, seed) for i in range(count)] for k in levels}
    if kind == "hf" and family in HUB_LEVELS:
        levels = _levels_wanted(spec, level_text, HUB_LEVELS[family])
        loader = hub_datasets.math_levels if family == "math" else hub_datasets.mquake_levels
        return _non_empty(spec, loader(levels, n_per_level))
    if kind == "file":
        return _file_levels(rest, n_per_level)
    raise DepthscopeError(
        f"{spec} has no difficulty levels; use builtin:hops, builtin:arith-chain, "
        "builtin:arith-fewshot, builtin:nested, "
        'hf:math, hf:mquake or a .jsonl file with "level" fields'
    )


def _non_empty(spec: str, groups: dict[int, list[Example]]) -> dict[int, list[Example]]:
    empty = [str(level) for level, examples in groups.items() if not examples]
    if empty:
        raise DepthscopeError(f"{spec} has no examples at level {', '.join(empty)}; pick another")
    return groups


def _interleave(groups: dict[int, list[Example]]) -> list[Example]:
    """Level 1 example 0, level 2 example 0, ..., level 1 example 1, ...: prefix-stable in n."""
    longest = max((len(group) for group in groups.values()), default=0)
    return [group[i] for i in range(longest) for group in groups.values() if i < len(group)]


def dm_arith_scale(spec: str, default: str = DM_ARITH_DEFAULT_SCALE) -> str | None:
    """``builtin:dm-arith[:SCALE]`` -> the scale (``default`` when not named), else None."""
    kind, _, rest = spec.strip().partition(":")
    family, _, scale = rest.partition(":")
    if kind != "builtin" or family != "dm-arith":
        return None
    if scale and scale not in dm_arith.SCALES:
        raise DepthscopeError(
            f"{spec}: unknown scale {scale!r}; use {DM_ARITH}, "
            + ", ".join(f"{DM_ARITH}:{name}" for name in dm_arith.SCALES)
        )
    return scale or default


def mixture_parts(spec: str) -> list[str] | None:
    """``A+B`` -> ``[A, B]`` when every part is a source spec (``builtin:``, ``file:``, ``hf:``);
    None otherwise (a file name may contain a ``+``)."""
    if MIXTURE not in spec:
        return None
    parts = [part.strip() for part in spec.split(MIXTURE)]
    if len(parts) < 2 or not all(part.partition(":")[0] in KINDS for part in parts):
        return None
    if len(set(parts)) < len(parts):
        raise DepthscopeError(f"{spec} names a source twice; name each source once")
    return parts


def _mixture(parts: list[str], n: int | None, seed: int) -> list[Example]:
    """Each part's examples tagged with ``meta["data_source"]``, interleaved (A0, B0, A1, ...):
    the first k prompts of a run hold every source alike."""
    count = n if n is not None else max(1, DEFAULT_N // len(parts))
    groups = {}
    for index, part in enumerate(parts):
        if mixture_parts(part):
            raise _bad_spec(part)
        examples = _examples(part, count, seed)
        groups[index] = [
            Example(e.prompt, e.answer, e.level, {**e.meta, "data_source": part}) for e in examples
        ]
    return _interleave(groups)


def _examples(spec: str, n: int | None, seed: int) -> list[Example]:
    parts = mixture_parts(spec)
    if parts:
        return _mixture(parts, n, seed)
    kind, sep, rest = spec.partition(":")
    family, _, level_text = rest.partition(":")
    if kind == "file":
        return load_file(rest)[:n]
    scale = dm_arith_scale(spec)
    if scale:
        count = DEFAULT_N if n is None else n
        return dm_arith.mixed_examples(count, seed, scale=scale, split=DM_ARITH_STREAM)
    if kind == "builtin" and family in generators.LEVELLED:
        return _interleave(load_levels(spec, n, seed=seed))
    if kind == "hf" and family in HUB_LEVELS:
        return _interleave(load_levels(spec, n, seed=seed))
    if level_text:
        raise _bad_spec(spec)
    if spec == DEFAULT_SOURCE:
        return [generators.arith_words(i, seed) for i in range(DEFAULT_N if n is None else n)]
    if spec in FIXED_SETS:
        return list(FIXED_SETS[spec])[:n]
    if spec == "builtin:text":
        return prose_examples(n, seed)
    if spec == "builtin:prose":
        return short_prose_examples(DEFAULT_N if n is None else n, seed)
    if spec == "hf:gsm8k":
        return hub_datasets.gsm8k(n)
    raise _bad_spec(spec)


def check_spec(spec: str) -> None:
    """Refuse a spec no source reads, before a model loads: an unknown kind, or a built-in
    generator or set that does not exist (one example generated). Files and datasets are read
    only when the run starts (``file:`` is checked there, ``hf:`` needs the hub)."""
    spec = spec.strip()
    for part in mixture_parts(spec) or [spec]:
        kind = part.partition(":")[0]
        if kind not in KINDS:
            raise _bad_spec(part)
        if kind == "builtin":
            _examples(part, 1, 0)


def _levelled(spec: str) -> bool:
    kind, _, rest = spec.partition(":")
    return kind == "builtin" and rest.partition(":")[0] in generators.LEVELLED


def _is_generated(spec: str) -> bool:
    parts = mixture_parts(spec)
    if parts:
        return any(_is_generated(part) for part in parts)
    kind, _, rest = spec.partition(":")
    dm = kind == "builtin" and rest.partition(":")[0] == "dm-arith"
    return spec == DEFAULT_SOURCE or dm or _levelled(spec)


@dataclass(frozen=True)
class Count:
    """How many examples a source will give for ``-n``, and the notice when that is fewer."""

    n: int | None
    notice: str | None = None


def capped_count(spec: str, n: int | None) -> Count:
    """``n`` capped to what ``spec`` can sensibly give, with a one-line notice when capped.

    Call it before generating (the CLI prints the notice); :func:`load_examples` applies the
    same cap. Files, hub datasets and the fixed built-in sets (``builtin:paper``, ``builtin:e11``,
    ``builtin:e12``, ..., ``builtin:text``) are never capped: they end by themselves.
    """
    spec = spec.strip()
    if n is None:
        return Count(None)
    if _is_generated(spec) and n > MAX_GENERATED:
        per = " per level (the paper uses 20 per level)" if _levelled(spec) else ""
        return Count(
            MAX_GENERATED, f"-n {n} is more than {spec} generates; using {MAX_GENERATED}{per}"
        )
    return Count(n)


def default_count(spec: str | None) -> int | None:
    """The CLI's ``-n`` when none is given: a fixed set whole (``builtin:e12`` has 17 prompts, and
    10 would silently drop some), ``DEFAULT_N`` shared out over a mixture's sources, else
    ``DEFAULT_N``."""
    parts = mixture_parts(spec.strip()) if spec is not None else None
    if parts:
        return max(1, DEFAULT_N // len(parts))
    return None if spec is not None and spec.strip() in FIXED_SETS else DEFAULT_N


def _capped(spec: str, n: int | None, notify: Callable[[str], None] | None) -> int | None:
    count = capped_count(spec, n)
    if count.notice:
        if notify is None:
            warnings.warn(count.notice, stacklevel=3)
        else:
            notify(count.notice)
    return count.n


def split_rule_for(spec: str) -> str:
    """Where the depth score splits examples of ``spec``: ``"answer-start"`` or ``"in-answer"``.

    As the paper (E9): MQuAKE-like short answers at the first answer token, MATH's worked
    solutions at offsets inside the answer. Decided by the dataset, never by answer length; the
    depth score uses it unless ``split_rule`` is set.
    """
    spec = spec.strip()
    parts = mixture_parts(spec)
    if parts:
        rules = {split_rule_for(part) for part in parts}
        if len(rules) > 1:
            raise DepthscopeError(
                f"{spec} mixes sources split at the answer start and inside the answer; run the "
                "depth score on each source"
            )
        return rules.pop()
    kind, _, rest = spec.partition(":")
    family = rest.partition(":")[0]
    if kind == "builtin" and family in generators.LEVELLED:
        return generators.LEVELLED[family].split_rule
    if kind == "hf" and family in HUB_SPLIT_RULES:
        return HUB_SPLIT_RULES[family]
    if kind == "file" or spec in {DEFAULT_SOURCE, "builtin:text", "builtin:prose", *FIXED_SETS}:
        return "answer-start"
    if dm_arith_scale(spec):  # short numeric answers
        return "answer-start"
    raise _bad_spec(spec)


def load_examples(
    spec: str,
    n: int | None = None,
    *,
    seed: int = 0,
    notify: Callable[[str], None] | None = None,
) -> list[Example]:
    """The examples of ``spec``: ``n`` generated ones, or the first ``n`` of a file or dataset.

    ``n=None``: 10 generated examples (per level for levelled families), or a whole file or
    dataset. Levelled families without ``:K`` give all levels interleaved. An ``n`` beyond what
    the source gives is capped first (:func:`capped_count`); the notice goes to ``notify``, or
    is issued as a warning.
    """
    _check_n(n, "the number of prompts")
    spec = spec.strip()
    examples = _examples(spec, _capped(spec, n, notify), seed)
    if not examples:
        raise DepthscopeError(f"data source {spec} gave no prompts; ask for at least one (-n 1)")
    return examples
