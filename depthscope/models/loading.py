"""Load any decoder-only LM (hub id, local folder, .gguf file, built-in name) with its adapter."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from depthscope.errors import DepthscopeError
from depthscope.models.adapters import Adapter, BoundAdapter

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


@dataclass
class LoadedModel:
    """A model, its tokenizer, its architecture adapter and where it came from."""

    model: torch.nn.Module
    tokenizer: object
    adapter: BoundAdapter
    identity: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.identity.get("name", "model"))

    @property
    def n_layers(self) -> int:
        return self.adapter.n_layers

    @property
    def d_model(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        tokenizer: object,
        adapter: Adapter | None = None,
        *,
        name: str | None = None,
    ) -> LoadedModel:
        """Wrap a model already in memory (e.g. one you fine-tuned) for depthscope's analyses.

        ``adapter`` describes an architecture outside the built-in table (see
        :func:`~depthscope.models.adapters.register_adapter`). The model is put in eval mode.
        """
        model.eval()
        bound = BoundAdapter(model, adapter)
        config = model.config
        weight = model.get_input_embeddings().weight
        identity = {
            "name": name or getattr(config, "name_or_path", None) or type(model).__name__,
            "source": "in-memory",
            "family": bound.family,
            "model_type": getattr(config, "model_type", None),
            "n_layers": bound.n_layers,
            "d_model": int(config.hidden_size),
            "dtype": str(weight.dtype).removeprefix("torch."),
            "device": str(weight.device),
        }
        return cls(model=model, tokenizer=tokenizer, adapter=bound, identity=identity)


def parse_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """fp32 unless asked otherwise (bf16 and fp16 are for GPUs)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype.lower()]
    except KeyError:
        raise DepthscopeError(
            f"unknown dtype {dtype!r}; use one of float32, bfloat16, float16"
        ) from None


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or os.sep in spec and not _looks_like_hub_id(spec)


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve(spec: str, progress: bool = True) -> tuple[str, dict]:
    """Turn a model spec into something ``from_pretrained`` accepts, plus its identity record."""
    from depthscope.models import zoo

    if spec in zoo.BUILTIN_MODELS:
        folder = zoo.fetch_builtin(spec, progress=progress)
        info = zoo.provenance(spec)
        return str(folder), {
            "name": spec,
            "source": zoo.BUILTIN_MODELS[spec].source,
            "file_sha256": info.get("gguf_sha256"),
            "path": str(folder),
        }
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise DepthscopeError(f"GGUF file {spec} does not exist; check the path")
        from depthscope.models.gguf_convert import gguf_folder

        folder = gguf_folder(path, progress=progress)
        return str(folder), {
            "name": path.stem,
            "source": f"gguf:{path.resolve()}",
            "file_sha256": _file_sha256(path),
            "path": str(folder),
        }
    if path.is_dir():
        return str(path), {
            "name": path.name,
            "source": f"folder:{path.resolve()}",
            "path": str(path),
        }
    if _looks_like_path(spec) or path.suffix in {".safetensors", ".bin", ".pt"}:
        raise DepthscopeError(
            f"model path {spec} does not exist; pass an existing model folder, a .gguf file, "
            f"a Hugging Face id or a built-in name ({', '.join(zoo.BUILTIN_MODELS)})"
        )
    return spec, {"name": spec.split("/")[-1], "source": f"hf:{spec}"}


def _hub_error(spec: str, exc: Exception) -> DepthscopeError:
    from depthscope.models import zoo

    return DepthscopeError(
        f"could not load {spec!r}: not a built-in model, local folder or .gguf file, and the "
        f"Hugging Face hub is unreachable or has no such model ({type(exc).__name__}); pass a "
        f"local folder (e.g. one saved with save_pretrained) or one of: {', '.join(zoo.BUILTIN_MODELS)}"
    )


def _load_config(target: str, spec: str, is_local: bool):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(target, local_files_only=is_local)
    except (OSError, ValueError) as exc:
        if is_local:
            raise DepthscopeError(
                f"{spec} is not a Hugging Face model folder ({str(exc).splitlines()[0][:160]}); "
                f"it needs a config.json and weights"
            ) from exc
        raise _hub_error(spec, exc) from exc


CAUSAL_HEADS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def _require_causal_lm(config, spec: str) -> None:
    """Refuse encoders and encoder-decoders before loading weights (they would get a random head)."""
    architectures = getattr(config, "architectures", None) or []
    if getattr(config, "is_encoder_decoder", False) or (
        architectures and not any(a.endswith(CAUSAL_HEADS) for a in architectures)
    ):
        names = ", ".join(architectures) or config.model_type
        raise DepthscopeError(
            f"{spec} ({names}) is not a causal (decoder-only) language model with an LM head; "
            f"depthscope analyses models that AutoModelForCausalLM loads with trained weights"
        )


def load_model(
    spec: str,
    *,
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
    device_map: str | dict | None = None,
    progress: bool = True,
    adapter: Adapter | None = None,
) -> LoadedModel:
    """Load a causal LM by built-in name, hub id, local folder or ``.gguf`` file.

    ``adapter`` describes an architecture outside the built-in table (by default it is found from
    the config's ``model_type``, including adapters added with ``register_adapter``).

    Defaults to fp32 on CPU. ``device_map`` (e.g. ``"auto"``) is passed to ``from_pretrained``
    for multi-GPU placement, in which case ``device`` is ignored.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    target, identity = resolve(spec, progress=progress)
    is_local = Path(target).is_dir()
    config = _load_config(target, spec, is_local)
    _require_causal_lm(config, spec)
    torch_dtype = parse_dtype(dtype, device)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            target,
            dtype=torch_dtype,
            device_map=device_map,
            local_files_only=is_local,
        )
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            raise DepthscopeError(
                f"{spec} ({type(config).__name__}) is not a causal (decoder-only) language model; "
                f"depthscope analyses models loadable with AutoModelForCausalLM"
            ) from exc
        raise
    except OSError as exc:
        if is_local:
            raise DepthscopeError(
                f"could not read weights from {spec} ({str(exc).splitlines()[0][:160]}); "
                f"the folder may be incomplete"
            ) from exc
        raise _hub_error(spec, exc) from exc
    if device_map is None:
        model = model.to(device)
    model.eval()
    model.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(target, local_files_only=is_local)
    adapter = BoundAdapter(model, adapter)
    identity.update(
        {
            "family": adapter.family,
            "model_type": config.model_type,
            "n_layers": adapter.n_layers,
            "d_model": int(config.hidden_size),
            "dtype": str(torch_dtype).removeprefix("torch."),
            "device": str(model.get_input_embeddings().weight.device),
            "revision": getattr(config, "_commit_hash", None),
            "load_seconds": round(time.perf_counter() - started, 3),
        }
    )
    return LoadedModel(model=model, tokenizer=tokenizer, adapter=adapter, identity=identity)
