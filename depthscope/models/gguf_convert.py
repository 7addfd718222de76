"""Convert a GGUF file into a plain fp32 safetensors model folder, once.

transformers dequantises GGUF weights to fp32 on load (20–60 s for the built-in models) and then
marks the model as quantised, which makes ``save_pretrained`` refuse or mangle it. The weights are
ordinary fp32 tensors by then, so we clear that marking and save a normal folder; loading it takes
about a second. Folders are built beside their destination and renamed into place, and a marker
file (``depthscope.json``) is written last, so a half-built folder never counts as valid.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import struct
import tempfile
import time
from pathlib import Path

from depthscope.errors import DepthscopeError

MARKER = "depthscope.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safetensors_ok(path: Path) -> bool:
    """Header parses and the file is exactly as long as the header says (catches truncation)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            if header_len <= 0 or header_len > size:
                return False
            header = json.loads(handle.read(header_len))
    except (OSError, struct.error, ValueError):
        return False
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    return bool(ends) and 8 + header_len + max(ends) == size


def folder_is_valid(folder: Path) -> bool:
    """Cheap completeness check: marker, parseable config, intact safetensors files."""
    folder = Path(folder)
    try:
        json.loads((folder / MARKER).read_text())
        json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    weights = sorted(folder.glob("*.safetensors"))
    return bool(weights) and all(_safetensors_ok(w) for w in weights)


def read_provenance(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' progress bars and warnings during conversion (our display is enough)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def _save_plain(model, tokenizer, folder: Path) -> None:
    """Save a GGUF-loaded model as an ordinary (unquantised) fp32 model folder."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for attr in ("is_quantized", "quantization_method"):
        if attr in model.__dict__:
            model.__dict__.pop(attr)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def convert_gguf(
    gguf_path: Path,
    out_dir: Path,
    *,
    progress: bool = True,
    extra_provenance: dict | None = None,
    sha256: str | None = None,
) -> Path:
    """Dequantise ``gguf_path`` and save it as a safetensors model folder at ``out_dir`` (atomic)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if progress:
        print(
            f"converting {gguf_path.name} to fp32 safetensors (one-time, up to a minute) ...",
            flush=True,
        )
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
            )
    except Exception as exc:
        raise DepthscopeError(
            f"could not read {gguf_path} as a GGUF model ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
            f"check the file is a complete GGUF of a supported architecture"
        ) from exc
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        with _quiet_transformers():
            _save_plain(model, tokenizer, staging)
        import transformers

        provenance = {
            "gguf_file": gguf_path.name,
            "gguf_sha256": sha256 or file_sha256(gguf_path),
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "convert_seconds": round(time.perf_counter() - started, 1),
            "transformers": transformers.__version__,
            **(extra_provenance or {}),
        }
        (staging / MARKER).write_text(json.dumps(provenance, indent=1) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def gguf_folder(gguf_path: Path, *, progress: bool = True) -> Path:
    """The converted folder for a user-supplied GGUF file, built once per file content."""
    from depthscope.models.zoo import cache_dir

    gguf_path = Path(gguf_path)
    digest = file_sha256(gguf_path)
    folder = cache_dir() / "gguf" / digest[:16]
    if folder_is_valid(folder):
        return folder
    if folder.exists() and progress:
        print(
            f"cached conversion of {gguf_path.name} is incomplete or damaged; rebuilding",
            flush=True,
        )
    return convert_gguf(
        gguf_path,
        folder,
        progress=progress,
        sha256=digest,
        extra_provenance={"source": str(gguf_path.resolve())},
    )
