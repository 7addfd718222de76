"""The context window: how many positions a model was trained for, and prompts that exceed it.

Past its trained positions a model's numbers mean nothing (rotary models extrapolate silently,
GPT-2's learned positions raise an IndexError). Sliding-window attention is not a limit: a
Mistral or Gemma layer with a 4k window still reads positions up to ``max_position_embeddings``.
"""

from __future__ import annotations

from collections.abc import Sequence

from depthscope.core.errors import DepthscopeError
from depthscope.models.adapters import text_config

# Config fields that bound the positions, by family: Llama-likes, GPT-2/GPT-J, GPT-2, BLOOM/Falcon...
CONTEXT_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "n_ctx",
    "max_sequence_length",
    "seq_length",
    "max_seq_len",
)
_UNBOUNDED = 10**8  # tokenizers use 1e30 for "no limit"; no real model has 100M positions


def context_limit(model_or_lm: object) -> int | None:
    """The most positions the model accepts (the smallest bound its config gives), or None.

    Accepts a :class:`~depthscope.models.loading.loader.LoadedModel`, a transformers model or its config.
    """
    model = getattr(model_or_lm, "model", model_or_lm)
    config = text_config(getattr(model, "config", model))
    bounds = []
    for key in CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < _UNBOUNDED:
            bounds.append(value)
    return min(bounds) if bounds else None


def check_prompt_lengths(
    lengths: Sequence[int],
    limit: int | None,
    *,
    truncate: bool = False,
    fix: str = "shorten them or use a model with a longer context",
) -> str | None:
    """None if every prompt fits in ``limit`` positions; otherwise refuse, or say what is cut.

    ``truncate=False`` raises a :class:`DepthscopeError`; ``truncate=True`` returns the one-line
    notice to print (the caller keeps the first ``limit`` tokens of each prompt).
    """
    if limit is None:
        return None
    too_long = [(i, n) for i, n in enumerate(lengths) if n > limit]
    if not too_long:
        return None
    first, first_len = too_long[0]
    longest = max(n for _, n in too_long)
    what = (
        f"{len(too_long)} of {len(lengths)} prompts are longer than the model's context window "
        f"of {limit} tokens (prompt {first + 1}: {first_len} tokens, longest {longest})"
    )
    if truncate:
        return f"{what}; only their first {limit} tokens are analysed"
    raise DepthscopeError(f"{what}; {fix}")
