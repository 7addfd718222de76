"""Generated DM-style arithmetic: every answer is what Python computes from the question's text."""

from __future__ import annotations

import ast
import re
from fractions import Fraction

import pytest

from depthscope.data import dm_arith as arith
from depthscope.data.dm_arith_prompts import (
    E11_COUNTERFACTUAL,
    E11_PROMPTS,
    E11_SMALL_PROMPTS,
    E12_PROMPTS,
)

# The question's text read back into a Python expression, independently of the generator: word
# forms are rewritten with operators, the symbolic forms only lose their wrapper words.
WORD_FORMS = (
    (r"(?:Add|Sum|Total of) (\S+) and (\S+?)\.", "({0}) + ({1})"),
    (r"Subtract (\S+) from (\S+?)\.", "({1}) - ({0})"),
    (r"(?:Multiply|Product of|What is the product of) (\S+) and (\S+?)[.?]", "({0}) * ({1})"),
    (r"What is (\S+) plus (\S+?)\?", "({0}) + ({1})"),
    (r"What is (\S+) minus (\S+?)\?", "({0}) - ({1})"),
    (r"What is (\S+) times (\S+?)\?", "({0}) * ({1})"),
    (r"Divide (\S+) by (\S+?)\.", "({0}) / ({1})"),
    (r"(?:What is |Calculate )?(\S+) divided by (\S+?)[.?]?", "({0}) / ({1})"),
)
WRAPPER = r"(?:What is the value of |What is |Evaluate |Calculate )?(.+?)[.?]?"


def python_expression(question: str) -> str:
    for pattern, template in WORD_FORMS:
        match = re.fullmatch(pattern, question)
        if match:
            return template.format(*match.groups())
    expression = re.fullmatch(WRAPPER, question).group(1)
    assert re.fullmatch(r"[\d\s+\-*/().]+", expression), question
    return expression


def exact_value(expression: str) -> Fraction:
    """Python's evaluation of the expression, in exact rational arithmetic."""
    operators = {
        ast.Add: "__add__",
        ast.Sub: "__sub__",
        ast.Mult: "__mul__",
        ast.Div: "__truediv__",
    }

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.BinOp):
            return getattr(walk(node.left), operators[type(node.op)])(walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.Constant):
            return Fraction(ast.get_source_segment(expression, node))
        raise AssertionError(f"unexpected syntax in {expression!r}")

    return walk(ast.parse(expression, mode="eval"))


def check_problem(question: str, answer: str) -> None:
    expression = python_expression(question)
    assert exact_value(expression) == Fraction(answer), (question, answer)
    assert eval(expression) == pytest.approx(float(Fraction(answer)), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("scale", list(arith.SCALES))
@pytest.mark.parametrize("module", list(arith.MODULES))
def test_every_answer_equals_python_evaluation(module, scale):
    for index in range(150):
        problem = arith.problem(module, index, seed=3, scale=scale)
        check_problem(problem.question, problem.answer)
        assert re.fullmatch(r"-?\d+(\.\d+)?", problem.answer), problem  # a clean answer


def test_reader_catches_a_wrong_answer():
    with pytest.raises(AssertionError):
        check_problem("Subtract 27 from 17.", "10")  # 17 - 27 = -10


def test_problems_are_deterministic_and_seeded():
    a = [arith.problem("mixed", i, seed=1) for i in range(20)]
    assert a == [arith.problem("mixed", i, seed=1) for i in range(20)]
    assert a != [arith.problem("mixed", i, seed=2) for i in range(20)]
    assert arith.problem("div", 0, split="train") != arith.problem("div", 0, split="eval")


def test_paper_format():
    problem = arith.problem("add_or_sub", 0)
    example = problem.example()
    assert example.prompt == f"Q: {problem.question} A:"
    assert example.answer == f" {problem.answer}"
    assert example.meta["module"] == "add_or_sub"


@pytest.mark.parametrize("scale", list(arith.SCALES))
def test_extrapolation_is_longer_or_bigger(scale):
    def mean_length(module):  # digits in the question: more operands or bigger ones
        questions = [arith.problem(module, i, scale=scale).question for i in range(200)]
        return sum(sum(c.isdigit() for c in q) for q in questions)

    for small, large in [
        ("add_or_sub", "add_or_sub_big"),
        ("add_sub_multiple", "add_sub_multiple_longer"),
        ("mul_div_multiple", "mul_div_multiple_longer"),
        ("mixed", "mixed_longer"),
        ("mul", "mul_big"),
        ("div", "div_big"),
    ]:
        assert mean_length(large) > 1.3 * mean_length(small), (small, large)


def test_small_scale_is_smaller():
    def digits(scale):
        problems = [arith.problem(m, i, scale=scale) for m in arith.INTERPOLATE for i in range(50)]
        return sum(sum(c.isdigit() for c in p.question + p.answer) for p in problems)

    assert digits("small") < 0.7 * digits("dm")
    assert all(abs(arith.problem("add_or_sub", i, scale="small").value) <= 18 for i in range(100))


def test_number_formatting():
    assert arith.format_number(Fraction(-12)) == "-12"
    assert arith.format_number(Fraction(-3, 50)) == "-0.06"
    assert arith.format_number(Fraction(49, 4)) == "12.25"
    assert arith.format_number(Fraction(-7, 3)) == "-7/3"


@pytest.mark.parametrize(
    "example", E11_PROMPTS + E11_SMALL_PROMPTS + E12_PROMPTS, ids=lambda e: e.meta["name"]
)
def test_analysis_prompts_have_right_answers(example):
    question = re.fullmatch(r"Q: (.+) A:", example.prompt).group(1)
    check_problem(question, example.answer.strip())


def test_analysis_prompt_counts():
    assert len(E11_PROMPTS) == 4 and len(E12_PROMPTS) == 17
    assert E12_PROMPTS[0].prompt == "Q: What is 20/10*(-60)/32*(-504)/70? A:"
    assert E11_PROMPTS[1].meta["paper_answer"] == "-15"  # the paper's (wrong) answer is kept
    assert E11_COUNTERFACTUAL.startswith("Q: Simplify") and E11_COUNTERFACTUAL.endswith("+ 9")
