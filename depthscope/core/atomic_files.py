"""Files written atomically, as data: readers see the old file or the complete new one.

Every file depthscope writes goes through :func:`atomic_write_bytes` (temp file, fsync, rename), so
an interrupted run never leaves a torn file, and gets the mode a plain ``open()`` would give.
JSON documents are written by :func:`atomic_write_json`, which turns tensors and arrays into nested
lists and NaN into ``null``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old file or the complete new one.

    The file gets the mode a plain ``open(path, "w")`` would give (``0o666`` less the umask), not
    the private ``0o600`` of a temporary file, so labmates and web servers can read reports.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json_object(path: Path) -> dict | None:
    """The JSON object in ``path``; None when the file is missing, unreadable, not JSON or not an
    object (a reader that must not fail on a damaged or foreign file)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def atomic_write_json(path: Path, payload: object) -> None:
    text = json.dumps(to_jsonable(payload), indent=1, sort_keys=False, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def to_jsonable(value: object) -> object:
    """Tensors and numpy arrays become nested lists (layer index first); NaN becomes null."""
    torch = sys.modules.get("torch")  # a tensor exists only once torch is imported; never import it
    if torch is not None and isinstance(value, torch.Tensor):
        return to_jsonable(value.detach().cpu().double().tolist())
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return to_jsonable(value.tolist())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
