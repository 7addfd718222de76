"""Checkpoints as data: safetensors files for the tensors and one JSON record, written record-last.

One scheme for everything depthscope resumes: an analysis's running state (``depthscope
analyze``) and a training run's model, optimizer and random state (``scratch``, ``finetune``).
A checkpoint ``NAME`` in a folder is

- ``NAME.json``: the record (format, stamp, the names of its parts, and what the caller keeps);
- ``NAME.PART.safetensors``: one file per group of tensors, carrying the record's stamp.

Every file is written atomically (temporary name, then rename) and the record last, so a
checkpoint torn by a crash (a part of another stamp, a truncated file) is detected and never
used. Nothing is pickled: a checkpoint planted in a shared folder cannot execute code.
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

from depthscope.core.files import atomic_write_json
from depthscope.core.progress import Progress
from depthscope.engine.state import decode_state, encode_state

FORMAT = "depthscope-checkpoint/1"
CHECKPOINT_SECONDS = 5.0  # an analysis's state is written after a prompt at most this often
_EMPTY = "_empty"  # safetensors cannot store an empty file: a placeholder tensor, dropped on read


def record_path(folder: Path, name: str) -> Path:
    return Path(folder) / f"{name}.json"


def part_path(folder: Path, name: str, part: str) -> Path:
    return Path(folder) / f"{name}.{part}.safetensors"


def write_checkpoint(
    folder: Path,
    name: str,
    parts: Iterable[tuple[str, dict[str, torch.Tensor]]],
    record: dict,
    stamp: str,
) -> None:
    """Write each ``(part, tensors)`` (one at a time, so only one part's copy is in memory), then
    the record. ``stamp`` ties the files together (a step, or a token unique to this write)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for part, tensors in parts:
        path = part_path(folder, name, part)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(tensors or {_EMPTY: torch.zeros(0)}, str(tmp), metadata={"stamp": stamp})
        os.replace(tmp, path)
        names.append(part)
    atomic_write_json(
        record_path(folder, name), {"format": FORMAT, "stamp": stamp, "parts": names, **record}
    )


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
    parts = {}
    for part in record.get("parts", []):
        parts[part] = _read_part(part_path(folder, name, part), str(record.get("stamp")))
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
        raise ValueError(f"{path.name} is damaged ({type(exc).__name__})") from exc
    tensors.pop(_EMPTY, None)
    return tensors


def checkpoint_files(folder: Path, name: str) -> list[Path]:
    """The files of checkpoint ``name`` that exist (its record and parts, not those of a
    checkpoint whose name extends it, such as ``NAME.rank1``)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    prefix, suffix = f"{name}.", ".safetensors"
    found = [
        path
        for path in folder.glob(f"{name}.*{suffix}")
        if "." not in path.name[len(prefix) : -len(suffix)]
    ]
    record = record_path(folder, name)
    return [*found, record] if record.exists() else found


def remove_checkpoint(folder: Path, name: str) -> None:
    """Delete the record first (a half-removed checkpoint is then simply absent), then the parts."""
    record_path(folder, name).unlink(missing_ok=True)
    for path in checkpoint_files(folder, name):
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
        pending = self.pending.pop(analysis, None)
        if pending is None:
            return
        (tensors, doc), meta = pending
        record = {"state": doc, "meta": meta}
        write_checkpoint(
            self.folder, self.name(analysis), [("state", tensors)], record, uuid.uuid4().hex
        )
        self.written_at[analysis] = time.monotonic()
        self.saved_prompts[analysis] = n_done

    def flush(self, done: dict[str, int]) -> None:
        for analysis in list(self.pending):
            self._write(analysis, done.get(analysis, 0))

    def remove(self, analysis: str) -> None:
        self.pending.pop(analysis, None)
        remove_checkpoint(self.folder, self.name(analysis))
