"""Checks of a local model folder before anything heavy loads: one line per problem, naming the file.

``transformers`` reports a truncated weight file as "incomplete metadata, file not fully covered"
without its name, an empty config as "not a valid JSON file" among other guesses, and a missing
tokenizer as a paragraph about sentencepiece. These checks read only file headers, so a broken
folder is refused in milliseconds, with the file and the fix.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from depthscope.core.errors import DepthscopeError

SAFETENSORS_INDEX = "model.safetensors.index.json"
WEIGHT_NAMES = (
    "model.safetensors",
    SAFETENSORS_INDEX,
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Any of these lets AutoTokenizer build a tokenizer (fast JSON, sentencepiece, BPE, WordPiece).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt")
_MAX_HEADER = 100_000_000  # safetensors' own limit


def check_config(folder: Path) -> dict:
    """``config.json`` exists and is a JSON object with a ``model_type``; returns it."""
    path = folder / "config.json"
    if not path.is_file():
        raise DepthscopeError(
            f"{folder} has no config.json; it is not a Hugging Face model folder (save one with "
            f"model.save_pretrained(FOLDER))"
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DepthscopeError(f"{path} is empty; restore it from the model's source")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DepthscopeError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); restore it from the "
            f"model's source"
        ) from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise DepthscopeError(
            f'{path} has no "model_type"; it is not a transformers config, restore it from the '
            f"model's source"
        )
    return config


def safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete safetensors file, or None if its header and size agree."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return f"only {size} bytes long"
            (header_len,) = struct.unpack("<Q", head)
            if not 0 < header_len <= min(size - 8, _MAX_HEADER):
                return "its header is damaged (not a safetensors file, or cut short)"
            header = json.loads(handle.read(header_len))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return "its header is damaged (not a safetensors file, or cut short)"
    expected = 8 + header_len + max(ends, default=0)
    if expected > size:
        return f"it is truncated ({size} of {expected} bytes)"
    if expected < size:
        return f"it has {size - expected} bytes of trailing garbage"
    return None


def _indexed_shards(folder: Path, index_name: str) -> list[Path]:
    index = folder / index_name
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        return [folder / name for name in sorted(set(weight_map.values()))]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise DepthscopeError(
            f"{index} is damaged (no readable weight_map); restore it from the model's source"
        ) from None


def check_weights(folder: Path) -> None:
    """Weight files exist, every shard an index names is there, no safetensors file is cut short."""
    names = {p.name for p in folder.iterdir()}
    if not names & set(WEIGHT_NAMES) and not any(n.endswith(".safetensors") for n in names):
        raise DepthscopeError(
            f"{folder} has no weights (model.safetensors or pytorch_model.bin); the folder is "
            f"incomplete, save the model with model.save_pretrained(FOLDER)"
        )
    for index_name in (SAFETENSORS_INDEX, "pytorch_model.bin.index.json"):
        if index_name in names:
            missing = [p.name for p in _indexed_shards(folder, index_name) if not p.is_file()]
            if missing:
                raise DepthscopeError(
                    f"{folder} lacks weight shard(s) {', '.join(missing)} named in {index_name}; "
                    f"the download is incomplete, fetch the missing files"
                )
    for path in sorted(folder.glob("*.safetensors")):
        problem = safetensors_problem(path)
        if problem:
            raise DepthscopeError(
                f"weight file {path} is damaged: {problem}; download or save it again"
            )


def check_tokenizer_files(folder: Path) -> None:
    """At least one file a tokenizer can be built from."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise DepthscopeError(
            f"{folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); save the model's "
            f"tokenizer into it with tokenizer.save_pretrained(FOLDER)"
        )


def check_folder(folder: Path) -> dict:
    """All checks of a local model folder, cheapest first; returns its config as a dict."""
    config = check_config(folder)
    check_tokenizer_files(folder)
    check_weights(folder)
    return config


def check_vocab_fits(n_tokens: int, embedding_rows: int | None, spec: str) -> None:
    """Refuse a tokenizer that can emit ids the embedding has no row for (an IndexError later)."""
    if embedding_rows is not None and n_tokens > embedding_rows:
        raise DepthscopeError(
            f"the tokenizer of {spec} has {n_tokens} tokens but the model's embedding only "
            f"{embedding_rows} rows; the tokenizer belongs to another model, use the model's own"
        )
