"""Data sources: generated tasks are deterministic and correct; files and hub sources fail clearly.

Everything here is offline: answers are re-derived independently of the generators (the
arithmetic re-evaluated, hop chains re-followed from the facts in the text), and the hub loaders
run against a fake ``datasets`` module.
"""

from __future__ import annotations

import ast
import json
import operator
import re
import sys
import types

import pytest
from tiny_models import bpe_tokenizer

from depthscope.core.errors import DepthscopeError
from depthscope.data import fewshot, generators, hub_datasets, sources
from depthscope.data.answer_split import answer_is_tail, paper_split, paper_splits, shifted
from depthscope.data.example import Example
from depthscope.data.prompts import AnswerSplits, PromptSet, paper_answers
from depthscope.data.sources import (
    DEFAULT_SOURCE,
    MAX_GENERATED,
    capped_count,
    describe_sources,
    load_examples,
    load_levels,
    split_rule_for,
)

OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def evaluate(expression: str) -> int:
    """Integer +, -, * and parentheses, via the AST (no eval)."""

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.BinOp) and type(node.op) in OPS:
            return OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        raise AssertionError(f"unexpected syntax in {expression!r}")

    return walk(ast.parse(expression, mode="eval").body)


def paren_depth(expression: str) -> int:
    depth = deepest = 0
    for char in expression:
        depth += {"(": 1, ")": -1}.get(char, 0)
        assert depth >= 0
        deepest = max(deepest, depth)
    assert depth == 0
    return deepest


# --- determinism ---------------------------------------------------------------------------

GENERATED = (
    "builtin:arith-words",
    "builtin:hops",
    "builtin:nested:3",
    "builtin:arith-chain:4",
    "builtin:arith-fewshot:3",
    "builtin:dm-arith",
    "builtin:dm-arith:dm",
)


@pytest.mark.parametrize("spec", GENERATED)
def test_generators_are_deterministic_and_seeded(spec):
    a = load_examples(spec, 6, seed=1)
    assert a == load_examples(spec, 6, seed=1)
    assert a != load_examples(spec, 6, seed=2)
    assert len({e.text for e in a}) == len(a)


@pytest.mark.parametrize("spec", GENERATED)
def test_example_i_does_not_depend_on_n(spec):
    small, large = load_examples(spec, 3, seed=5), load_examples(spec, 9, seed=5)
    assert large[: len(small)] == small


def test_default_source_and_default_n():
    assert DEFAULT_SOURCE == "builtin:arith-words"
    assert len(load_examples(DEFAULT_SOURCE)) == 10
    assert len(load_examples("builtin:nested:2")) == 10


# --- arithmetic word problems --------------------------------------------------------------


def test_arith_words_worked_solutions_are_correct():
    """Every solution line is right, uses only numbers from the problem or earlier lines, and
    the last line's result is the answer."""
    templates, steps = set(), set()
    for example in load_examples("builtin:arith-words", 2000, seed=3):
        problem, solution, final = example.prompt.split("\n")
        assert problem.startswith("Problem: ") and problem.endswith("?")
        assert final == "The final answer is" and re.fullmatch(r" \d+", example.answer)
        lines = re.findall(r"(\d+(?: [-+*] \d+)+) = (\d+)\.", solution.removeprefix("Solution: "))
        assert " ".join(f"{lhs} = {rhs}." for lhs, rhs in lines) == solution[len("Solution: ") :]
        known = {int(x) for x in re.findall(r"\d+", problem)} | {2}  # "doubles"
        for lhs, rhs in lines:
            assert evaluate(lhs) == int(rhs) >= 0, (lhs, rhs)
            assert {int(x) for x in re.findall(r"\d+", lhs)} <= known, (lhs, example.prompt)
            known.add(int(rhs))
        assert int(lines[-1][1]) == int(example.answer)
        assert 2 <= len(lines) <= 4 and example.meta["steps"] == len(lines)
        assert all(int(x) <= 200 for x in re.findall(r"\d+", example.text))
        templates.add(example.meta["template"])
        steps.add(len(lines))
    assert templates == {"holdings", "shopping", "compare", "rate"} and steps == {2, 3, 4}


