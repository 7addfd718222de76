"""The public Python API: ``import depthscope as ds``.

    lm = ds.load_model("smollm2-135m")
    result = ds.analyze(lm, "future-effects", "The capital of France is Paris. ...")
    result.plot(); result.numbers(); result.to_pandas(); result.save("runs/mine")

:func:`analyze` accepts a string, a list of strings, :class:`~depthscope.data.example.Example`
objects (prompt + answer, for the analyses that measure at the answer), a
:class:`~depthscope.data.prompts.PromptSet` or lists of token ids, and returns the same
:class:`~depthscope.core.result.Result` that ``depthscope analyze`` saves.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from depthscope.analyses.base import Analysis, RunContext, RunOptions
from depthscope.analyses.catalog import analysis_class
from depthscope.analyses.user_settings import build_settings
from depthscope.core.allocator import keep_freed_memory
from depthscope.core.errors import DepthscopeError
from depthscope.core.progress import Progress
from depthscope.core.result import Result
from depthscope.data.example import Example
from depthscope.data.prompts import PromptSet
from depthscope.engine.batch import encode
from depthscope.engine.trace import Trace
from depthscope.engine.trace import trace as trace_batch
from depthscope.models.loading.loader import LoadedModel
from depthscope.run.feed import Job, feed, result_of

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


def analyze(
    lm: LoadedModel,
    analysis: str | Analysis,
    prompts: Prompts,
    *,
    seed: int = 0,
    batch_size: int = 64,
    prompt_batch: int = 4,
    progress: Progress | None = None,
    data_source: str = "(python)",
    **settings: object,
) -> Result:
    """Run one analysis on ``prompts`` and return its :class:`Result` (nothing is written).

    Keyword arguments other than the listed ones are the analysis's settings, e.g.
    ``analyze(lm, "logit-lens", text, top_tokens=5)`` or ``analyze(lm, "future-effects",
    texts, parts=("layer",))``; ``depthscope analyze --help`` lists them all. ``data_source``
    names where the prompts come from (recorded, and read by analyses whose rules depend on the
    source, such as the depth score's split). ``analysis`` may also be an analysis object built
    on ``lm`` (to set what no setting reaches, e.g. erasure's baseline prompts); it brings its
    own settings, seed, batch size and progress.

    This is the one way an analysis runs over prompts: ``depthscope analyze`` feeds the same
    prompt batches to the same ``update``/``finish``, with checkpoints, processes and files around.
    """
    keep_freed_memory()  # as the command line does: freed [tokens, vocab] blocks are reused
    if isinstance(analysis, Analysis):
        if settings:
            raise DepthscopeError(
                f"{analysis.name}: pass settings when building the analysis object, not to analyze"
            )
        chosen = analysis
    else:
        cls = analysis_class(analysis)
        values = build_settings(cls, settings, vocab_size=lm.vocab_size)
        options = RunOptions(seed=seed, batch_size=batch_size, progress=progress or Progress())
        chosen = cls(lm, values, options)
    prompts = prompt_set(lm, prompts)
    chosen.prepare(RunContext(data=data_source, seed=chosen.options.seed, prompts=prompts))
    job = Job.fresh(chosen)
    feed(lm, [job], prompts, prompt_batch=prompt_batch)
    return result_of(
        chosen,
        job.state,
        identity=dict(lm.identity),
        seed=chosen.options.seed,
        extra={"data_source": data_source},
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
