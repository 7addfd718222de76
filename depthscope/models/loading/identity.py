"""What makes a model *this* model: content hashes of its files, its revision, dtype and family.

A result is only "up to date" if it was computed on the same model. Names and paths do not say
that: a folder's weights can be retrained in place, a ``.gguf`` replaced by a requantised one.
So a local model is identified by the sha256 of every weight file (and of its config and
tokenizer files, which change the numbers too), a hub model by its commit hash. Hashing a 500 MB
file takes seconds, so digests are cached in the depthscope cache, keyed by the file's path, size,
mtime and ctime: an edited file (even one of the same size, even with its mtime restored) gets a
new ctime and is hashed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import torch

from depthscope.core.atomic_files import atomic_write_json, read_json_object
from depthscope.models.loading.cache import cache_dir

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
# Files besides the weights whose content changes what the model computes or how text is tokenised.
DEFINING_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
)
# The identity fields that decide whether two loads compute the same numbers.
# All are known before the weights load, so a run can tell what is up to date without loading
# them. The adapter family follows from the config (hashed with the files, or fixed by the hub
# revision); "adapter" is set only when a caller passes an adapter from outside the table.
FINGERPRINT_FIELDS = (
    "source",
    "files_sha256",
    "file_sha256",
    "tensors_sha256",
    "revision",
    "dtype",
    "adapter",
)
_HASH_CACHE = "file-hashes.json"


def _stat_key(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def _read_cache(path: Path) -> dict:
    return read_json_object(path) or {}  # a missing or damaged cache only costs re-hashing


def _write_cache(path: Path, data: dict) -> None:

    # a read-only cache must not stop a run; the file is just hashed again next time
    with contextlib.suppress(OSError):
        atomic_write_json(path, data)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of ``path``, read from the cache when its size, mtime, ctime and inode are unchanged."""
    path = Path(path).resolve()
    key = _stat_key(path)
    cache_file = cache_dir() / _HASH_CACHE
    cache = _read_cache(cache_file)
    entry = cache.get(str(path))
    if (
        isinstance(entry, dict)
        and entry.get("stat") == key
        and isinstance(entry.get("sha256"), str)
    ):
        return entry["sha256"]
    digest = _sha256(path)
    if _stat_key(path) == key:  # not modified while we read it
        cache = _read_cache(cache_file)  # another process may have added entries meanwhile
        cache = {name: entry for name, entry in cache.items() if os.path.exists(name)}
        cache[str(path)] = {"stat": key, "sha256": digest}
        _write_cache(cache_file, cache)
    return digest


def model_files(folder: str | os.PathLike) -> list[Path]:
    """The files of a model folder that define its computation: weights, config, tokenizer."""
    folder = Path(folder)
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and (p.name.endswith(WEIGHT_SUFFIXES) or p.name in DEFINING_FILES)
    ]
    return sorted(files, key=lambda p: p.name)


def folder_sha256(folder: str | os.PathLike) -> dict[str, str]:
    """``{file name: sha256}`` of :func:`model_files` (cached, so a reload costs only stats)."""
    return {p.name: file_sha256(p) for p in model_files(folder)}


def model_fingerprint(identity: dict) -> str:
    """A short hash of everything in a model's identity that changes the numbers it produces.

    Covers the source, the content of its files (local folders and ``.gguf`` files), of its
    tensors (models given in memory) or the hub revision, the dtype and a custom adapter; not the name, path, device or load time, so a
    moved folder keeps its results and a retrained one does not.
    """
    parts = {key: identity.get(key) for key in FINGERPRINT_FIELDS}
    if identity.get("quantize"):  # only then: unquantised fingerprints stay what they were
        parts["quantize"] = identity["quantize"]
    if parts["files_sha256"] or parts["file_sha256"] or parts["tensors_sha256"]:
        parts["source"] = None  # content identifies a local model; the folder may move
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tensors_sha256(model: object) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a model's parameters and buffers.

    The identity of a model that only exists in memory (``LoadedModel.from_model``), e.g. one
    being fine-tuned: two such models share no name or file, only their numbers tell them apart.
    """

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.device.type != "meta":  # offloaded weights have no bytes here
            flat = tensor.detach().to("cpu").contiguous().reshape(-1)
            digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()
