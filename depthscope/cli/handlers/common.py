"""What the commands' handlers share: the model inspected and loaded where the options say, the
``--out`` claimed for it, torch's threads."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from depthscope.cli.training import check_threads
from depthscope.core.folders import OutputFolder
from depthscope.core.run_folder import RunFolder
from depthscope.models.loading.loader import ModelInfo, inspect_model, load_model
from depthscope.models.loading.quantize import check_quantize
from depthscope.models.placement import resolve_placement


def _placement(args: argparse.Namespace, local_rank: int, local_world_size: int):
    return resolve_placement(
        args.device,
        getattr(args, "device_map", None),
        local_rank=local_rank,
        local_world_size=local_world_size,
    )


def inspect_from_options(
    args: argparse.Namespace,
    spec: str,
    *,
    progress: bool = True,
    local_rank: int = 0,
    local_world_size: int = 1,
) -> ModelInfo:
    """What ``spec`` is (config, tokenizer, fingerprint) without its weights, for the placement
    the options say: enough to claim an ``--out`` for it before the weights load."""
    placement = _placement(args, local_rank, local_world_size)
    quantize = getattr(args, "quantize", None)
    check_quantize(quantize, spec)
    return inspect_model(
        spec,
        dtype=getattr(args, "dtype", None),
        device=placement.device,
        progress=progress,
        quantize=quantize,
    )


def load_from_options(
    args: argparse.Namespace,
    spec: str,
    *,
    out: Path | None = None,
    progress: bool = True,
    local_rank: int = 0,
    local_world_size: int = 1,
    info: ModelInfo | None = None,
):
    """Load ``spec`` where ``--device``/``--dtype``/``--device-map`` say, as every command does:
    the placement is checked first (a bad device is one line), a map with disk offload offloads
    into ``out/offload``; ``info`` is what :func:`inspect_from_options` found already."""
    placement = _placement(args, local_rank, local_world_size)
    offload = (
        str(RunFolder(out).offload) if out is not None and placement.offloads_to_disk else None
    )
    return load_model(
        spec,
        device=placement.device,
        dtype=getattr(args, "dtype", None),
        device_map=placement.device_map,
        max_memory=placement.max_memory,
        offload_folder=offload,
        progress=progress,
        quantize=getattr(args, "quantize", None),
        load_check=getattr(args, "load_check", True),
        info=info,
    )


def claim_for(folder: OutputFolder, identity: dict, progress, suggestion: str | None = None):
    """Claim ``folder`` for a model's (or a model pair's) identity; say so if its model changed."""
    notice = folder.claim(
        identity["fingerprint"], identity["name"], identity.get("source"), suggestion=suggestion
    )
    if notice:
        progress.note(notice)


def apply_threads(args: argparse.Namespace) -> None:
    """``--threads``: checked, then given to torch (0 keeps torch's choice)."""
    check_threads(args)
    if args.threads:
        torch.set_num_threads(args.threads)
