"""What the commands' handlers share: the model loaded where the options say, torch's threads."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from depthscope.cli.training import check_threads
from depthscope.models.loading.loader import load_model
from depthscope.models.placement import resolve_placement


def load_from_options(
    args: argparse.Namespace,
    spec: str,
    *,
    out: Path | None = None,
    progress: bool = True,
    local_rank: int = 0,
    local_world_size: int = 1,
):
    """Load ``spec`` where ``--device``/``--dtype``/``--device-map`` say, as every command does:
    the placement is checked first (a bad device is one line), a map with disk offload offloads
    into ``out/offload``."""
    placement = resolve_placement(
        args.device,
        getattr(args, "device_map", None),
        local_rank=local_rank,
        local_world_size=local_world_size,
    )
    offload = str(out / "offload") if out is not None and placement.offloads_to_disk else None
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
    )


def apply_threads(args: argparse.Namespace) -> None:
    """``--threads``: checked, then given to torch (0 keeps torch's choice)."""
    check_threads(args)
    if args.threads:
        torch.set_num_threads(args.threads)