def test_arith_words_are_short():
    """~60-90 SmolLM2 tokens, which split numbers into digits: about 2.4 characters a token."""
    lengths = [len(e.text) for e in load_examples("builtin:arith-words", 400)]
    assert min(lengths) >= 120 and max(lengths) <= 260
    assert 160 <= sum(lengths) / len(lengths) <= 200


# --- levelled families ---------------------------------------------------------------------


@pytest.mark.parametrize("level", [2, 3, 4, 5, 6])
def test_arith_chain_answers(level):
    for example in load_levels(f"builtin:arith-chain:{level}", 40)[level]:
        expression = example.prompt.removesuffix(" =")
        assert re.fullmatch(r"\d( [+-] \d)*", expression)
        assert len(re.findall(r"\d", expression)) == level
        assert example.answer == f" {evaluate(expression)}" and evaluate(expression) >= 0
        running = [evaluate(expression[: i + 1]) for i in range(0, len(expression), 4)]
        assert min(running) >= 0 and example.level == level


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_nested_depth_and_answers(level):
    for example in load_levels(f"builtin:nested:{level}", 40)[level]:
        expression = example.prompt.removesuffix(" =")
        assert paren_depth(expression) == level
        assert example.answer == f" {evaluate(expression)}" and evaluate(expression) >= 1
        assert example.level == level


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_hops_follow_the_facts(level):
    for example in load_levels(f"builtin:hops:{level}", 30)[level]:
        facts_text, question = example.prompt.split("\n")
        facts = re.findall(r"(\w+)'s (\w+) is (\w+)\.", facts_text)
        assert " ".join(f"{a}'s {r} is {b}." for a, r, b in facts) == facts_text
        (relation,) = {r for _, r, _ in facts}
        subjects = [a for a, _, _ in facts]
        assert len(subjects) == len(set(subjects)), "one fact per entity: a unique answer"
        assert len(facts) > level, "distractor facts are present"
        match = re.fullmatch(
            rf"The (?:{relation} of the ){{{level - 1}}}{relation} of (\w+) is", question
        )
        assert match, question
        entity, lookup = match.group(1), {a: b for a, _, b in facts}
        for _ in range(level):
            entity = lookup[entity]
        assert example.answer == f" {entity}" and example.level == level
        assert re.fullmatch(r" [A-Z][a-z]+", example.answer)


@pytest.mark.parametrize("level", [2, 3, 4, 5, 6])
def test_arith_fewshot_shots_and_answers(level):
    """Solved lines are right, every line has ``level`` operands 1-4, the answer is the bare sum."""
    low, high = fewshot.OPERANDS
    operand = rf"[{low}-{high}]"
    for example in load_levels(f"builtin:arith-fewshot:{level}", 30)[level]:
        *solved, question = example.prompt.split("\n")
        assert len(solved) == fewshot.SHOTS and question.endswith(" = ")
        for line in solved:
            lhs, rhs = line.split(" = ")
            assert re.fullmatch(rf"{operand}( \+ {operand}){{{level - 1}}}", lhs), line
            assert evaluate(lhs) == int(rhs)
        lhs = question.removesuffix(" = ")
        assert re.fullmatch(rf"{operand}( \+ {operand}){{{level - 1}}}", lhs), question
        assert example.answer == str(evaluate(lhs)) and example.level == level


def test_arith_fewshot_levels_and_split_rules():
    assert set(load_levels("builtin:arith-fewshot", 1)) == {2, 3, 4, 5, 6}
    assert split_rule_for("hf:math") == split_rule_for("hf:math:2") == "in-answer"
    assert split_rule_for("hf:mquake:3") == "answer-start"
    for spec in ("builtin:hops", "builtin:arith-fewshot:2", "hf:gsm8k", "file:x.jsonl"):
        assert split_rule_for(spec) == "answer-start"
    assert split_rule_for(DEFAULT_SOURCE) == split_rule_for("builtin:paper") == "answer-start"
    for spec in ("builtin:dm-arith", "builtin:dm-arith:dm", "builtin:e11", "builtin:e12"):
        assert split_rule_for(spec) == "answer-start"
    with pytest.raises(DepthscopeError, match="unknown data source"):
        split_rule_for("builtin:nope")


# --- -n beyond what a source gives ---------------------------------------------------------


