"""Load any decoder-only LM (hub id, local folder, .gguf file, built-in name) with its adapter.

Everything that can be checked cheaply is checked before the weights load, one line per problem:
the folder's config, tokenizer and weight files (:mod:`depthscope.models.loading.checks`), whether
the hub answers at all (:mod:`depthscope.models.loading.hub`), whether the tokenizer fits the
embedding. The loaded model carries an identity whose :func:`model_fingerprint` covers the
content of its files, so results of a changed model are never taken for current ones.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from depthscope.core.errors import DepthscopeError, first_line
from depthscope.models import discovery
from depthscope.models.adapters import Adapter, BoundAdapter, text_config
from depthscope.models.devices import home_device
from depthscope.models.loading import hub as hub_access
from depthscope.models.loading import zoo
from depthscope.models.loading.checks import (
    check_config,
    check_tokenizer_files,
    check_vocab_fits,
    check_weights,
)
from depthscope.models.loading.context import check_prompt_lengths, context_limit
from depthscope.models.loading.fit import check_weights_fit
from depthscope.models.loading.gguf import gguf_folder
from depthscope.models.loading.identity import (
    file_sha256,
    folder_sha256,
    model_fingerprint,
    tensors_sha256,
)
from depthscope.models.loading.quantize import check_quantize, quantization_config

__all__ = [
    "DTYPES",
    "LoadedModel",
    "ModelInfo",
    "check_prompt_lengths",
    "context_limit",
    "inspect_model",
    "load_model",
    "model_fingerprint",
    "parse_dtype",
    "resolve",
]

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
    def fingerprint(self) -> str:
        """:func:`model_fingerprint` of the identity: changes when the weights, dtype ... do.

        A model given in memory has no files to hash: its tensors are hashed, once.
        """
        if not self.identity.get("fingerprint"):
            if self.identity.get("source") == "in-memory":
                self.identity["tensors_sha256"] = tensors_sha256(self.model)
            self.identity["fingerprint"] = model_fingerprint(self.identity)
        return str(self.identity["fingerprint"])

    @property
    def vocab_size(self) -> int | None:
        return _config_vocab(self.model.config)

    @property
    def context_limit(self) -> int | None:
        """Positions the model was trained for (None if its config does not say)."""
        return context_limit(self.model)

    @property
    def n_layers(self) -> int:
        return self.adapter.n_layers

    @property
    def d_model(self) -> int:
        return int(text_config(self.model.config).hidden_size)

    @property
    def device(self) -> torch.device:
        """Where token ids go in and measurements are kept (also for offloaded embeddings)."""
        return home_device(self.model)

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
        load_check: bool = True,
    ) -> LoadedModel:
        """Wrap a model already in memory (e.g. one you fine-tuned) for depthscope's analyses.

        ``adapter`` describes an architecture outside the built-in table (see
        :func:`~depthscope.models.adapters.register_adapter`). The model is put in eval mode and
        proven as :func:`load_model` proves a load (``load_check=False`` skips that).
        """
        model.eval()
        config = model.config
        name = name or getattr(config, "name_or_path", None) or type(model).__name__
        bound, record = check_load(model, adapter, tokenizer, name, load_check)
        weight = model.get_input_embeddings().weight
        identity = {
            "name": name,
            "source": "in-memory",
            "family": bound.family,
            "model_type": getattr(config, "model_type", None),
            "n_layers": bound.n_layers,
            "d_model": int(text_config(config).hidden_size),
            "dtype": str(weight.dtype).removeprefix("torch."),
            "device": str(weight.device),
        }
        identity["load_check"] = record
        return cls(model=model, tokenizer=tokenizer, adapter=bound, identity=identity)


def check_load(
    model: torch.nn.Module,
    adapter: Adapter | None,
    tokenizer: object,
    name: str,
    enabled: bool = True,
    quantized: bool = False,
) -> tuple[BoundAdapter, dict]:
    """Bind the model's adapter (given, registered, the table's, or discovered from its module
    tree: :mod:`depthscope.models.discovery`) and prove it on the loaded model
    (:mod:`depthscope.engine.proof`); returns it and the record ``run.json`` keeps, or the
    record that the proof was skipped (a discovery always proves)."""
    vocab = model.get_input_embeddings().num_embeddings
    if tokenizer is not None:  # rows past the tokenizer's may be padding never trained
        vocab = min(vocab, len(tokenizer))
    return discovery.bind(
        model,
        adapter,
        vocab,
        name=name,
        check=enabled,
        quantized=quantized,
        max_len=context_limit(model),
    )


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


def _did_you_mean(spec: str) -> str:
    near = hub_access.nearest_builtin(spec)
    return f"did you mean the built-in {near!r}? " if near and near != spec else ""


def resolve(spec: str, progress: bool = True) -> tuple[str, dict]:
    """Turn a model spec into something ``from_pretrained`` accepts, plus its identity record."""

    if spec in zoo.BUILTIN_MODELS:
        folder = zoo.fetch_builtin(spec, progress=progress)
        info = zoo.provenance(spec)
        return str(folder), {
            "name": spec,
            "source": zoo.BUILTIN_MODELS[spec].source,
            "file_sha256": info.get("gguf_sha256"),
            "files_sha256": folder_sha256(folder),
            "path": str(folder),
        }
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise DepthscopeError(f"GGUF file {spec} does not exist; check the path")

        folder = gguf_folder(path, progress=progress)
        return str(folder), {
            "name": path.stem,
            "source": f"gguf:{path.resolve()}",
            "file_sha256": file_sha256(path),
            "files_sha256": folder_sha256(folder),
            "path": str(folder),
        }
    if path.is_dir():
        return str(path), {
            "name": path.resolve().name,
            "source": f"folder:{path.resolve()}",
            "files_sha256": folder_sha256(path),
            "path": str(path),
        }
    if path.is_file():
        raise DepthscopeError(
            f"{spec} is a file; pass the model's folder (with config.json and weights) or a "
            f".gguf file"
        )
    if _looks_like_path(spec) or path.suffix in {".safetensors", ".bin", ".pt"}:
        raise DepthscopeError(
            f"model path {spec} does not exist; pass an existing model folder, a .gguf file, "
            f"a Hugging Face id or a built-in name ({', '.join(zoo.BUILTIN_MODELS)})"
        )
    return spec, {"name": spec.split("/")[-1], "source": f"hf:{spec}", "revision": None}


def _hub_error(spec: str, exc: Exception, hub_reached: bool) -> DepthscopeError:

    builtins = ", ".join(zoo.BUILTIN_MODELS)
    if not hub_reached:
        why = (
            "the Hugging Face hub is switched off (HF_HUB_OFFLINE is set)"
            if hub_access.offline_requested()
            else f"the Hugging Face hub ({hub_access.hub_endpoint()}) is unreachable"
        )
        return DepthscopeError(
            f"could not load {spec!r}: it is not a built-in model, local folder or .gguf file, "
            f"{why} and it is not in the local Hugging Face cache; {_did_you_mean(spec)}"
            f"pass a local folder (e.g. one saved with save_pretrained) or one of: {builtins}"
        )
    return DepthscopeError(
        f"could not load {spec!r} from the Hugging Face hub ({first_line(exc)}); {_did_you_mean(spec)}"
        f"check the id and your access to it, or pass a local folder or one of: {builtins}"
    )


def _load_config(
    target: str, spec: str, is_local: bool, local_only: bool | None = None, revision=None
):

    local_only = is_local if local_only is None else local_only
    try:
        return AutoConfig.from_pretrained(target, local_files_only=local_only, revision=revision)
    except (OSError, ValueError, KeyError) as exc:
        if is_local:
            raise DepthscopeError(
                f"{spec} is not a Hugging Face model folder transformers can read "
                f"({first_line(exc)}); it needs a config.json and weights"
            ) from exc
        raise _hub_error(spec, exc, hub_reached=not local_only) from exc


def _load_tokenizer(target: str, spec: str, is_local: bool, local_only: bool, revision=None):

    try:
        return AutoTokenizer.from_pretrained(target, local_files_only=local_only, revision=revision)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        if not is_local and isinstance(exc, OSError):
            raise _hub_error(spec, exc, hub_reached=not local_only) from exc
        raise DepthscopeError(
            f"could not load the tokenizer of {spec} ({first_line(exc)}); save the model's "
            f"tokenizer files next to it with tokenizer.save_pretrained(FOLDER)"
        ) from exc


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


def _config_vocab(config) -> int | None:
    value = getattr(text_config(config), "vocab_size", None)
    return value if isinstance(value, int) and value > 0 else None


def _refuse_random_weights(info: dict, spec: str) -> None:
    """Weights that the checkpoint lacks would be freshly initialised: random, not the model."""
    missing = sorted(info.get("missing_keys") or ())
    mismatched = sorted(
        str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys") or ()
    )
    if missing or mismatched:
        names = missing or mismatched
        kind = "lack" if missing else "have the wrong shape for"
        raise DepthscopeError(
            f"the weights of {spec} {kind} {len(names)} tensor(s) the model needs (e.g. "
            f"{names[0]}); they would be random, so the checkpoint does not match its config.json"
        )


def _load_weights(
    info: ModelInfo, torch_dtype: torch.dtype, device_map, placement_options: dict | None = None
) -> torch.nn.Module:

    spec, config, is_local, local_only = info.spec, info.config, info.is_local, info.local_only

    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols of .bin files
            warnings.filterwarnings("ignore", category=UserWarning, module="torch")
            model, loading = AutoModelForCausalLM.from_pretrained(
                info.target,
                dtype=torch_dtype,
                device_map=device_map,
                local_files_only=local_only,
                revision=info.revision,
                output_loading_info=True,
                **(placement_options or {}),
            )
    except pickle.UnpicklingError as exc:
        raise DepthscopeError(
            f"the .bin weights of {spec} hold more than tensors (a pickle that would run code), "
            f"so they were not loaded; convert the checkpoint to safetensors from a trusted copy"
        ) from exc
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
                f"could not read weights from {spec} ({first_line(exc)}); "
                f"the folder may be incomplete"
            ) from exc
        raise _hub_error(spec, exc, hub_reached=not local_only) from exc
    except RuntimeError as exc:
        if any(word in str(exc) for word in ("size mismatch", "mismatched", "shape")):
            raise DepthscopeError(
                f"the weights of {spec} have other shapes than its config.json describes; the "
                f"config belongs to another model, restore the model's own config.json"
            ) from exc
        raise
    _refuse_random_weights(loading, spec)
    return model


@dataclass
class ModelInfo:
    """A model as far as it is known before its weights load: checked, identified, tokenizer.

    ``identity`` already carries the :func:`model_fingerprint` that the loaded model will have,
    so a run can decide what is up to date without loading any weights.
    """

    spec: str
    target: str  # what from_pretrained reads: a folder or a hub id
    identity: dict
    config: object
    tokenizer: object
    is_local: bool
    local_only: bool  # a hub id read from the local Hugging Face cache (the hub did not answer)
    init_seed: int | None = None  # ``random-init:``: the architecture with fresh weights

    @property
    def revision(self) -> str | None:
        return None if self.is_local else self.identity.get("revision")

    @property
    def vocab_size(self) -> int | None:
        return _config_vocab(self.config)

    @property
    def context_limit(self) -> int | None:
        return context_limit(self.config)

    @property
    def fingerprint(self) -> str:
        return str(self.identity["fingerprint"])


def _hub_revision(repo_id: str, local_only: bool) -> str | None:
    """The commit that will be loaded: the hub's current one, or the cached snapshot's."""
    if not local_only:
        try:
            from huggingface_hub import HfApi  # only where the hub is used

            return HfApi().model_info(repo_id, timeout=hub_access.PROBE_TIMEOUT_S * 3).sha
        except Exception:  # no such model, gated, slow: loading reports it in one line
            return None
    return hub_access.cached_revision(repo_id)


RANDOM_INIT = "random-init:"


def random_init_spec(spec: str) -> tuple[str, int] | None:
    """``random-init:[SEED:]MODEL`` -> (MODEL, SEED); None for any other spec.

    The model's own architecture and tokenizer with freshly initialised weights (its family's
    ``_init_weights``, seeded): the reference a trained model's verdict is read against.
    """
    if not spec.startswith(RANDOM_INIT):
        return None
    rest = spec[len(RANDOM_INIT) :]
    head, sep, tail = rest.partition(":")
    if sep and head.isdigit() and tail:
        return tail, int(head)
    if not rest:
        raise DepthscopeError(
            "random-init: needs a model, e.g. random-init:smollm2-135m or random-init:3:MODEL "
            "for weight seed 3"
        )
    return rest, 0


def _random_init_info(inner: ModelInfo, seed: int) -> ModelInfo:
    identity = {
        key: inner.identity.get(key) for key in ("model_type", "dtype", "context_limit", "quantize")
    }
    identity.update(
        {
            "name": f"{inner.identity.get('name', inner.spec)}-random-init",
            "source": f"random-init:{seed}:{inner.identity.get('source')}",
            "init_seed": seed,
            "config_of": inner.identity.get("fingerprint"),
        }
    )
    identity = {k: v for k, v in identity.items() if v is not None}
    identity["fingerprint"] = model_fingerprint(identity)
    return dataclasses.replace(
        inner, spec=f"{RANDOM_INIT}{seed}:{inner.spec}", identity=identity, init_seed=seed
    )


def _random_weights(info: ModelInfo, torch_dtype: torch.dtype) -> torch.nn.Module:
    """The architecture of ``info`` with weights drawn by its own initialiser, seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(info.init_seed))
        return AutoModelForCausalLM.from_config(info.config, dtype=torch_dtype)


