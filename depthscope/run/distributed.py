"""Data parallelism over prompts with PyTorch's own engine: ``torch.distributed`` under ``torchrun``/``srun``.

A run started by ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``) or by Slurm's ``srun`` (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``, ``SLURM_LOCALID``)
becomes one process of a group: :func:`init_distributed` joins the group (backend ``gloo`` on CPU,
``nccl`` on CUDA) with a timeout, so a process that dies or hangs makes the others stop with a
:class:`DepthscopeError` instead of waiting forever. A plain ``depthscope`` command gets a
:class:`SingleProcess` with the same API, so callers never branch on the launch mode.

Every process runs the whole command on its own share of the prompts, a few contiguous runs of
about equal estimated work (:meth:`Distributed.shard_prompts`); prompts are still traced in the
batches a single process would form, so every prompt's numbers are the same as in a single-process
run. Analysis states are mergeable data (:mod:`depthscope.engine.state`), one per run
(:class:`~depthscope.run.segments.Segments`): :func:`merge_on_main` gathers every rank's
serialised state on rank 0 and folds all runs in prompt order. Bytes travel as ``uint8`` tensors
through ``torch.distributed`` collectives; nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from depthscope.core.errors import DepthscopeError, first_line
from depthscope.engine.state import merge, state_from_bytes, state_to_bytes
from depthscope.run.segments import unwrap
from depthscope.run.sharding import balanced_shares, block_bounds

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 1800.0  # how long a collective waits for a silent process (override below)
TIMEOUT_ENV = "DEPTHSCOPE_DIST_TIMEOUT"  # seconds
DISABLE_ENV = "DEPTHSCOPE_DISTRIBUTED"  # "0": ignore launcher variables, run as one process
OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}


# ---------------------------------------------------------------- launch detection


@dataclass(frozen=True)
class Launch:
    """Where this process sits in a launched group, and how to reach rank 0."""

    launcher: str  # "torchrun" or "slurm"
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str | None
    master_port: int | None


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        if default is None:
            raise DepthscopeError(
                f"launcher variable {name} is missing; start with torchrun or srun"
            )
        return default
    try:
        return int(raw.split("(")[0])  # Slurm writes e.g. SLURM_TASKS_PER_NODE="2(x3)"
    except ValueError:
        raise DepthscopeError(
            f"launcher variable {name}={raw!r} is not an integer; check the launcher's variables"
        ) from None


def detect_launch(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The launch this process belongs to, or None for a plain single process.

    torchrun's variables win over Slurm's (torchrun inside an allocation). Slurm counts only
    inside an ``srun`` step (``SLURM_STEP_ID`` is set), not in the batch script itself, which
    would otherwise wait for tasks that never start. ``DEPTHSCOPE_DISTRIBUTED=0`` ignores both.
    """
    env = os.environ if environ is None else environ
    if env.get(DISABLE_ENV, "1") == "0":
        return None
    if "RANK" in env and "WORLD_SIZE" in env:
        world = _int(env, "WORLD_SIZE")
        return Launch(
            launcher="torchrun",
            rank=_int(env, "RANK"),
            world_size=world,
            local_rank=_int(env, "LOCAL_RANK", 0),
            local_world_size=_int(env, "LOCAL_WORLD_SIZE", world),
            master_addr=env.get("MASTER_ADDR"),
            master_port=_int(env, "MASTER_PORT", 29500),
        )
    if "SLURM_PROCID" in env and "SLURM_STEP_ID" in env:
        world = _int(env, "SLURM_STEP_NUM_TASKS", _int(env, "SLURM_NTASKS", 1))
        nodes = _int(env, "SLURM_STEP_NUM_NODES", _int(env, "SLURM_NNODES", 1))
        addr = env.get("MASTER_ADDR") or ("127.0.0.1" if nodes == 1 else None)
        job = _int(env, "SLURM_JOB_ID", 0)
        return Launch(
            launcher="slurm",
            rank=_int(env, "SLURM_PROCID"),
            world_size=world,
            local_rank=_int(env, "SLURM_LOCALID", 0),
            local_world_size=_int(env, "SLURM_NTASKS_PER_NODE", max(1, world // max(nodes, 1))),
            master_addr=addr,
            master_port=_int(env, "MASTER_PORT", 20000 + job % 10000),  # one port per job
        )
    return None


def timeout_seconds(environ: Mapping[str, str] | None = None) -> float:
    env = os.environ if environ is None else environ
    raw = env.get(TIMEOUT_ENV)
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise DepthscopeError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise DepthscopeError(f"{TIMEOUT_ENV} must be positive (got {raw})")
    return value


def digest(value: Any) -> bytes:
    """sha256 of a JSON-able value (keys sorted; other objects by ``str``)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).digest()


# ---------------------------------------------------------------- the API


class Distributed:
    """One process of a data-parallel run; this base class is the single-process case."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes run.json, results, figures and the report."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        """E.g. ``"rank 1 of 4 (gloo)"``, for messages."""
        if not self.is_distributed:
            return "single process"
        return f"rank {self.rank} of {self.world_size} ({self.backend})"

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's contiguous block of ``items`` (rank 0 first, sizes differ by at most 1)."""
        start, stop = block_bounds(len(items), self.world_size, self.rank)
        return list(items[start:stop])

    def shard_prompts(self, costs: Sequence[float]) -> list[int]:
        """Prompt ids this rank handles (sorted): about ``1/world_size`` of the estimated work.

        ``costs`` estimates each prompt's work (its tokens, or what the analyses' ``prompt_cost``
        says). A share is a few contiguous runs dealt so the totals come out even
        (:func:`~depthscope.run.sharding.balanced_shares`); keep one state per run
        (:class:`~depthscope.run.segments.Segments`) so the merge restores prompt order. A run
        may start or end inside a prompt batch: the caller still traces whole batches exactly as
        one process cuts them (so every prompt gets the same numbers) and processes only its own.
        """
        if self.world_size > len(costs):
            raise DepthscopeError(
                f"{self.world_size} processes for only {len(costs)} prompts; start at most "
                f"{len(costs)} processes (torchrun --nproc-per-node) or use more prompts (-n)"
            )
        return balanced_shares(costs, self.world_size)[self.rank]

    def gather_bytes(self, blob: bytes) -> list[bytes] | None:
        """Every rank's ``blob`` on rank 0, in rank order; None on the other ranks."""
        return [bytes(blob)]

    def all_reduce_(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Reduce ``tensor`` in place over all ranks (``"sum"``, ``"max"``, ``"min"``); returns it."""
        if op not in OPS:
            raise ValueError(f"op must be one of {sorted(OPS)}, got {op!r}")
        return tensor

    def barrier(self) -> None:
        """Wait until every rank got here."""

    def check_same(self, what: str, value: Any) -> None:
        """Stop every rank with one clear error unless all ranks pass an equal ``value``.

        Use it with what must agree for the merge to mean anything: settings, model identity, the
        prompts' token ids (e.g. a data file that differs between machines).
        """

    def merge_on_main(self, state: T) -> T | None:
        """Every rank's ``state`` merged on rank 0, None elsewhere (see :func:`merge_on_main`)."""
        return merge_on_main(self, state)

    def close(self) -> None:
        """Leave the process group (no-op for a single process)."""

    def __enter__(self) -> Distributed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SingleProcess(Distributed):
    """The trivial group of one: every collective returns its input."""


class ProcessGroup(Distributed):
    """A member of a ``torch.distributed`` process group (``gloo`` on CPU, ``nccl`` on CUDA)."""

    def __init__(self, launch: Launch, backend: str, timeout_s: float) -> None:
        self.launch = launch
        self.rank = launch.rank
        self.world_size = launch.world_size
        self.local_rank = launch.local_rank
        self.local_world_size = launch.local_world_size
        self.backend = backend
        self.timeout_s = timeout_s
        self.comm_device = (
            torch.device("cuda", torch.cuda.current_device())
            if backend == "nccl"
            else torch.device("cpu")
        )

    # every collective goes through here, so a dead or silent peer becomes one clear line
    def _collective(self, what: str, run):
        try:
            return run()
        except (RuntimeError, dist.DistError) as exc:
            raise DepthscopeError(
                f"{self.describe()}: {what} failed because another process stopped or did not "
                f"answer within {self.timeout_s:.0f} s ({_reason(exc)}); see the other processes' output "
                f"for the cause (raise {TIMEOUT_ENV} if ranks are just slow)"
            ) from exc

    def _to_comm(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.comm_device)

    def _all_gather(self, tensor: torch.Tensor, what: str) -> list[torch.Tensor]:
        local = self._to_comm(tensor)
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        self._collective(what, lambda: dist.all_gather(parts, local))
        return [p.cpu() for p in parts]

    def gather_bytes(self, blob: bytes) -> list[bytes] | None:
        size = torch.tensor([len(blob)], dtype=torch.int64)
        sizes = [int(s) for s in self._all_gather(size, "exchanging state sizes")]
        buffer = torch.zeros(max(max(sizes), 1), dtype=torch.uint8)
        if blob:
            buffer[: len(blob)] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
        buffer = self._to_comm(buffer)
        if self.is_main:
            parts = [torch.empty_like(buffer) for _ in range(self.world_size)]
            self._collective("gathering states", lambda: dist.gather(buffer, parts, dst=0))
            return [part[:n].cpu().numpy().tobytes() for part, n in zip(parts, sizes, strict=True)]
        self._collective("gathering states", lambda: dist.gather(buffer, None, dst=0))
        return None

    def all_reduce_(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        super().all_reduce_(tensor, op)
        local = self._to_comm(tensor)
        self._collective(f"all-reduce ({op})", lambda: dist.all_reduce(local, op=OPS[op]))
        if local is not tensor:
            tensor.copy_(local)
        return tensor

    def barrier(self) -> None:
        if self.backend == "nccl":  # nccl's barrier needs to know the device
            self._collective("barrier", lambda: dist.barrier(device_ids=[self.comm_device.index]))
        else:
            self._collective("barrier", dist.barrier)

    def check_same(self, what: str, value: Any) -> None:
        mine = torch.frombuffer(bytearray(digest(value)), dtype=torch.uint8)
        digests = self._all_gather(mine, f"comparing {what}")
        differ = [r for r, d in enumerate(digests) if not torch.equal(d, digests[0])]
        if differ:
            ranks = ", ".join(map(str, differ))
            raise DepthscopeError(
                f"processes disagree on {what}: rank(s) {ranks} differ from rank 0; every process "
                f"must run the same command on the same model and data"
            )

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def _reason(exc: BaseException) -> str:
    """The gist of a backend error: its first sentence, without the C++ source location."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", first_line(exc, limit=10_000))
    return text.split(". ")[0][:160]


def init_distributed(
    device: str = "cpu",
    *,
    environ: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> Distributed:
    """Join the launched process group, or return a :class:`SingleProcess` when not launched.

    ``device`` picks the backend: ``nccl`` for CUDA devices, ``gloo`` otherwise. Call it before
    loading the model (a launch error costs nothing then) and place the model with
    :func:`depthscope.models.placement.resolve_placement` (``local_rank``, ``local_world_size``).
    """
    launch = detect_launch(environ)
    if launch is None or launch.world_size == 1:
        return SingleProcess()
    if not 0 <= launch.rank < launch.world_size:
        raise DepthscopeError(
            f"rank {launch.rank} is outside a world of {launch.world_size} processes; check the "
            f"launcher's variables"
        )
    if not dist.is_available():
        raise DepthscopeError(
            "this PyTorch build has no torch.distributed; install a standard build to run several processes"
        )
    timeout = timeout_s if timeout_s is not None else timeout_seconds(environ)
    cuda = torch.device(device).type == "cuda"
    backend = "nccl" if cuda else "gloo"
    if cuda:
        if not torch.cuda.is_available():
            raise DepthscopeError(
                "--device cuda but PyTorch sees no CUDA GPU; use --device cpu or a CUDA build of PyTorch"
            )
        if not dist.is_nccl_available():
            raise DepthscopeError("this PyTorch build has no NCCL; use --device cpu (gloo)")
        torch.cuda.set_device(launch.local_rank % torch.cuda.device_count())
    group = ProcessGroup(launch, backend, timeout)
    if launch.launcher == "torchrun":
        init_method = "env://"  # reuses torchrun's store when it offers one
    else:
        if not launch.master_addr:
            raise DepthscopeError(
                "srun over several nodes needs MASTER_ADDR (the first node's address); set "
                'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)'
            )
        init_method = f"tcp://{launch.master_addr}:{launch.master_port}"
    group._collective(
        f"joining {launch.world_size} processes at {init_method}",
        lambda: dist.init_process_group(
            backend,
            init_method=init_method,
            rank=launch.rank,
            world_size=launch.world_size,
            timeout=timedelta(seconds=timeout),
        ),
    )
    return group


def merge_on_main(group: Distributed, state: T) -> T | None:
    """The state of every rank's prompts, merged on rank 0; None elsewhere.

    ``state`` is an analysis state (:mod:`depthscope.engine.state`) of a contiguous block of
    prompts (ranks then merge in rank order), or :class:`~depthscope.run.segments.Segments`
    (every run of every rank is folded in prompt order); either way lists come out in prompt
    order. Sums merge in a different grouping than a single process adds them, so float64 means
    can differ in the last bits (~1e-16 relative); maxima, counts and per-prompt values are exact.
    """

    if not group.is_distributed:
        return unwrap(state)

    blobs = group.gather_bytes(state_to_bytes(state))
    if blobs is None:
        return None
    merged = None
    for blob in blobs:
        merged = merge(merged, state_from_bytes(blob)[0])
    return unwrap(merged)