def test_huge_n_is_capped_with_a_notice_before_generating(monkeypatch):
    count = capped_count("builtin:hops", 10**12)
    assert count.n == MAX_GENERATED
    assert count.notice.startswith("-n 1000000000000 is more than builtin:hops generates")
    assert f"using {MAX_GENERATED} per level" in count.notice and "\n" not in count.notice
    made = []
    real = generators.LEVELLED["hops"]
    monkeypatch.setitem(
        generators.LEVELLED,
        "hops",
        generators.LevelledTask(lambda *a: made.append(a) or real.make(*a), real.levels),
    )
    monkeypatch.setattr(sources, "MAX_GENERATED", 3)
    notices = []
    examples = load_examples("builtin:hops", 10**12, notify=notices.append)
    assert len(examples) == len(made) == 3 * len(real.levels)
    assert notices == [
        "-n 1000000000000 is more than builtin:hops generates; using 3 per level "
        "(the paper uses 20 per level)"
    ]
    with pytest.warns(UserWarning, match="using 3"):
        assert len(load_examples(DEFAULT_SOURCE, 10**12)) == 3
    with pytest.warns(UserWarning, match="using 3 per level"):
        assert len(load_levels("builtin:nested:2", 10**9)[2]) == 3


def test_counts_that_need_no_cap():
    assert capped_count("builtin:hops", 20) == sources.Count(20)
    assert capped_count("builtin:hops", None) == sources.Count(None)
    assert capped_count("file:big.txt", 10**12).n == 10**12  # files and datasets end by themselves
    assert capped_count("hf:gsm8k", 10**12).notice is None
    assert capped_count("builtin:paper", 10).notice is None  # the CLI's default -n: no noise
    assert len(load_examples("builtin:paper", 10)) == 2
    for spec in ("builtin:e11", "builtin:e11-small", "builtin:e11-baseline", "builtin:e12"):
        assert capped_count(spec, 10**12) == sources.Count(10**12)  # fixed sets: no notice
        assert sources.default_count(spec) is None  # the CLI without -n: the whole set
    assert sources.default_count(None) == sources.default_count("builtin:hops") == 10
    assert capped_count("builtin:dm-arith:dm", 10**12).notice.endswith(
        f"generates; using {MAX_GENERATED}"  # generated, but not by level
    )


# --- the paper's prompt/answer split per tokenizer -----------------------------------------


@pytest.mark.parametrize("merges, split", [(False, "as-given"), (True, "shifted")])
def test_paper_split_follows_the_tokenizer(merges, split):
    tokenizer = bpe_tokenizer(space_digit_merges=merges)
    assert (tokenizer.tokenize(" 28") == ["Ġ28"]) == merges
    math, question = paper_splits(tokenizer, load_examples("builtin:paper"))
    assert math.meta["split"] == split and math.meta["name"] == "math"
    assert math.text == "5 + 7 + 5 + 3 + 1 + 7 = 28"
    if merges:  # GPT-2-like: the space travels with the number
        assert (math.prompt, math.answer) == ("5 + 7 + 5 + 3 + 1 + 7 =", " 28")
    else:  # Llama 3-like: exactly the paper's split, no P(" ") term, no extra position
        assert (math.prompt, math.answer) == ("5 + 7 + 5 + 3 + 1 + 7 = ", "28")
        assert tokenizer.tokenize(math.answer) == ["2", "8"]
    assert question.meta["split"] == "as-given" and question.answer == " Yoko Ono"
    assert paper_splits(tokenizer, [math, question]) == [math, question]  # splitting twice: same
    prompts = PromptSet.from_examples(tokenizer, [math, question])
    assert prompts.answer_lengths == [1 if merges else 2, len(tokenizer.tokenize(" Yoko Ono"))]
    assert not prompts.problems
    # what igrad and erasure do: the source's examples as given, split per tokenizer when they run
    given = PromptSet.from_examples(tokenizer, load_examples("builtin:paper"))
    assert given.sequences == prompts.sequences  # the same text is read
    assert (given.answer_lengths[0] is None) == merges  # GPT-2-like: "28" alone is not the tail
    assert paper_answers(tokenizer, given) == AnswerSplits(
        prompts.answer_lengths, [split, "as-given"]
    )