def inspect_model(
    spec: str,
    *,
    dtype: str | torch.dtype | None = None,
    device: str = "cpu",
    progress: bool = True,
    adapter: Adapter | None = None,
    quantize: str | None = None,
) -> ModelInfo:
    """Everything about a model that needs no weights: checks, config, tokenizer, fingerprint.

    Refuses in one line, before any weight is read: a broken folder (config, tokenizer files,
    truncated weights), a model that is not a causal LM, an unreachable hub (within seconds),
    a tokenizer larger than the embedding.
    """
    random = random_init_spec(spec)
    if random is not None:
        if quantize:
            raise DepthscopeError(
                f"{spec}: random weights are not quantised; drop --quantize for the reference"
            )
        inner = inspect_model(
            random[0], dtype=dtype, device=device, progress=progress, adapter=adapter
        )
        return _random_init_info(inner, random[1])
    torch_dtype = parse_dtype(dtype, device)
    target, identity = resolve(spec, progress=progress)
    is_local = Path(target).is_dir()
    if is_local:
        check_config(Path(target))
    local_only = is_local or not hub_access.hub_available()
    if local_only and not is_local and not hub_access.in_local_cache(target):
        raise _hub_error(spec, FileNotFoundError(spec), hub_reached=False)
    if not is_local:
        identity["revision"] = _hub_revision(target, local_only)
    revision = None if is_local else identity.get("revision")
    config = _load_config(target, spec, is_local, local_only, revision)
    _require_causal_lm(config, spec)
    if is_local:  # the model's kind first: a BERT folder is refused as such, not for its files
        check_tokenizer_files(Path(target))
        check_weights(Path(target))
    tokenizer = _load_tokenizer(target, spec, is_local, local_only, revision)
    check_vocab_fits(len(tokenizer), _config_vocab(config), spec)
    identity.update(
        {
            "model_type": config.model_type,
            "dtype": str(torch_dtype).removeprefix("torch."),
            "context_limit": context_limit(config),
        }
    )
    if quantize:  # quantised weights give other numbers: part of the fingerprint
        identity["quantize"] = quantize
    identity["fingerprint"] = model_fingerprint(identity)
    return ModelInfo(spec, target, identity, config, tokenizer, is_local, local_only)


