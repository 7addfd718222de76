"""The output folder of a training run: who owns it, its record, its checkpoint.

A training folder holds the Hugging Face model (config, safetensors weights, tokenizer),
``training.json`` (settings, loss curve, accuracies, time) and, while training, ``checkpoint/``.
``training.json`` is written first, with ``"status": "running"``, so a folder is recognisably
depthscope's from the first step; a folder holding anything else (another model, other files) is
never written to. Rerunning the same command resumes from the checkpoint; a finished run with the
same settings is left alone; different settings need ``--fresh``.

Checkpoints are one safetensors file (model, optimizer and RNG state as tensors, the rest as JSON
via :mod:`depthscope.engine.state`); nothing is pickled.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from depthscope.engine.state import state_from_bytes, state_to_bytes
from depthscope.errors import DepthscopeError
from depthscope.results import atomic_write_bytes, atomic_write_json

FORMAT = "depthscope-training/1"
RECORD = "training.json"
CHECKPOINT = Path("checkpoint") / "state.safetensors"


def read_record(out: Path) -> dict | None:
    """The folder's ``training.json`` if depthscope wrote it, else None."""
    path = out / RECORD
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None


def claim(out: Path, identity: dict, fresh: bool) -> str:
    """Decide what to do with ``out`` for a run described by ``identity`` (its settings).

    Returns ``"new"`` (start from step 0), ``"resume"`` (continue from the checkpoint, if any) or
    ``"done"`` (an identical run already finished). Refuses, with one line, folders holding files
    depthscope did not write, and runs with other settings unless ``fresh``.
    """
    if out.exists() and not out.is_dir():
        raise DepthscopeError(f"--out {out} is a file; pass a folder for the trained model")
    if not out.exists() or not any(out.iterdir()):
        return "new"
    record = read_record(out)
    if record is None:
        what = (
            "another model" if (out / "config.json").exists() else "files depthscope did not write"
        )
        raise DepthscopeError(
            f"--out {out} holds {what}; choose an empty or new folder (nothing was changed)"
        )
    if fresh:
        shutil.rmtree(out / CHECKPOINT.parent, ignore_errors=True)
        return "new"
    if record.get("identity") != identity:
        changed = sorted(
            key
            for key in set(identity) | set(record.get("identity", {}))
            if identity.get(key) != record.get("identity", {}).get(key)
        )
        raise DepthscopeError(
            f"--out {out} holds a training run with other settings ({', '.join(changed)}); "
            f"rerun with the same settings to resume, pass --fresh to replace it, or choose "
            f"another --out"
        )
    return "done" if record.get("status") == "complete" else "resume"


def write_record(out: Path, record: dict) -> None:
    atomic_write_json(out / RECORD, {"format": FORMAT, **record})


# ---------------------------------------------------------------- checkpoints


def _unique_state(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The model's state without aliases (tied weights are stored once), and the alias map."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, tuple[int, ...]], str] = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tuple(tensor.shape))
        if key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = tensor.detach().clone()
    return tensors, aliases


def save_checkpoint(
    out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, meta: dict[str, Any]
) -> None:
    """Model, optimizer and torch RNG state plus ``meta`` (step, curves, ...) in one file."""
    tensors, aliases = _unique_state(model)
    state = {
        "model": tensors,
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    atomic_write_bytes(out / CHECKPOINT, state_to_bytes(state, {**meta, "aliases": aliases}))


def load_checkpoint(
    out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any] | None:
    """Restore model, optimizer and RNG from ``out``'s checkpoint; its ``meta``, or None if absent."""
    path = out / CHECKPOINT
    if not path.is_file():
        return None
    try:
        state, meta = state_from_bytes(path.read_bytes())
    except ValueError as exc:
        raise DepthscopeError(
            f"the checkpoint {path} is damaged ({exc}); pass --fresh to start over"
        ) from exc
    weights = dict(state["model"])
    for alias, original in meta.pop("aliases", {}).items():
        weights[alias] = weights[original]
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in weights.items()})
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return meta


def share_files(out: Path) -> None:
    """Give the model files ``save_pretrained`` wrote the umask's mode (some are written 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    for path in out.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~mask)


def drop_checkpoint(out: Path) -> None:
    shutil.rmtree(out / CHECKPOINT.parent, ignore_errors=True)