def test_paper_split_without_a_workable_boundary():
    tokenizer = bpe_tokenizer(space_digit_merges=True)
    # "ab" merges across the boundary and there is no whitespace to move
    stuck = paper_split(tokenizer, Example(prompt="xa", answer="b"))
    assert stuck.meta["split"] == "not-tail" and (stuck.prompt, stuck.answer) == ("xa", "b")
    assert not answer_is_tail(tokenizer, stuck)
    assert paper_split(tokenizer, Example(prompt="no answer")).meta == {}
    assert (
        paper_split(tokenizer, Example(prompt="1 + 2 = ", answer="3")).meta["split"] == "as-given"
    )
    examples = [Example(prompt="xa", answer="b"), Example(prompt="no answer")]
    answers = paper_answers(tokenizer, PromptSet.from_examples(tokenizer, examples))
    assert answers == AnswerSplits([None, None], ["not-tail", None])
    # token ids without their text keep the answer lengths they were given
    ids_only = PromptSet([[5, 6, 7], [8, 9]], answer_lengths=[2, None])
    assert paper_answers(tokenizer, ids_only) == AnswerSplits([2, None], ["as-given", None])


def test_shifted_moves_boundary_whitespace_either_way():
    forward = shifted(Example(prompt="7 = \n", answer="28", meta={"k": 1}))
    assert (forward.prompt, forward.answer, forward.meta) == ("7 =", " \n28", {"k": 1})
    back = shifted(Example(prompt="7 =", answer="  28"))
    assert (back.prompt, back.answer) == ("7 =  ", "28")
    assert shifted(Example(prompt="7 =", answer="28")) is None
    assert shifted(Example(prompt="7 =", answer="  ")) is None


def test_hops_fact_order_is_shuffled():
    """The chain is not simply listed in order (else the answer is the last fact's object)."""
    firsts = []
    for example in load_levels("builtin:hops:3", 30)[3]:
        chain = example.meta["chain"]
        firsts.append(example.prompt.index(f"{chain[0]}'s") == 0)
    assert not all(firsts)


def test_levelled_family_without_level():
    assert set(load_levels("builtin:nested", 3)) == {1, 2, 3, 4}
    assert set(load_levels("builtin:arith-chain", 1)) == {2, 3, 4, 5, 6}
    assert list(load_levels("builtin:hops:3", 2)) == [3]
    examples = load_examples("builtin:hops", 2)
    assert [e.level for e in examples] == [1, 2, 3, 4, 1, 2, 3, 4]
    levels = load_levels("builtin:hops", 2)
    assert examples[::4] == levels[1] and examples[3::4] == levels[4]


def test_paper_and_text_sources():
    paper = load_examples("builtin:paper")
    assert [e.text for e in paper] == [
        "5 + 7 + 5 + 3 + 1 + 7 = 28",
        "The spouse of the performer of Imagine is Yoko Ono",
    ]
    # the paper's own split; paper_split moves the space where a tokenizer needs it
    assert [e.answer for e in paper] == ["28", " Yoko Ono"]
    assert generators.PAPER_PROMPTS[0].prompt == "5 + 7 + 5 + 3 + 1 + 7 = "
    text = load_examples("builtin:text", 3)
    assert len(text) == 3 and all(len(e.text) >= 250 for e in text)


def test_dm_arith_and_training_experiment_sources():
    from depthscope.data import dm_arith
    from depthscope.data.dm_arith_prompts import E11_COUNTERFACTUAL, E11_PROMPTS, E12_PROMPTS

    small, dm = load_examples("builtin:dm-arith", 12), load_examples("builtin:dm-arith:dm", 12)
    assert small == load_examples("builtin:dm-arith:small", 12) != dm
    modules = [e.meta["module"] for e in small]
    assert modules == list(dm_arith.INTERPOLATE) * 2  # cycling through the training modules
    assert all(e.prompt.startswith("Q: ") and e.prompt.endswith(" A:") for e in small + dm)
    assert all(e.answer.startswith(" ") for e in small + dm)
    # its own stream: not the problems `scratch` evaluates on
    assert small[0] != dm_arith.problem(modules[0], 0, 0, "eval", "small").example()
    with pytest.raises(DepthscopeError, match="unknown scale 'big'; use builtin:dm-arith, "):
        load_examples("builtin:dm-arith:big")
    assert load_examples("builtin:e11") == list(E11_PROMPTS)
    assert load_examples("builtin:e12", 3) == list(E12_PROMPTS[:3])
    assert (
        len(load_examples("builtin:e12", 100)) == 17
        and len(load_examples("builtin:e11-small")) == 4
    )
    (baseline,) = load_examples("builtin:e11-baseline")
    assert baseline.text == E11_COUNTERFACTUAL and not baseline.answer


