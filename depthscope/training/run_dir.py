"""The output folder of a training run: who owns it, its record, its checkpoint.

A training folder holds the Hugging Face model (config, safetensors weights, tokenizer),
``training.json`` (settings, loss curve, accuracies, time) and, while training, ``checkpoint/``.
``training.json`` is written first, with ``"status": "running"``, so a folder is recognisably
depthscope's from the first step; a folder holding anything else (another model, other files) is
never written to. Rerunning the same command resumes from the checkpoint; a finished run with the
same settings is left alone; different settings need ``--fresh``.

Checkpoints are safetensors files (model, optimizer and RNG state) plus JSON; nothing is pickled.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from depthscope.errors import DepthscopeError
from depthscope.files import atomic_write_json

FORMAT = "depthscope-training/1"
RECORD = "training.json"
CHECKPOINT = Path("checkpoint") / "state.json"


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
#
# checkpoint/model.safetensors      the model's tensors (tied weights once)
# checkpoint/optimizer.safetensors  AdamW's tensors and the torch RNG state
# checkpoint/state.json             the rest: step, optimizer hyper-parameters, aliases, meta
# Each file is written to a temporary name and renamed; state.json goes last and names the step
# that the two tensor files must carry, so a checkpoint torn by a crash is detected, never used.
# The tensors are written file by file rather than as one blob, so a 135M-parameter fine-tune
# needs about one optimizer-state copy of extra memory.


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


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor], step: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors or {"_empty": torch.zeros(0)}, str(tmp), metadata={"step": str(step)})
    os.replace(tmp, path)


def save_checkpoint(
    out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, meta: dict[str, Any]
) -> None:
    """Model, optimizer and torch RNG state plus ``meta`` (with ``train_state.step``)."""
    folder = out / CHECKPOINT.parent
    step = int(meta["train_state"]["step"])
    weights, aliases = _unique_state(model)
    _write_tensors(folder / "model.safetensors", weights, step)
    del weights
    moments, rest = _split_optimizer(optimizer.state_dict())
    moments["rng.torch"] = torch.get_rng_state()
    _write_tensors(folder / "optimizer.safetensors", moments, step)
    del moments
    state = {"format": FORMAT, "step": step, "aliases": aliases, "optimizer": rest, "meta": meta}
    atomic_write_json(out / CHECKPOINT, state)


def _read_tensors(path: Path, step: int) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as handle:
        if (handle.metadata() or {}).get("step") != str(step):
            raise ValueError(f"{path.name} belongs to another step")
        return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118


def load_checkpoint(
    out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any] | None:
    """Restore model, optimizer and RNG from ``out``'s checkpoint; its ``meta``, or None if absent."""
    path = out / CHECKPOINT
    if not path.is_file():
        return None
    folder = path.parent
    try:
        state = json.loads(path.read_text())
        step = int(state["step"])
        weights = _read_tensors(folder / "model.safetensors", step)
        moments = _read_tensors(folder / "optimizer.safetensors", step)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DepthscopeError(
            f"the checkpoint in {folder} is damaged ({exc}); pass --fresh to start over"
        ) from exc
    except Exception as exc:  # safetensors raises its own error types on corrupt files
        raise DepthscopeError(
            f"the checkpoint in {folder} is damaged ({type(exc).__name__}); pass --fresh to "
            f"start over"
        ) from exc
    for alias, original in state["aliases"].items():
        weights[alias] = weights[original]
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in weights.items()})
    torch.set_rng_state(moments.pop("rng.torch"))
    optimizer.load_state_dict(_join_optimizer(moments, state["optimizer"]))
    return state["meta"]


def share_files(out: Path) -> None:
    """Give the model files ``save_pretrained`` wrote the umask's mode (some are written 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    for path in out.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~mask)


def drop_checkpoint(out: Path) -> None:
    shutil.rmtree(out / CHECKPOINT.parent, ignore_errors=True)
