"""What ``depthscope map`` writes into its run folder: the settings, the result, ``run.json``.

A map folder is a run folder (:mod:`depthscope.core.run_folder`) claimed for its model pair
(:func:`~depthscope.core.run_folder.pair_identity`): ``results/linear-map.json`` (a ``Result``
whose model is the pair), its figures in ``figures/`` and ``run.json`` (a
:class:`~depthscope.core.run_folder.RunRecord` with the pair as its model).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from depthscope.core.result import Result
from depthscope.core.run_folder import RunFolder, RunRecord
from depthscope.figures.figure_files import plot_result
from depthscope.models.loading.loader import LoadedModel
from depthscope.run.runner import now, package_versions

ANALYSIS = "linear-map"
MAX_TOKENS_PER_TEXT = 512  # the paper's window length


def map_settings(
    *,
    data: str,
    tokens: int,
    val_tokens: int,
    ridge: float,
    ridge_sweep: list[float],
    seed: int,
    null: str | None,
) -> dict:
    """The settings a map result records (what made it, and the conventions of its numbers)."""
    return {
        "data": data,
        "tokens": tokens,
        "val_tokens": val_tokens,
        "ridge": ridge,
        "ridge_sweep": list(ridge_sweep),
        "ridge_convention": "lambda = ridge * trace(centred source scatter) / d_source; bias unpenalised",
        "seed": seed,
        "max_tokens_per_text": MAX_TOKENS_PER_TEXT,
        "position_0_excluded": True,
        "metric": "mean over held-out tokens of ||y - f(x)|| / max(||y||, 1e-6)",
        "null": null,
        "intervals": "90% percentile bootstrap over held-out texts, 1000 draws, seed 0",
    }


def map_result(source: LoadedModel, target: LoadedModel, data: dict, settings: dict) -> Result:
    """The fitted maps as a ``Result`` of the model pair."""
    return Result(
        analysis=ANALYSIS,
        model={
            "source": source.identity,
            "target": target.identity,
            "name": f"{source.name}→{target.name}",
        },
        settings=settings,
        n_prompts=data["n_train_texts"] + data["n_val_texts"],
        n_tokens=data["n_train_tokens"] + data["n_val_tokens"],
        data=data,
    )


def map_record(
    source: LoadedModel,
    target: LoadedModel,
    data: dict,
    *,
    data_spec: str,
    seed: int,
    device: str,
    started: str,
    seconds: float,
    processes: int,
) -> RunRecord:
    """``run.json`` of a map folder."""
    return RunRecord(
        status="finished",
        started=started,
        finished=now(),
        command=" ".join(sys.argv),
        model={"source": source.identity, "target": target.identity},
        data={"source": data_spec, "seed": seed},
        n_prompts=data["n_train_texts"] + data["n_val_texts"],
        n_tokens=data["n_train_tokens"] + data["n_val_tokens"],
        seed=seed,
        analyses=[ANALYSIS],
        status_by_analysis={ANALYSIS: "computed"},
        timings={
            ANALYSIS: round(seconds, 3),
            **{f"{ANALYSIS}/{k}": v for k, v in data["seconds"].items()},
        },
        versions=package_versions(),
        device=device,
        threads=torch.get_num_threads(),
        processes=processes,
    )


def save_result(result: Result, out: Path, *, plots: bool) -> list[Path]:
    """``results/linear-map.json`` and (with ``plots``) its figures; returns the figure files."""
    folder = RunFolder(out)
    result.save(folder.result(ANALYSIS))
    return plot_result(result, folder.figures) if plots else []


def save_record(record: RunRecord, out: Path) -> Path:
    """``run.json``, written last: the folder's record of a finished map."""
    return RunFolder(out).write_record(record)
