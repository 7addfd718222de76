"""The fixed analysis prompts of the paper's two training experiments (App. E, App. D.5).

All are in the training format, prompt ``"Q: {q} A:"`` + answer ``" {a}"``, so that the answer is
the tail of the tokenised text for our character tokenizer and for BPE tokenizers alike.

- :data:`E11_PROMPTS`: the four residual-erasure prompts of E11 (Fig. 9, 42, 43). The paper writes
  them as ``"Q: … A: "`` + ``"-10"``; we move the space into the answer (same text). The paper's
  second prompt, ``-24 + -10 + 22 + 1 + 1 + 25``, is listed with the answer ``-15`` but equals
  ``15`` — which is why "all models fail example 2" in the paper. We use the correct answer and
  keep the paper's in ``meta["paper_answer"]``.
- :data:`E11_SMALL_PROMPTS` (ours): the same four shapes with one-digit operands, for models
  trained on ``--scale small`` problems, for which the paper's numbers are out of range.
- :data:`E11_COUNTERFACTUAL`: the one prompt whose position-mean activation is E11's erasure
  baseline ("uninformative residual").
- :data:`E12_PROMPTS`: 17 prompts for E12's future-effects analysis (Fig. 39). The paper's script
  lists 17 fixed prompts of which the paper quotes one, ``("What is 20/10*(-60)/32*(-504)/70?",
  "27")``; the other 16 are ours, drawn once from :mod:`depthscope.data.dm_arith`
  (``problem(MODULE, i // 6, seed=0, split="e12-prompts")`` cycling through the six interpolation
  modules) and frozen here so that they never change.

:data:`SETS` names them as data sources: ``--data builtin:e11`` (``e11-small``, ``e12``) and, for
erasure's baseline, ``--set erasure.baseline_data=builtin:e11-baseline``.
"""

from __future__ import annotations

import json

from depthscope.data.example import Example


def _example(question: str, answer: str, name: str, **meta: str) -> Example:
    return Example(
        prompt=f"Q: {question} A:",
        answer=f" {answer}",
        meta={"task": "dm-arith", "name": name, **meta},
    )


E11_PROMPTS: tuple[Example, ...] = (
    _example("What is ((-14)/(-6))/(1162/(-4980))?", "-10", "e11-1"),
    _example(
        "What is the value of -24 + -10 + 22 + 1 + 1 + 25?", "15", "e11-2", paper_answer="-15"
    ),
    _example("What is 1 - 3 - (63 + 7 - 60)?", "-12", "e11-3"),
    _example("(10/3)/((-8)/16)*(-90)/(-75)", "-8", "e11-4"),
)

# Ours: the same four shapes with one-digit operands, in the range of `--scale small` models.
E11_SMALL_PROMPTS: tuple[Example, ...] = (
    _example("What is ((-4)/(-6))/(2/(-6))?", "-2", "e11-small-1"),
    _example("What is the value of -4 + -1 + 2 + 1 + 5?", "3", "e11-small-2"),
    _example("What is 1 - 3 - (6 + 7 - 9)?", "-6", "e11-small-3"),
    _example("(9/3)/((-8)/4)*(-6)/(-9)", "-1", "e11-small-4"),
)

E11_COUNTERFACTUAL = (
    "Q: Simplify 5 + -2*(sqrt(180)*1*2 - sqrt(180)) + 4 + (sqrt(180)*2 + -4 - sqrt(180)) + 4. "
    "A: -6*sqrt(5) + 9"
)

_E12 = (
    ("What is 20/10*(-60)/32*(-504)/70?", "27", "paper"),
    ("Total of 53 and -13.", "40", "add_or_sub"),
    ("Evaluate -15 - -32 + -63 - 54 - 7.", "-107", "add_sub_multiple"),
    ("Calculate -372 divided by -12.", "31", "div"),
    ("Calculate (-1)/7 + 116/28.", "4", "mixed"),
    ("Product of -5 and -9.", "45", "mul"),
    ("(-93)/52*156", "-279", "mul_div_multiple"),
    ("67 - 76", "-9", "add_or_sub"),
    ("44 - 6 - -68", "106", "add_sub_multiple"),
    ("Divide -132 by 3.", "-44", "div"),
    ("What is (21/14)/((-6)/72)?", "-18", "mixed"),
    ("Multiply 98 and 8.", "784", "mul"),
    ("What is (10/(-13))/(9/11)/(11/7)*234?", "-140", "mul_div_multiple"),
    ("-7.8 + -7.7", "-15.5", "add_or_sub"),
    ("Evaluate 60 + -64 + 47 + -49 + -12.", "-18", "add_sub_multiple"),
    ("Divide 470 by 10.", "47", "div"),
    ("29/7 - (-26)/14", "6", "mixed"),
)
E12_PROMPTS: tuple[Example, ...] = tuple(
    _example(q, a, f"e12-{i + 1}", module=module) for i, (q, a, module) in enumerate(_E12)
)

SETS = {
    "e11": E11_PROMPTS,
    "e11-small": E11_SMALL_PROMPTS,
    "e11-baseline": (Example(prompt=E11_COUNTERFACTUAL, meta={"name": "e11-counterfactual"}),),
    "e12": E12_PROMPTS,
}


def jsonl(examples: tuple[Example, ...]) -> str:
    """The examples as ``.jsonl`` lines that ``--data file:PATH.jsonl`` reads back."""

    lines = [
        json.dumps({"prompt": e.prompt, "answer": e.answer} if e.answer else {"text": e.prompt})
        for e in examples
    ]
    return "".join(line + "\n" for line in lines)


if __name__ == "__main__":  # python -m depthscope.data.dm_arith_prompts e11 > e11.jsonl
    import sys

    if len(sys.argv) != 2 or sys.argv[1] not in SETS:
        sys.exit(
            f"usage: python -m depthscope.data.dm_arith_prompts {{{','.join(SETS)}}} > FILE.jsonl"
        )
    sys.stdout.write(jsonl(SETS[sys.argv[1]]))
