"""The "operands stop mattering" line of the verdict, shared by erasure (E8) and integrated
gradients (E7): both yield layer × token maps, read by the same rule (docs/summary.md §4)."""

from __future__ import annotations

import numpy as np

from depthscope.analyses.card import Finding
from depthscope.core.result import Result
from depthscope.verdict import bootstrap, rules
from depthscope.verdict.sensitivity import sweep
from depthscope.verdict.words import at, rel


def operand_stops(
    maps: list, row_offset: int, data: dict, n_layers: int | None, share: float = rules.TOKEN_SHARE
) -> list[dict]:
    """Per prompt: the first boundary from which its operand tokens stay below ``share`` of the
    largest operand effect.

    ``maps`` are layer × token matrices whose row ``r`` is boundary ``r + row_offset``.
    """
    prompts = data.get("prompts") or list(range(len(maps)))
    tokens, answers = data.get("tokens") or [], data.get("answer_tokens") or []
    stops = []
    for index, matrix in enumerate(maps):
        matrix = np.asarray(matrix, dtype=float)
        alen = answers[index] if index < len(answers) else None
        columns = rules.context_columns(matrix.shape[1], alen)
        chosen, digits = rules.operand_columns(
            tokens[index] if index < len(tokens) else None, columns
        )
        row = rules.stop_mattering(matrix, chosen, share)
        boundary = None if row is None else row + row_offset
        stops.append(
            {
                "prompt": prompts[index] if index < len(prompts) else index,
                "boundary": boundary,
                "relative_depth": rel(boundary, n_layers),
                "tokens": "operands (digit tokens)" if digits else "all context tokens",
            }
        )
    return stops


def _deepest(stops: list[dict]) -> int | None:
    known = [s["boundary"] for s in stops if s["boundary"] is not None]
    return max(known) if known else None


def operands_finding(
    result: Result,
    n_layers: int | None,
    *,
    maps: list,
    row_offset: int,
    method: str,
    figure: str,
) -> Finding:
    """The boundary from which the prompts' operand tokens stop mattering (deepest prompt).

    ``method`` says how a token's importance was measured ("erasing them"); ``figure`` is the
    per-prompt figure stem with ``{}`` for the prompt number.
    """
    stops = operand_stops(maps, row_offset, result.data, n_layers)
    known = [s["boundary"] for s in stops if s["boundary"] is not None]
    deepest = max(known) if known else None
    # how sure: the deepest prompt's boundary over resampled prompts (few prompts: a wide range)
    boundaries = np.array([np.nan if s["boundary"] is None else s["boundary"] for s in stops])
    interval = None
    if boundaries.size:
        counts = bootstrap.draws(boundaries.size)
        drawn = np.where(counts > 0, boundaries[None, :], np.nan)
        top = np.where(np.isfinite(drawn), drawn, -np.inf).max(axis=1)
        samples = np.where(np.isfinite(top), top, np.nan)
        interval = bootstrap.interval_of(None if deepest is None else float(deepest), samples)
    listed = "; ".join(
        f"prompt {s['prompt']}: {at(s['boundary'], n_layers, 'boundary')} ({s['tokens']})"
        for s in stops
    )
    return Finding(
        key="operands",
        title="Operands stop mattering",
        headline=(
            f"by boundary {interval.text()} (deepest prompt)"
            if interval is not None and deepest is not None
            else f"by {at(deepest, n_layers, 'boundary')} (deepest prompt)"
        ),
        sentence=(
            f"Operand tokens stop mattering ({method} stays below {rules.TOKEN_SHARE:g}× its "
            f"maximum) from {listed}."
        ),
        layer=deepest,
        relative_depth=rel(deepest, n_layers),
        details={
            "basis": result.analysis,
            "per_prompt": {result.analysis: stops},
            "interval": interval.as_json() if interval else None,
            "sensitivity": [
                sweep(
                    "token_share",
                    rules.TOKEN_SHARE,
                    lambda share: _deepest(
                        operand_stops(maps, row_offset, result.data, n_layers, share)
                    ),
                    "operand boundary (deepest prompt)",
                )
            ],
        },
        figures=[figure.format(s["prompt"]) for s in stops],
        analyses=[result.analysis],
    )