def load_model(
    spec: str,
    *,
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
    device_map: str | dict | None = None,
    progress: bool = True,
    adapter: Adapter | None = None,
    info: ModelInfo | None = None,
    max_memory: dict | None = None,
    offload_folder: str | None = None,
    quantize: str | None = None,
    load_check: bool = True,
) -> LoadedModel:
    """Load a causal LM by built-in name, hub id, local folder or ``.gguf`` file.

    ``adapter`` describes an architecture outside the built-in table (by default it is found from
    the config's ``model_type``, including adapters added with ``register_adapter``). ``info`` is
    what :func:`inspect_model` already found (it is not inspected twice). ``max_memory`` and
    ``offload_folder`` go to accelerate with a ``device_map`` (a map with ``"disk"`` entries needs
    the folder). ``quantize`` (``int8`` or ``nf4``) loads the linear weights through bitsandbytes
    (:mod:`depthscope.models.loading.quantize`); the computation stays in ``dtype``.

    Defaults to fp32 on CPU. ``device_map`` (e.g. ``"auto"``) is passed to ``from_pretrained``
    for multi-GPU placement, in which case ``device`` is ignored. A hub id is looked up in the
    local Hugging Face cache only when the hub does not answer within a few seconds. Every check
    of :func:`inspect_model` runs first.

    Every load is then proven on a short probe of the loaded model in its dtype
    (:mod:`depthscope.engine.proof`): the adapter's pieces add up to each layer's output and the
    replay of the clean residual gives the model's logits, or the model is refused naming the
    layer. The record lands in ``identity["load_check"]`` (so in ``run.json``);
    ``load_check=False`` (``--no-load-check``) skips the proof and says so there.
    """
    started = time.perf_counter()
    check_quantize(quantize, spec)
    if info is None:
        info = inspect_model(
            spec, dtype=dtype, device=device, progress=progress, adapter=adapter, quantize=quantize
        )
    if device_map is None:  # a device map offloads what does not fit; one device must hold it all
        check_weights_fit(info.config, parse_dtype(dtype, device), device, quantize, spec)
    options = {
        k: v for k, v in (("max_memory", max_memory), ("offload_folder", offload_folder)) if v
    }
    if quantize:  # bitsandbytes places the weights itself: a device map, never a later .to()
        options["quantization_config"] = quantization_config(quantize, parse_dtype(dtype, device))
        device_map = device_map or {"": device}
    if info.init_seed is not None:
        model = _random_weights(info, parse_dtype(dtype, device))
    else:
        model = _load_weights(info, parse_dtype(dtype, device), device_map, options)
    check_vocab_fits(len(info.tokenizer), model.get_input_embeddings().num_embeddings, spec)
    if device_map is None:
        model = model.to(device)
    model.eval()
    model.requires_grad_(False)
    bound, record = check_load(
        model,
        adapter,
        info.tokenizer,
        str(info.identity.get("name", spec)),
        load_check,
        bool(quantize),
    )
    identity = info.identity
    identity.update(
        {
            "family": bound.family,
            "n_layers": bound.n_layers,
            "d_model": int(text_config(info.config).hidden_size),
            "device": str(home_device(model)),
        }
    )
    if adapter is not None:  # an adapter from outside the table decides what is measured
        identity["adapter"] = bound.family
        identity["fingerprint"] = model_fingerprint(identity)
    identity["load_check"] = record
    identity["load_seconds"] = round(time.perf_counter() - started, 3)
    return LoadedModel(model=model, tokenizer=info.tokenizer, adapter=bound, identity=identity)
