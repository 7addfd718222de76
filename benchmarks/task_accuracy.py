"""Teacher-forced accuracy per level of the levelled built-in tasks, on the built-in models.

A depth score (paper E9) only means something on examples the model can solve, so docs/data.md
states, per task and level, how often the model's argmax is right on every answer token when it
reads prompt+answer (one forward pass per example; counted, not timed). Examples are split as
the paper splits them for each tokenizer (``paper_split``).

    python benchmarks/task_accuracy.py                                   # both models, 20 per level
    python benchmarks/task_accuracy.py --models smollm2-135m --tasks builtin:arith-fewshot -n 40
    python benchmarks/task_accuracy.py --models tiny --tasks builtin:arith-fewshot:2 -n 2  # smoke
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from depthscope.core.atomic_files import atomic_write_json
from depthscope.data.answer_split import paper_split
from depthscope.data.example import Example
from depthscope.data.sources import load_levels

TASKS = ("builtin:arith-fewshot", "builtin:arith-chain", "builtin:hops", "builtin:nested")
MODELS = ("smollm2-135m", "gemma3-270m")


def teacher_forced_correct(lm, example: Example) -> bool | None:
    """Argmax right on every answer token (None: the answer is not the tail of the tokens)."""
    example = paper_split(lm.tokenizer, example)
    if example.meta["split"] == "not-tail":
        return None
    ids = list(lm.tokenizer(example.text, add_special_tokens=True)["input_ids"])
    answer = list(lm.tokenizer(example.answer, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ids], device=lm.device)).logits[0]
    first = len(ids) - len(answer) - 1
    predicted = logits[first : first + len(answer)].argmax(dim=-1).tolist()
    return predicted == answer


def accuracy_table(lm, spec: str, n: int, seed: int) -> dict[str, dict]:
    table = {}
    for level, examples in load_levels(spec, n, seed=seed).items():
        results = [teacher_forced_correct(lm, example) for example in examples]
        scored = [r for r in results if r is not None]
        table[str(level)] = {
            "accuracy": sum(scored) / len(scored) if scored else None,
            "n": len(scored),
            "not_tail": len(results) - len(scored),
        }
    return table


def _tiny_lm():
    """A tiny random model with a tiny tokenizer: checks the script runs, nothing more."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import tempfile

    from tiny_models import save_tiny_model_dir

    from depthscope.models.loading.loader import load_model

    folder = save_tiny_model_dir(Path(tempfile.mkdtemp()))
    return load_model(str(folder), progress=False)


def _percent(value: float | None) -> str:
    return "   -" if value is None else f"{value:4.0%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated; 'tiny' too")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated levelled specs")
    parser.add_argument("-n", type=int, default=20, help="examples per level (default: 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the tables")
    args = parser.parse_args(argv)

    from depthscope.models.loading.loader import load_model

    report: dict = {"n_per_level": args.n, "seed": args.seed, "models": {}}
    for name in args.models.split(","):
        lm = _tiny_lm() if name == "tiny" else load_model(name, progress=False)
        report["models"][name] = {}
        for spec in args.tasks.split(","):
            table = accuracy_table(lm, spec, args.n, args.seed)
            report["models"][name][spec] = table
            cells = "  ".join(f"{k}: {_percent(v['accuracy'])}" for k, v in table.items())
            print(f"{name:<14} {spec:<24} {cells}", flush=True)
    if args.out:
        atomic_write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
