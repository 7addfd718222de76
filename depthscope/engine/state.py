"""Analysis state as data: typed, mergeable, and stored without pickle.

An analysis keeps its running statistics in a dataclass registered with :func:`state_type`. Such a
state can be

- **saved** as one safetensors file (tensors as tensors, everything else as JSON in the header),
  so a checkpoint planted in a shared run folder can never execute code: decoding only builds
  registered dataclasses, lists, dicts, numbers, strings and tensors;
- **merged** with the state of another shard of prompts (another batch, another process): every
  field says how it combines, by its type or by ``field(metadata={"merge": ...})``.

Merge rules: :class:`~depthscope.engine.stats.Mean`/:class:`~depthscope.engine.stats.Max` and
registered dataclasses merge field by field; ``int``/``float`` add (counts); lists concatenate (a
shard holding later prompts comes second); dicts merge key by key; tensors and ``"same"`` fields must
agree (e.g. a baseline both shards computed identically).
"""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from depthscope.core.errors import DepthscopeError
from depthscope.engine.stats import Max, Mean

FORMAT = "depthscope-state/1"
_TYPES: dict[str, type] = {}


def state_type(cls: type) -> type:
    """Register a dataclass as a state type (decorator); only registered types are decoded."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} must be a dataclass to be a state type")
    _TYPES[_type_name(cls)] = cls
    return cls


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


state_type(Mean)
state_type(Max)


def same(default: Any = None, **kwargs: Any) -> Any:
    """A field that every shard holds identically (merging checks equality instead of adding)."""
    factory = kwargs.pop("default_factory", None)
    meta = {"merge": "same"}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta, **kwargs)
    return dataclasses.field(default=default, metadata=meta, **kwargs)


# ---------------------------------------------------------------- encoding


class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def encode(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int | float):
            return value if not isinstance(value, float) or value == value else {"__nan__": True}
        if isinstance(value, torch.Tensor):
            key = f"t{len(self.tensors)}"
            # a copy: two fields may hold the same tensor (e.g. a Mean and a Max fed one value),
            # and safetensors refuses tensors that share memory
            self.tensors[key] = value.detach().cpu().contiguous().clone()
            return {"__tensor__": key}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            name = _type_name(type(value))
            if _TYPES.get(name) is not type(value):
                raise TypeError(f"{name} is not a registered state type (use @state_type)")
            fields = {
                f.name: self.encode(getattr(value, f.name)) for f in dataclasses.fields(value)
            }
            return {"__type__": name, "fields": fields}
        if isinstance(value, list | tuple):
            items = [self.encode(v) for v in value]
            return items if isinstance(value, list) else {"__tuple__": items}
        if isinstance(value, dict):
            return {"__dict__": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        raise TypeError(f"cannot store a {type(value).__name__} in analysis state")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__nan__" in value:
        return float("nan")
    if "__tuple__" in value:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if "__dict__" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__dict__"]}
    if "__type__" in value:
        cls = _TYPES.get(value["__type__"])
        if cls is None:
            raise ValueError(f"unknown state type {value['__type__']!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: _decode(v, tensors) for k, v in value["fields"].items() if k in known}
        return cls(**fields)
    raise ValueError("malformed state document")


def encode_state(state: Any) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, document)``: copies of the state's tensors, and its structure as JSON data."""
    encoder = _Encoder()
    doc = {"format": FORMAT, "state": encoder.encode(state)}
    return encoder.tensors, doc


def decode_state(tensors: dict[str, torch.Tensor], doc: dict) -> Any:
    """The state :func:`encode_state` described; a foreign or malformed document raises ValueError."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} document")
    try:
        return _decode(doc["state"], tensors)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a readable depthscope state ({type(exc).__name__})") from exc


def state_to_bytes(state: Any, meta: dict | None = None) -> bytes:
    """One safetensors blob: the tensors, plus the state's structure and ``meta`` as JSON."""
    tensors, doc = encode_state(state)
    doc["meta"] = meta or {}
    return save_tensors(
        tensors or {"_empty": torch.zeros(0)}, metadata={"depthscope": json.dumps(doc)}
    )


def state_from_bytes(blob: bytes) -> tuple[Any, dict]:
    """``(state, meta)`` from :func:`state_to_bytes`; a damaged or foreign blob raises ValueError."""
    try:
        (header_len,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8 : 8 + header_len])
        doc = json.loads(header["__metadata__"]["depthscope"])
        if doc.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} document")
        tensors = load_tensors(blob)
        return decode_state(tensors, doc), doc.get("meta", {})
    except (struct.error, KeyError, TypeError, json.JSONDecodeError, RuntimeError) as exc:
        raise ValueError(f"not a readable depthscope state ({type(exc).__name__})") from exc
    except Exception as exc:  # safetensors raises its own error types on corrupt data
        if isinstance(exc, ValueError):
            raise
        raise ValueError(f"not a readable depthscope state ({type(exc).__name__})") from exc


# ---------------------------------------------------------------- merging


def merge(first: Any, second: Any, rule: str | None = None) -> Any:
    """The state of the prompts of ``first`` followed by those of ``second`` (neither is changed)."""
    if first is None:
        return second
    if second is None:
        return first
    if rule == "same":
        if not _equal(first, second):
            raise DepthscopeError(
                "shards of one analysis disagree on a value they should share; rerun with "
                "identical settings on every process"
            )
        return first
    if isinstance(first, Mean | Max):
        merged = type(first)()
        merged.merge(first)
        merged.merge(second)
        return merged
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        values = {
            f.name: merge(getattr(first, f.name), getattr(second, f.name), f.metadata.get("merge"))
            for f in dataclasses.fields(first)
        }
        return type(first)(**values)
    if isinstance(first, bool | str):
        return merge(first, second, "same")
    if isinstance(first, int | float):
        return first + second
    if isinstance(first, list):
        return [*first, *second]
    if isinstance(first, tuple):
        return tuple(merge(a, b, rule) for a, b in zip(first, second, strict=True))
    if isinstance(first, dict):
        out = dict(first)
        for key, value in second.items():
            out[key] = merge(out[key], value, rule) if key in out else value
        return out
    if isinstance(first, torch.Tensor):
        return merge(first, second, "same")
    raise TypeError(f"cannot merge {type(first).__name__}")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and bool(torch.equal(a.cpu(), b.cpu()))
    if dataclasses.is_dataclass(a) and type(a) is type(b):
        return all(_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b
