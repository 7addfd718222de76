"""Where a model goes: ``--device`` and ``--device-map``, checked before any weight is loaded.

``--device`` names one torch device (``cpu``, ``cuda``, ``cuda:1``, ``mps``). ``--device-map``
spreads a model that does not fit one device over several, through accelerate:
``auto``/``balanced``/``balanced_low_0``/``sequential`` let accelerate choose (filling GPUs, then CPU
memory, then disk), a JSON object or a JSON file maps module names to devices, e.g.
``{"model.embed_tokens": 0, "model.layers.0": 0, ..., "model.layers.31": 1, "model.norm": 1,
"lm_head": 1}`` (an integer is a CUDA device; ``"cpu"`` and ``"disk"`` offload weights, which
accelerate moves in for each call). Every problem is one line, raised before the model loads.

With several processes per machine (``torchrun --nproc-per-node N``), ``--device cuda`` gives each
process the GPU of its local rank, and a strategy map gives each process its own share of GPUs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from depthscope.core.errors import DepthscopeError

STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
OFFLOAD = ("cpu", "disk")


@dataclass(frozen=True)
class Placement:
    """Arguments for loading: ``device`` (ignored by from_pretrained when a map is given),
    ``device_map`` and, for a process that shares a machine's GPUs, ``max_memory`` limiting
    accelerate to this process's GPUs."""

    device: str
    device_map: str | dict | None = None
    max_memory: dict | None = field(default=None)

    @property
    def offloads_to_disk(self) -> bool:
        return isinstance(self.device_map, dict) and "disk" in self.device_map.values()


def _cuda_missing(device: str) -> DepthscopeError:
    if torch.version.cuda is None:
        why = "this PyTorch is a CPU-only build (install a CUDA build of torch)"
    else:
        why = "PyTorch sees no CUDA GPU (check the driver and CUDA_VISIBLE_DEVICES)"
    return DepthscopeError(f"--device {device} asks for a GPU but {why}; or use --device cpu")


def check_device(device: str) -> torch.device:
    """The torch device named ``device``; one clear line if it does not exist here."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise DepthscopeError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise _cuda_missing(device)
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise DepthscopeError(
                f"--device {device}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})"
            )
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise DepthscopeError(f"--device {device}: Apple MPS is not available here; use cpu")
    elif parsed.type != "cpu":
        raise DepthscopeError(f"unsupported device {device!r}; use cpu, cuda, cuda:N or mps")
    return parsed


def _check_map_device(module: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise DepthscopeError(
            f"--device-map: {module!r} -> {value!r} is not a device; use a GPU number, "
            f"'cuda:N', 'cpu' or 'disk'"
        )
    if isinstance(value, int):
        if value < 0:
            raise DepthscopeError(f"--device-map: {module!r} -> {value} is not a GPU number")
        value = f"cuda:{value}"
    if value in OFFLOAD:
        return
    try:
        check_device(value)
    except DepthscopeError as exc:
        raise DepthscopeError(
            f"--device-map names a missing device for {module!r}: {exc}"
        ) from None


def parse_device_map(spec: str | dict | None) -> str | dict | None:
    """``auto``/``balanced``/..., a JSON object, or a path to a JSON file; every device checked."""
    if spec is None or isinstance(spec, dict):
        mapping = spec
    elif spec in STRATEGIES:
        return spec
    elif spec.lstrip().startswith("{"):
        mapping = _load_json(spec, "the --device-map JSON")
    elif Path(spec).expanduser().is_file():
        mapping = _load_json(Path(spec).expanduser().read_text(), f"--device-map file {spec}")
    else:
        raise DepthscopeError(
            f"--device-map {spec!r} is not one of {', '.join(STRATEGIES)}, a JSON object or an "
            f"existing JSON file"
        )
    if mapping is None:
        return None
    if not isinstance(mapping, dict) or not mapping:
        raise DepthscopeError(
            "--device-map JSON must be a non-empty object of module name -> device, e.g. "
            '{"model.layers.0": 0, "lm_head": "cpu"}'
        )
    for module, value in mapping.items():
        _check_map_device(module, value)
    return mapping


def _load_json(text: str, what: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DepthscopeError(
            f"{what} is not valid JSON ({exc.msg} at line {exc.lineno})"
        ) from None


def gpus_of_process(local_rank: int, local_world_size: int, n_gpus: int) -> list[int]:
    """The GPUs one of ``local_world_size`` processes on a machine uses for a dispatched model."""
    if local_world_size > n_gpus:
        raise DepthscopeError(
            f"{local_world_size} processes on this machine share {n_gpus} GPU(s) with --device-map; "
            f"start at most {n_gpus} processes per machine (torchrun --nproc-per-node)"
        )
    per = n_gpus // local_world_size
    return list(range(local_rank * per, (local_rank + 1) * per))


def resolve_placement(
    device: str = "cpu",
    device_map: str | dict | None = None,
    *,
    local_rank: int = 0,
    local_world_size: int = 1,
) -> Placement:
    """Check ``--device``/``--device-map`` for this process and say how to load the model.

    Call it before loading: a bad device is one line, not a traceback after minutes of loading.
    """
    mapping = parse_device_map(device_map)
    if mapping is None:
        parsed = check_device(device)
        if parsed.type == "cuda" and parsed.index is None and local_world_size > 1:
            count = torch.cuda.device_count()
            if local_rank >= count:
                raise DepthscopeError(
                    f"{local_world_size} processes on this machine but only {count} GPU(s); start "
                    f"at most {count} processes per machine (torchrun --nproc-per-node {count})"
                )
            return Placement(device=f"cuda:{local_rank}")
        return Placement(device=device)
    if local_world_size == 1:
        return Placement(device=device, device_map=mapping)
    if isinstance(mapping, dict):
        raise DepthscopeError(
            "an explicit --device-map would put every process of this machine on the same GPUs; "
            "use --device-map auto (each process gets its own GPUs) or one process per machine"
        )
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n_gpus == 0:
        return Placement(device=device, device_map=mapping)  # CPU/disk placement needs no split
    mine = gpus_of_process(local_rank, local_world_size, n_gpus)
    max_memory: dict = {
        gpu: torch.cuda.mem_get_info(gpu)[0] if gpu in mine else 0 for gpu in range(n_gpus)
    }
    max_memory["cpu"] = _available_ram() // local_world_size
    return Placement(device=f"cuda:{mine[0]}", device_map=mapping, max_memory=max_memory)


def _available_ram() -> int:
    import psutil  # a dependency of accelerate, needed only to size placements

    return int(psutil.virtual_memory().available)