# --- spec errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "nope",
        "builtin",
        "builtin:nope",
        "builtin:arith-words:2",
        "builtin:hops:x",
        "hf:nope",
        "hf:gsm8k:1",
        "builtin:e12:2",
        "builtin:dm-arithmetic",
    ],
)
def test_unknown_specs_list_valid_forms(spec):
    with pytest.raises(DepthscopeError, match="use one of: builtin:arith-words") as info:
        load_examples(spec, 2)
    assert "\n" not in str(info.value)


def test_bad_levels_and_counts():
    with pytest.raises(DepthscopeError, match="level 9 does not exist; use one of 1, 2, 3, 4"):
        load_examples("builtin:hops:9", 2)
    with pytest.raises(DepthscopeError, match="no difficulty levels"):
        load_levels("builtin:arith-words", 2)
    for n in (0, -1):
        with pytest.raises(DepthscopeError, match="at least 1"):
            load_examples("builtin:arith-words", n)


def test_describe_sources_covers_every_form():
    forms = [form for form, _ in describe_sources()]
    assert forms[0] == DEFAULT_SOURCE
    for form in (
        "builtin:hops[:K]",
        "builtin:nested[:K]",
        "builtin:arith-chain[:K]",
        "builtin:arith-fewshot[:K]",
        "builtin:dm-arith[:SCALE]",
        "builtin:e11",
        "builtin:e11-small",
        "builtin:e11-baseline",
        "builtin:e12",
        "file:PATH",
    ):
        assert form in forms
    assert all(text and "\n" not in text for _, text in describe_sources())


# --- files ---------------------------------------------------------------------------------


def test_txt_file(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("first prompt\n\n  \nsecond prompt \n")
    examples = load_examples(f"file:{path}")
    assert [e.prompt for e in examples] == ["first prompt", "second prompt "]
    assert all(e.answer == "" and e.level is None for e in examples)
    assert load_examples(f"file:{path}", 1) == examples[:1]


def test_jsonl_file_and_levels(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [
        {"text": "a b"},
        {"prompt": "1 + 1 =", "answer": " 2", "level": 1},
        {"prompt": "no answer"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    examples = load_examples(f"file:{path}")
    assert [(e.prompt, e.answer, e.level) for e in examples] == [
        ("a b", "", None),
        ("1 + 1 =", " 2", 1),
        ("no answer", "", None),
    ]
    levelled = tmp_path / "l.jsonl"
    levelled.write_text(
        "\n".join(
            json.dumps({"prompt": f"p{i}", "answer": " x", "level": i % 2 + 1}) for i in range(5)
        )
    )
    by_level = load_levels(f"file:{levelled}", 2)
    assert {k: [e.prompt for e in v] for k, v in by_level.items()} == {
        1: ["p0", "p2"],
        2: ["p1", "p3"],
    }
    with pytest.raises(DepthscopeError, match='needs an integer "level"'):
        load_levels(f"file:{path}")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"text": "ok"}\n{oops\n', r"line 2 is not valid JSON"),
        ("x.jsonl", '{"q": 1}\n', 'line 1: object has neither "text" nor "prompt"'),
        ("l.jsonl", '["text"]\n', "line 1: expected a JSON object"),
        ("s.jsonl", '{"prompt": 3}\n', '"prompt" must be a string'),
        ("v.jsonl", '{"text": "a", "level": "hard"}\n', '"level" must be an integer'),
        ("e.jsonl", '{"text": "  "}\n', "line 1: the prompt is empty"),
        ("x.csv", "a\n", r"must end in \.txt"),
        ("empty.txt", "\n \n", "holds no prompts"),
        ("empty.jsonl", "", "holds no prompts"),
    ],
)
def test_file_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DepthscopeError, match=message) as info:
        load_examples(f"file:{path}")
    assert "\n" not in str(info.value)


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(DepthscopeError, match="does not exist"):
        load_examples(f"file:{tmp_path / 'missing.txt'}")
    with pytest.raises(DepthscopeError, match="is not a file"):
        load_examples(f"file:{tmp_path}")
    with pytest.raises(DepthscopeError, match="needs a path"):
        load_examples("file:")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DepthscopeError, match="not UTF-8"):
        load_examples(f"file:{latin}")


