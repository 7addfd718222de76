"""Checkpoints as data: safetensors files for the tensors and one JSON record that makes them count.

One scheme for everything depthscope resumes: an analysis's running state (``depthscope
analyze``) and a training run's model, optimizer and random state (``scratch``, ``finetune``).
A checkpoint ``NAME`` in a folder is

- ``NAME.json``: the record (format, stamp, its part files, and what the caller keeps);
- ``NAME.PART.STAMP.safetensors``: one file per group of tensors, carrying the stamp in its header.

A new checkpoint writes its parts under new names first, then replaces the record atomically,
then deletes the parts of the one before. Whenever a process dies, the record on disk names
complete files of one checkpoint, so the last finished checkpoint always survives; a part of
another stamp or a truncated file is detected and never used. Nothing is pickled: a checkpoint
planted in a shared folder cannot execute code.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from depthscope.core.atomic_files import atomic_write_json
from depthscope.core.progress import Progress
from depthscope.engine.state import decode_state, encode_state

FORMAT = "depthscope-checkpoint/1"
CHECKPOINT_SECONDS = 5.0  # an analysis's state is written after a prompt at most this often
_EMPTY = "_empty"  # safetensors cannot store an empty file: a placeholder tensor, dropped on read
_SUFFIX = ".safetensors"


def record_path(folder: Path, name: str) -> Path:
    return Path(folder) / f"{name}.json"


def write_checkpoint(
    folder: Path,
    name: str,
    parts: Iterable[tuple[str, dict[str, torch.Tensor]]],
    record: dict,
    stamp: str,
) -> None:
    """Write each ``(part, tensors)`` (one at a time, so only one part's copy is in memory), then
    the record, then remove the files of the checkpoint it replaces. ``stamp`` ties the files
    together (a step, or a token unique to this write)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for part, tensors in parts:
        path = folder / f"{name}.{part}.{stamp}{_SUFFIX}"
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(tensors or {_EMPTY: torch.zeros(0)}, str(tmp), metadata={"stamp": stamp})
        os.replace(tmp, path)
        files[part] = path.name
    doc = {"format": FORMAT, "stamp": stamp, "parts": files, **record}
    atomic_write_json(record_path(folder, name), doc)
    for path in part_files(folder, name):
        if path.name not in files.values():
            path.unlink(missing_ok=True)


def read_checkpoint(folder: Path, name: str) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """``(tensors by part, record)``; FileNotFoundError when there is none, ValueError when it is
    damaged, torn or not a depthscope checkpoint."""
    path = record_path(folder, name)
    text = path.read_text()  # FileNotFoundError: no checkpoint
    try:
        record = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name} is not a readable record") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path.name} is not a {FORMAT} record")
    files = record.get("parts")
    if not isinstance(files, dict):
        raise ValueError(f"{path.name} names no part files")
    stamp = str(record.get("stamp"))
    parts = {part: _read_part(Path(folder) / str(file), stamp) for part, file in files.items()}
    return parts, record


def _read_part(path: Path, stamp: str) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            if (handle.metadata() or {}).get("stamp") != stamp:
                raise ValueError(f"{path.name} belongs to another checkpoint")
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except ValueError:
        raise
    except Exception as exc:  # safetensors raises its own error types on damaged files
        raise ValueError(f"{path.name} is missing or damaged ({type(exc).__name__})") from exc
    tensors.pop(_EMPTY, None)
    return tensors


def part_files(folder: Path, name: str) -> list[Path]:
    """The part files of checkpoint ``name`` on disk, of any stamp (``NAME.PART.STAMP``; not those
    of a checkpoint whose name extends it, such as ``NAME.rank1``)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    prefix = f"{name}."
    return [
        path
        for path in folder.glob(f"{name}.*{_SUFFIX}")
        if path.name[len(prefix) : -len(_SUFFIX)].count(".") == 1
    ]


def remove_checkpoint(folder: Path, name: str) -> None:
    """Delete the record first (a half-removed checkpoint is then simply absent), then the parts."""
    record_path(folder, name).unlink(missing_ok=True)
    for path in part_files(folder, name):
        path.unlink(missing_ok=True)


class StateCheckpoints:
    """The analyses' states of a run, one checkpoint each in ``folder`` (``state/``).

    The newest state is encoded after every prompt and kept in memory; it is written at most
    every :data:`CHECKPOINT_SECONDS`, and always on :meth:`flush` (end or interruption of a run).
    """

    def __init__(self, folder: Path, suffix: str, progress: Progress) -> None:
        self.folder, self.suffix, self.progress = Path(folder), suffix, progress
        self.pending: dict[str, tuple[dict[str, torch.Tensor], dict]] = {}
        self.written_at: dict[str, float] = {}
        self.saved_prompts: dict[str, int] = {}

    def name(self, analysis: str) -> str:
        return f"{analysis}{self.suffix}"

    def load(self, analysis: str, key: str) -> tuple[object, dict] | None:
        """``(state, meta)`` of a checkpoint made for ``key``; unreadable ones are reported and ignored."""
        stale = self.folder / f"{analysis}.pt"
        if stale.exists():
            self.progress.note(
                f"{analysis}: ignoring {stale} (an old pickle checkpoint is never loaded); "
                f"recomputing"
            )
        name = self.name(analysis)
        try:
            parts, record = read_checkpoint(self.folder, name)
            state = decode_state(parts["state"], record["state"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            where = record_path(self.folder, name)
            self.progress.note(
                f"{analysis}: checkpoint {where} could not be read ({exc}); recomputing"
            )
            return None
        meta = record.get("meta", {})
        return (state, meta) if meta.get("fingerprint") == key else None

    def update(self, analysis: str, state: object, meta: dict) -> None:
        self.pending[analysis] = (encode_state(state), meta)
        self.saved_prompts.setdefault(analysis, 0)
        if time.monotonic() - self.written_at.get(analysis, float("-inf")) >= CHECKPOINT_SECONDS:
            self._write(analysis, len(meta.get("done", [])))

    def _write(self, analysis: str, n_done: int) -> None:
        pending = self.pending.get(analysis)
        if pending is None:
            return
        (tensors, doc), meta = pending
        record = {"state": doc, "meta": meta}
        stamp = uuid.uuid4().hex[:12]
        write_checkpoint(self.folder, self.name(analysis), [("state", tensors)], record, stamp)
        # dropped only once written: an interrupt during the write leaves it for flush()
        self.pending.pop(analysis, None)
        self.written_at[analysis] = time.monotonic()
        self.saved_prompts[analysis] = n_done

    def flush(self, done: dict[str, int]) -> None:
        for analysis in list(self.pending):
            self._write(analysis, done.get(analysis, 0))

    def remove(self, analysis: str) -> None:
        self.pending.pop(analysis, None)
        remove_checkpoint(self.folder, self.name(analysis))
