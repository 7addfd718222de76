"""The public Python API: ``import depthscope as ds``.

    lm = ds.load_model("smollm2-135m")
    result = ds.analyze(lm, "future-effects", "The capital of France is Paris. ...")
    result.plot(); result.numbers(); result.to_pandas(); result.save("runs/mine")

:func:`analyze` accepts a string, a list of strings, :class:`~depthscope.data.example.Example`
objects (prompt + answer, for the analyses that measure at the answer), a
:class:`~depthscope.analyses.prompts.PromptSet` or lists of token ids, and returns the same
:class:`~depthscope.results.Result` that ``depthscope analyze`` saves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from depthscope.analyses import RunOptions, analysis_class
from depthscope.analyses.base import comma_list, settings_dict
from depthscope.analyses.prompts import PromptSet
from depthscope.analyses.run import run_state
from depthscope.data.example import Example
from depthscope.engine.batch import encode
from depthscope.engine.trace import Trace
from depthscope.engine.trace import trace as trace_batch
from depthscope.errors import DepthscopeError
from depthscope.models.loading import LoadedModel
from depthscope.progress import Progress
from depthscope.results import Result

Prompts = str | Sequence[str] | Sequence[Example] | PromptSet | Sequence[Sequence[int]]


def prompt_set(lm: LoadedModel, prompts: Prompts) -> PromptSet:
    """Tokenise whatever was given into a :class:`PromptSet` (answers kept where given)."""
    if isinstance(prompts, PromptSet):
        return prompts
    if isinstance(prompts, str):
        prompts = [prompts]
    items = list(prompts)
    if not items:
        raise DepthscopeError("no prompts given; pass a string, a list of strings or Examples")
    if all(isinstance(p, str) for p in items):
        items = [Example(prompt=p) for p in items]
    if all(isinstance(p, Example) for p in items):
        if any(not p.text.strip() for p in items):
            raise DepthscopeError("a prompt is empty; give every prompt some text")
        return PromptSet.from_examples(lm.tokenizer, items)
    if all(isinstance(p, Sequence) and all(isinstance(t, int) for t in p) for p in items):
        return PromptSet([list(p) for p in items])
    raise DepthscopeError(
        "prompts must be a string, a list of strings, a list of depthscope.Example, a PromptSet "
        "or lists of token ids"
    )


def make_analysis_settings(name: str, values: dict) -> object:
    """The analysis's settings dataclass from Python values, with one clear line for bad keys."""
    cls = analysis_class(name)
    fields = {f.name for f in dataclasses.fields(cls.Settings)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise DepthscopeError(
            f"{name} has no setting {', '.join(unknown)}; valid: {', '.join(sorted(fields))}"
        )
    defaults = cls.Settings()
    values = {  # parts="layer" means ("layer",), as "layer,mlp" does on the command line
        key: comma_list(value)
        if isinstance(value, str) and isinstance(getattr(defaults, key), tuple)
        else value
        for key, value in values.items()
    }
    try:
        return cls.Settings(**values)
    except (TypeError, ValueError) as exc:
        raise DepthscopeError(f"bad setting for {name}: {exc}") from None


def analyze(
    lm: LoadedModel,
    analysis: str,
    prompts: Prompts,
    *,
    seed: int = 0,
    batch_size: int = 64,
    prompt_batch: int = 4,
    progress: Progress | None = None,
    **settings: object,
) -> Result:
    """Run one analysis on ``prompts`` and return its :class:`Result` (nothing is written).

    Keyword arguments other than the listed ones are the analysis's settings, e.g.
    ``analyze(lm, "logit-lens", text, top_tokens=5)`` or ``analyze(lm, "future-effects",
    texts, parts=("layer",))``; ``depthscope analyze --help`` lists them all.
    """
    cls = analysis_class(analysis)
    chosen = make_analysis_settings(analysis, settings)
    prompts = prompt_set(lm, prompts)
    options = RunOptions(seed=seed, batch_size=batch_size, progress=progress or Progress())
    runner = cls(lm, chosen, options)
    state = run_state(runner, prompts, data="(python)", prompt_batch=prompt_batch)
    data = runner.finish(state)
    return Result(
        analysis=analysis,
        model=dict(lm.identity),
        settings={**settings_dict(chosen), "seed": seed},
        n_prompts=int(state.tally.n_prompts),
        n_tokens=int(state.tally.n_tokens),
        data=data,
        extra={"data_source": "(python)"},
    )


def trace(lm: LoadedModel, prompts: str | Sequence[str], *, logits: bool = False) -> Trace:
    """One clean forward pass recording every layer's residual, attention and MLP contribution.

    Rows are the prompts, right-padded (``trace.valid`` marks real tokens). Use
    :func:`depthscope.engine.replay.replay` with an intervention to re-run layers from an edited
    residual (``docs/engine.md``).
    """
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    with torch.no_grad():
        return trace_batch(lm.adapter, encode(lm.tokenizer, texts), logits=logits)