# --- Hugging Face formats (pure functions, hand-made rows) ---------------------------------

GSM8K_ROW = {
    "question": "Tom has 3 apples and buys 2 more. How many apples does he have?",
    "answer": "He has 3 + 2 = <<3+2=5>>5 apples.\n#### 5",
}


def test_gsm8k_format_matches_the_spec():
    example = hub_datasets.gsm8k_example(GSM8K_ROW)
    expected = (
        "Given the following problem, reason and give a final answer to the problem.\n"
        f"Problem: {GSM8K_ROW['question']}\n"
        'Your response should end with "The final answer is [answer]" where [answer] is the '
        "response to the problem.\n\n"
        "He has 3 + 2 = <<3+2=5>>5 apples.\nThe final answer is 5"
    )
    assert example.text == expected
    assert example.prompt.endswith("\nThe final answer is") and example.answer == " 5"
    with pytest.raises(DepthscopeError, match="####"):
        hub_datasets.gsm8k_example({"question": "q", "answer": "no marker"})


def test_math_and_mquake_formats_match_the_spec():
    row = {"problem": "Solve $x+1=2$.", "solution": "$x = 1$.", "level": "Level 3"}
    math = hub_datasets.math_example(row)
    assert (math.prompt, math.answer, math.level) == (
        "Problem: Solve $x+1=2$.\nAnswer:",
        " $x = 1$.",
        3,
    )
    assert hub_datasets.math_level({"level": "Level ?"}) is None
    mq = hub_datasets.mquake_example(
        {"questions": ["Who is it?", "Which one?"], "answer": "Ann Lee", "orig_triples": [1, 2, 3]}
    )
    assert (mq.prompt, mq.answer, mq.level) == ("Question: Who is it?\nAnswer:", " Ann Lee", 3)


# --- Hugging Face loaders (fake `datasets`, never the network) ------------------------------


def fake_datasets(monkeypatch, tables: dict | None = None, error: Exception | None = None) -> list:
    """Install a fake ``datasets`` module; returns the list of load_dataset calls."""
    calls = []

    def load_dataset(*args, split):
        calls.append((*args, split))
        if error is not None:
            raise error
        return tables[args[0]]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr(hub_datasets, "hub_reachable", lambda: True)  # never probe the real network
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return calls


def test_gsm8k_loader_takes_the_first_n_in_order(monkeypatch):
    rows = [{"question": f"Q{i}?", "answer": f"r{i}\n#### {i}"} for i in range(5)]
    calls = fake_datasets(monkeypatch, {"openai/gsm8k": rows})
    examples = load_examples("hf:gsm8k", 3)
    assert calls == [("openai/gsm8k", "main", "test")]
    assert [e.answer for e in examples] == [" 0", " 1", " 2"]
    assert len(load_examples("hf:gsm8k")) == 5


def test_math_loader_filters_then_shuffles_each_level(monkeypatch):
    import random

    rows = [{"problem": f"p{i}", "solution": "s", "level": f"Level {i % 5 + 1}"} for i in range(40)]
    rows.append({"problem": "odd", "solution": "s", "level": "Level ?"})
    calls = fake_datasets(monkeypatch, {"EleutherAI/hendrycks_math": rows})
    levels = load_levels("hf:math", 3)
    assert calls[0] == ("EleutherAI/hendrycks_math", "intermediate_algebra", "test")
    assert list(levels) == [1, 2, 3, 4, 5]
    level2 = [r for r in rows if r["level"] == "Level 2"]
    random.Random(42).shuffle(level2)
    assert [e.prompt for e in levels[2]] == [
        f"Problem: {r['problem']}\nAnswer:" for r in level2[:3]
    ]
    assert [e.level for e in load_examples("hf:math:4", 2)] == [4, 4]
    assert [e.level for e in load_examples("hf:math", 1)] == [1, 2, 3, 4, 5]


