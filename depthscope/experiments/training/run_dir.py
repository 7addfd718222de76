"""The output folder of a training run: who owns it, its record, its checkpoint.

A training folder holds the Hugging Face model (config, safetensors weights, tokenizer),
``training.json`` (settings, loss curve, accuracies, time) and, while training, ``checkpoint/``.
``training.json`` is written first, with ``"status": "running"``, so a folder is recognisably
depthscope's from the first step; a folder holding anything else (another model, other files) is
never written to. Rerunning the same command resumes from the checkpoint; a finished run with the
same settings is left alone; different settings need ``--fresh``.

Checkpoints are :mod:`depthscope.run.checkpoints` ones (model, optimizer and RNG state as
safetensors, the rest as JSON); nothing is pickled.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from depthscope.core.atomic_files import atomic_write_json, read_json_object
from depthscope.core.errors import DepthscopeError
from depthscope.core.folders import OutputFolder
from depthscope.core.run_folder import CHECKPOINT as CHECKPOINT_FOLDER
from depthscope.core.run_folder import CHECKPOINT_RECORD, TRAINING_FORMAT, RunFolder
from depthscope.run.checkpoints import read_checkpoint, write_checkpoint

FORMAT = TRAINING_FORMAT
CHECKPOINT = Path(CHECKPOINT_FOLDER) / CHECKPOINT_RECORD  # checkpoint/state.json, in the folder


def read_record(out: Path) -> dict | None:
    """The folder's ``training.json`` if depthscope wrote it, else None."""
    doc = read_json_object(RunFolder(out).training)
    return doc if doc is not None and doc.get("format") == FORMAT else None


def claim(out: Path, identity: dict, fresh: bool) -> str:
    """Decide what to do with ``out`` for a run described by ``identity`` (its settings).

    Returns ``"new"`` (start from step 0), ``"resume"`` (continue from the checkpoint, if any) or
    ``"done"`` (an identical run already finished). The folder must be new, empty or a training
    folder depthscope wrote (:meth:`OutputFolder.check`, as for every ``--out``); a run with other
    settings is refused unless ``fresh``.
    """
    if out.exists() and not out.is_dir():
        raise DepthscopeError(f"--out {out} is a file; pass a folder for the trained model")
    OutputFolder(out, outputs=None).check()
    record = read_record(out)
    if record is None:
        return "new"
    if fresh:
        drop_checkpoint(out)
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
    atomic_write_json(RunFolder(out).training, {"format": FORMAT, **record})


# ---------------------------------------------------------------- checkpoints
#
# checkpoint/state.json                 the record: step, optimizer hyper-parameters, aliases, meta
# checkpoint/state.model.safetensors    the model's tensors (tied weights once)
# checkpoint/state.optimizer.safetensors  AdamW's tensors and the torch RNG state
# One checkpoint of :mod:`depthscope.run.checkpoints`, stamped with its step: a checkpoint torn by
# a crash is detected, never used. The tensors are written part by part rather than as one blob,
# so a 135M-parameter fine-tune needs about one optimizer-state copy of extra memory.


def _unique_state(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The model's state without aliases (tied weights are stored once), and the alias map."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.data_ptr(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        if key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = tensor.detach().cpu().contiguous()
    return tensors, aliases


def _split_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """AdamW's state dict as flat tensors plus a JSON-able remainder."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("state."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for index, entries in rest["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(
    out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, meta: dict[str, Any]
) -> None:
    """Model, optimizer and torch RNG state plus ``meta`` (with ``train_state.step``)."""
    step = int(meta["train_state"]["step"])
    weights, aliases = _unique_state(model)
    rest: dict = {}

    def parts():
        yield "model", weights
        moments, optimizer_rest = _split_optimizer(optimizer.state_dict())
        rest.update(optimizer_rest)
        moments["rng.torch"] = torch.get_rng_state()
        yield "optimizer", moments

    record = {"step": step, "aliases": aliases, "optimizer": rest, "meta": meta}
    write_checkpoint(RunFolder(out).checkpoint, CHECKPOINT.stem, parts(), record, stamp=str(step))


def load_checkpoint(
    out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any] | None:
    """Restore model, optimizer and RNG from ``out``'s checkpoint; its ``meta``, or None if absent."""
    files = RunFolder(out)
    folder = files.checkpoint
    if not files.checkpoint_record.is_file():
        return None
    try:
        parts, state = read_checkpoint(folder, CHECKPOINT.stem)
        weights, moments = parts["model"], parts["optimizer"]
        aliases, optimizer_rest, meta = state["aliases"], state["optimizer"], state["meta"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DepthscopeError(
            f"the checkpoint in {folder} is damaged ({exc}); pass --fresh to start over"
        ) from exc
    for alias, original in aliases.items():
        weights[alias] = weights[original]
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in weights.items()})
    torch.set_rng_state(moments.pop("rng.torch"))
    optimizer.load_state_dict(_join_optimizer(moments, optimizer_rest))
    return meta


def share_files(out: Path) -> None:
    """Give the model files ``save_pretrained`` wrote the umask's mode (some are written 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    for path in out.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~mask)


def drop_checkpoint(out: Path) -> None:
    shutil.rmtree(RunFolder(out).checkpoint, ignore_errors=True)
