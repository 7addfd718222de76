"""Data parallelism: 2 gloo processes on 127.0.0.1 merge to the single-process result; failures stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from distributed_worker import PROMPT_BATCH, finished, prompt_set, shard_states
from tiny_models import tiny_model

from depthscope.core.errors import DepthscopeError
from depthscope.engine.state import state_from_bytes
from depthscope.run.distributed import SingleProcess, detect_launch, init_distributed, merge_on_main
from depthscope.run.sharding import (
    balanced_blocks,
    balanced_shares,
    batches_for,
    block_bounds,
    contiguous_runs,
)

WORKER = Path(__file__).resolve().parents[1] / "distributed_worker.py"
TIMEOUT_S = 120  # the whole 2-process run; a hang fails the test instead of blocking CI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_ranks(
    argv: Callable[[int], list[str]], world: int = 2, group_timeout: float = 60
) -> list[subprocess.Popen]:
    """Start ``python ARGV(rank)`` for each rank with torchrun's variables set (free port on
    127.0.0.1), output piped."""
    port = free_port()
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "DEPTHSCOPE_DIST_TIMEOUT": str(group_timeout),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, *argv(rank)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def wait_ranks(procs: list[subprocess.Popen], only_main: bool = False) -> list:
    """(exit code, stdout, stderr) of each rank (of rank 0 only with ``only_main``); every rank
    still running afterwards, or after a timeout, is killed."""
    results = []
    try:
        for proc in procs[:1] if only_main else procs:
            stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
            results.append((proc.returncode, stdout, stderr))
    finally:
        for proc in procs:  # only our own children, by handle
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def launch_command(
    argv: Callable[[int], list[str]],
    world: int = 2,
    group_timeout: float = 60,
    only_main: bool = False,
) -> list:
    """Run ``python ARGV(rank)`` for each rank with torchrun's variables set (free port on
    127.0.0.1); return (exit code, stdout, stderr) of each.

    ``only_main``: wait for rank 0 only and kill the others (a rank that hangs on purpose).
    """
    return wait_ranks(start_ranks(argv, world, group_timeout), only_main)


def launch(scenario: str, out: Path, **kwargs) -> list:
    """Run a scenario of distributed_worker.py in every rank."""
    return launch_command(lambda rank: [str(WORKER), scenario, str(out)], **kwargs)


# Means are float64 sums merged in another order than one process adds them: equal to ~1e-16
# relative (contributions sums a batch's tokens in float64 too, so a batch split between ranks
# changes only the order of float64 additions).
RTOL: dict[str, float] = {}


def assert_same_data(merged, single, path: str = "", rtol: float = 1e-12) -> None:
    """Equal data; means may differ by ``rtol`` (see RTOL), everything else exactly."""
    if isinstance(single, torch.Tensor):
        assert merged.shape == single.shape, path
        if not torch.equal(merged, single):
            assert torch.allclose(merged, single, rtol=rtol, atol=1e-15), path
    elif isinstance(single, dict):
        assert set(merged) == set(single), path
        for key in single:
            assert_same_data(merged[key], single[key], f"{path}.{key}", rtol)
    elif isinstance(single, list | tuple):
        assert len(merged) == len(single), path
        for i, (a, b) in enumerate(zip(merged, single, strict=True)):
            assert_same_data(a, b, f"{path}[{i}]", rtol)
    else:
        assert merged == single, path


def test_two_gloo_processes_equal_one_process(tmp_path):
    results = launch("analyses", tmp_path)
    for rank, (code, _, stderr) in enumerate(results):
        assert code == 0, f"rank {rank} failed:\n{stderr}"
    ids = [(tmp_path / f"ids-{r}.txt").read_text().split() for r in range(2)]
    # balanced runs: batches [0, 1, 2] and [3, 4, 5] are split between the ranks
    assert ids == [["3", "4", "5"], ["0", "1", "2", "6"]]
    merged, _ = state_from_bytes((tmp_path / "merged.safetensors").read_bytes())

    lm = tiny_model("llama")
    shard = shard_states(lm, SingleProcess(), prompt_set())
    single = finished(shard["analyses"], shard["states"])
    assert set(merged) == set(single)
    for name in single:
        assert_same_data(merged[name], single[name], name, RTOL.get(name, 1e-12))
    # the per-prompt parts came back in prompt order, and maxima are exactly equal
    effects = merged["future-effects"]
    assert [e["prompt"] for e in effects["per_prompt"]] == list(range(7))
    assert torch.equal(effects["effect_max"], single["future-effects"]["effect_max"])
    assert merged["erasure"]["prompts"] == list(range(7))


def test_collectives_move_bytes_and_reduce_under_torchrun(tmp_path):
    """Started by torchrun itself (its agent's store, its variables), not by this test."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
    done = subprocess.run(
        [*torchrun, "2", str(WORKER), "collectives", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={**os.environ, "DEPTHSCOPE_DIST_TIMEOUT": "60"},
    )
    assert done.returncode == 0, done.stderr
    for rank in range(2):
        lines = (tmp_path / f"collectives-{rank}.txt").read_text().splitlines()
        assert lines[:2] == ["sum [3.0, 1.0]", "max [1.0, 5.0]"]
    main = (tmp_path / "collectives-0.txt").read_text().splitlines()
    assert main[2:] == ["sizes 0 15", "equal True"]


def test_a_dead_rank_stops_the_other_with_a_clear_error(tmp_path):
    (code0, _, err0), (code1, _, _) = launch("dies", tmp_path, group_timeout=30)
    assert code1 == 17
    assert code0 == 2, err0
    assert "depthscope: error:" in err0 and "another process stopped" in err0
    assert "Traceback" not in err0
    assert not (tmp_path / "rank0-finished").exists()


def test_a_silent_rank_times_out_with_a_clear_error(tmp_path):
    started = time.monotonic()
    [(code, _, err)] = launch("stalls", tmp_path, group_timeout=4, only_main=True)
    assert code == 2, err
    assert "did not answer within 4 s" in err and "Traceback" not in err
    assert time.monotonic() - started < 60


def test_mismatched_settings_stop_every_rank(tmp_path):
    results = launch("mismatch", tmp_path)
    for code, _, stderr in results:
        assert code == 2, stderr
        assert "processes disagree on settings: rank(s) 1 differ from rank 0" in stderr


# ---------------------------------------------------------------- single process and launch


class FakeGroup(SingleProcess):
    def __init__(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size


def test_shares_are_balanced_runs_of_prompts():
    lengths = [14, 21, 17, 30, 16, 25, 19]
    # one block each would give 82 and 60 tokens; runs dealt and evened out give 71 and 71
    assert [FakeGroup(r, 2).shard_prompts(lengths) for r in range(2)] == [[3, 4, 5], [0, 1, 2, 6]]
    assert contiguous_runs([0, 1, 2, 6]) == [(0, 3), (6, 7)]
    shards = [FakeGroup(r, 3).shard_prompts([10] * 10) for r in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(10))
    assert sorted(len(shard) for shard in shards) == [3, 3, 4]
    # one long prompt: it gets a rank to itself, every rank keeps at least one prompt
    assert balanced_shares([1, 1, 100, 1], 3) == [[2], [0, 3], [1]]
    assert balanced_shares([5, 1, 1, 1], 4) == [[0], [1], [2], [3]]
    costs = [(i * 37) % 101 + 5 for i in range(200)]
    for parts in (2, 3, 8):
        shares = balanced_shares(costs, parts)
        assert sorted(i for share in shares for i in share) == list(range(200))
        loads = [sum(costs[i] for i in share) for share in shares]
        assert max(loads) - min(loads) <= max(costs), (parts, loads)
        assert all(len(contiguous_runs(share)) <= 4 * parts for share in shares)
    assert balanced_blocks([1, 1, 100, 1], 3) == [(0, 2), (2, 3), (3, 4)]
    assert [FakeGroup(r, 3).shard(list("abcdefg")) for r in range(3)] == [
        list("abc"),
        list("de"),
        list("fg"),
    ]
    assert block_bounds(5, 2, 1) == (3, 5)


def test_whole_batches_are_traced_and_only_own_prompts_processed():
    assert batches_for([4, 5, 6], 7, PROMPT_BATCH) == [([3, 4, 5], [4, 5]), ([6], [6])]
    assert batches_for([0, 1, 2, 3], 7, PROMPT_BATCH) == [([0, 1, 2], [0, 1, 2]), ([3, 4, 5], [3])]


def test_more_processes_than_prompts_is_one_clear_error():
    with pytest.raises(DepthscopeError, match=r"3 processes for only 2 prompts; start at most 2"):
        FakeGroup(0, 3).shard_prompts([5, 9])


def test_single_process_api_is_the_identity():
    group = init_distributed("cpu", environ={})
    assert isinstance(group, SingleProcess) and group.is_main and not group.is_distributed
    assert group.gather_bytes(b"abc") == [b"abc"]
    t = torch.ones(2)
    assert group.all_reduce_(t, "max") is t
    group.check_same("settings", {"x": 1})
    group.barrier()
    state = {"n": 1}
    assert merge_on_main(group, state) is state
    assert group.shard_prompts([4, 8, 2]) == [0, 1, 2]


def test_launchers_are_detected_from_their_variables():
    torchrun = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    torchrun |= {"MASTER_ADDR": "node0", "MASTER_PORT": "29400"}
    launch_ = detect_launch(torchrun)
    assert (launch_.launcher, launch_.rank, launch_.world_size, launch_.local_rank) == (
        "torchrun",
        3,
        8,
        1,
    )
    assert (launch_.master_addr, launch_.master_port) == ("node0", 29400)
    slurm = {"SLURM_PROCID": "5", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "8"}
    slurm |= {"SLURM_LOCALID": "1", "SLURM_STEP_NUM_NODES": "2", "SLURM_JOB_ID": "123456"}
    launch_ = detect_launch(slurm)
    assert (launch_.launcher, launch_.rank, launch_.world_size, launch_.local_rank) == (
        "slurm",
        5,
        8,
        1,
    )
    assert launch_.master_addr is None and launch_.master_port == 23456
    assert detect_launch({**slurm, "SLURM_STEP_NUM_NODES": "1"}).master_addr == "127.0.0.1"
    # the batch script itself (no srun step) and an explicit opt-out are single processes
    assert detect_launch({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}) is None
    assert detect_launch({**torchrun, "DEPTHSCOPE_DISTRIBUTED": "0"}) is None
    with pytest.raises(DepthscopeError, match="MASTER_ADDR"):
        init_distributed("cpu", environ=slurm)


def test_bad_launcher_values_are_clear_errors():
    with pytest.raises(DepthscopeError, match="WORLD_SIZE='two' is not an integer"):
        detect_launch({"RANK": "0", "WORLD_SIZE": "two"})
    with pytest.raises(DepthscopeError, match="rank 4 is outside a world of 2"):
        init_distributed("cpu", environ={"RANK": "4", "WORLD_SIZE": "2"})
    with pytest.raises(DepthscopeError, match="DEPTHSCOPE_DIST_TIMEOUT"):
        init_distributed(
            "cpu", environ={"RANK": "0", "WORLD_SIZE": "2", "DEPTHSCOPE_DIST_TIMEOUT": "x"}
        )