def test_mquake_loader_groups_by_hops(monkeypatch):
    rows = [
        {"questions": [f"q{i}"], "answer": f"a{i}", "orig_triples": [0] * (i % 3 + 2)}
        for i in range(12)
    ]
    calls = fake_datasets(monkeypatch, {"henryzhongsc/MQuAKE-Remastered": rows})
    levels = load_levels("hf:mquake", 20)
    assert calls[0] == ("henryzhongsc/MQuAKE-Remastered", "CF3k")
    assert {k: len(v) for k, v in levels.items()} == {2: 4, 3: 4, 4: 4}
    assert all(e.level == k for k, v in levels.items() for e in v)
    with pytest.raises(DepthscopeError, match="level 5 does not exist"):
        load_levels("hf:mquake:5")


def test_hub_schema_change_is_one_line(monkeypatch):
    fake_datasets(monkeypatch, {"openai/gsm8k": [{"prompt": "renamed"}]})
    with pytest.raises(DepthscopeError, match="lack the expected fields") as info:
        load_examples("hf:gsm8k", 1)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("spec", ["hf:gsm8k", "hf:math", "hf:mquake:2"])
def test_hub_failure_is_one_line(monkeypatch, spec):
    fake_datasets(monkeypatch, error=ConnectionError("Couldn't reach the hub\nretry later"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DepthscopeError) as info:
        load_examples(spec, 2)
    message = str(info.value)
    assert "\n" not in message
    assert re.fullmatch(
        r"could not load \S+ from the Hugging Face hub \(ConnectionError; offline\?\); "
        r"use builtin:arith-words or file:PATH instead",
        message,
    )


def test_unreachable_hub_fails_fast_unless_offline_mode(monkeypatch):
    """No hub: one line at once (no ~25 s of retries); HF_HUB_OFFLINE=1 goes to the cache."""
    rows = [{"question": "Q?", "answer": "r\n#### 1"}]
    calls = fake_datasets(monkeypatch, {"openai/gsm8k": rows})
    monkeypatch.setattr(hub_datasets, "hub_reachable", lambda: False)
    with pytest.raises(DepthscopeError, match="could not reach the Hugging Face hub") as info:
        load_examples("hf:gsm8k", 1)
    assert "\n" not in str(info.value) and "HF_HUB_OFFLINE=1" in str(info.value) and not calls
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_examples("hf:gsm8k", 1)[0].answer == " 1"


def test_hub_without_datasets_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(DepthscopeError, match=r"pip install 'depthscope\[hf\]'") as info:
        load_examples("hf:gsm8k", 2)
    assert "\n" not in str(info.value)


def test_hub_offline_for_real(monkeypatch, tmp_path):
    """Whatever is installed, HF_HUB_OFFLINE=1 with an empty cache gives the one-line error."""
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DepthscopeError) as info:
        load_examples("hf:mquake:2", 1)
    assert "\n" not in str(info.value)
    assert "datasets" in str(info.value) or "could not load" in str(info.value)


def test_a_mixture_interleaves_its_sources_and_tags_each_prompt():
    from depthscope.data.sources import (
        DEFAULT_DATA,
        default_count,
        load_examples,
        mixture_parts,
        split_rule_for,
    )

    assert mixture_parts(DEFAULT_DATA) == ["builtin:arith-words", "builtin:prose"]
    assert mixture_parts("file:a+b.txt") is None  # a file name with a plus
    assert default_count(DEFAULT_DATA) == 5  # 10 prompts in all, as a single source gives
    examples = load_examples(DEFAULT_DATA, 3, seed=0)
    assert [e.meta["data_source"] for e in examples] == ["builtin:arith-words", "builtin:prose"] * 3
    alone = load_examples("builtin:arith-words", 3, seed=0)
    assert [e.text for e in examples[::2]] == [e.text for e in alone]  # each source as alone
    assert split_rule_for(DEFAULT_DATA) == "answer-start"
    with pytest.raises(DepthscopeError, match="names a source twice"):
        load_examples("builtin:prose+builtin:prose", 2)
    with pytest.raises(DepthscopeError, match="mixes sources split"):
        split_rule_for("builtin:hops+hf:math")


def test_short_prose_is_about_as_long_as_a_word_problem():
    from depthscope.data.sources import load_examples

    prose = load_examples("builtin:prose", 20, seed=0)
    assert len({e.text for e in prose}) == 20
    assert all(200 <= len(e.text) <= 320 and e.text[-1] in ".;:" for e in prose)
    assert load_examples("builtin:prose", 5, seed=1)[0].text != prose[0].text
