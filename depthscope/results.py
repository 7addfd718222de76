"""Result documents: versioned JSON with the numbers and everything needed to interpret them.

A result file alone is enough to redraw its figure and to compare two models: it carries the
analysis name, schema version, model identity, settings, prompt and token counts and the data.
Files are written atomically (temp file + rename), so an interrupted run never leaves a torn file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from depthscope.errors import DepthscopeError

SCHEMA_VERSION = 1

# The paper's order (E2..E10): how results are listed in reports and `--help`.
PAPER_ORDER = (
    "contributions",
    "current-effects",
    "future-effects",
    "logit-lens",
    "local-effects",
    "igrad",
    "erasure",
    "depth-score",
    "linear-map",
)


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


def atomic_write_json(path: Path, payload: object) -> None:
    text = json.dumps(to_jsonable(payload), indent=1, sort_keys=False, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def to_jsonable(value: object) -> object:
    """Tensors and numpy arrays become nested lists (layer index first); NaN becomes null."""
    if isinstance(value, torch.Tensor):
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


@dataclass
class Result:
    """One analysis's output, as saved under ``results/<analysis>.json``."""

    analysis: str
    model: dict
    settings: dict
    n_prompts: int
    n_tokens: int
    data: dict
    schema_version: int = SCHEMA_VERSION
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        doc = asdict(self)
        extra = doc.pop("extra")
        ordered = {
            "analysis": doc["analysis"],
            "schema_version": doc["schema_version"],
            "model": doc["model"],
            "settings": doc["settings"],
            "n_prompts": doc["n_prompts"],
            "n_tokens": doc["n_tokens"],
            "data": doc["data"],
        }
        ordered.update(extra)
        return to_jsonable(ordered)

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> Result:
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise DepthscopeError(
                f"result file {path} does not exist; run `depthscope analyze` first"
            ) from None
        except json.JSONDecodeError as exc:
            raise DepthscopeError(
                f"result file {path} is not valid JSON ({exc.msg}); rerun the analysis"
            ) from None
        known = {"analysis", "schema_version", "model", "settings", "n_prompts", "n_tokens", "data"}
        missing = known - doc.keys()
        if missing:
            raise DepthscopeError(
                f"result file {path} lacks {sorted(missing)}; it was not written by depthscope"
            )
        if doc["schema_version"] > SCHEMA_VERSION:
            raise DepthscopeError(
                f"result file {path} has schema {doc['schema_version']}, newer than this depthscope "
                f"({SCHEMA_VERSION}); upgrade depthscope"
            )
        extra = {k: v for k, v in doc.items() if k not in known}
        return cls(**{k: doc[k] for k in known}, extra=extra)
