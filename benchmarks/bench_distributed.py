"""Data parallelism: 1 process vs 2 processes (one thread each) on the prompt-parallel analyses.

    python benchmarks/bench_distributed.py [--model smollm2-135m] [-n 10] [--analyses ...]
    python benchmarks/bench_distributed.py --quick      # tiny random model, seconds

Both runs happen in one invocation, one after the other, on the same prompts (``--repeats 2``:
1, 2, 2, 1 processes, so a machine whose speed drifts favours neither; the speed-up comes from the
summed times). Each is started like ``torchrun`` starts processes (RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT on 127.0.0.1, gloo), every process uses one thread, and each computes its share of the
prompts as the runner cuts it (a few runs of prompts with equal estimated work; whole batches traced
as one process cuts them); the states are merged on rank 0 through ``torch.distributed``. Timed:
from the moment every process has its model loaded to the merged states on rank 0. The merged
results are compared with the single-process ones. Results are printed and written to
benchmarks/results/distributed.json (``--quick``: distributed-quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_ANALYSES = "contributions,current-effects,future-effects,logit-lens,local-effects"
PROMPT_BATCH = 4  # the runner's prompts per clean trace


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- one process of a run


def load(args):
    """Model and prompts: the real model and built-in prompts, or (--quick) a tiny random Llama."""
    from depthscope.data.prompts import PromptSet

    if args.quick:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_models import random_ids, tiny_model

        lengths = [40, 31, 52, 28, 45, 36, 49, 33][: args.n]
        return tiny_model("llama"), PromptSet(random_ids(lengths, seed=3))
    from depthscope.data.sources import load_examples
    from depthscope.models.loading.loader import load_model

    lm = load_model(args.model, progress=False)
    return lm, PromptSet.from_examples(lm.tokenizer, load_examples("builtin:arith-words", args.n))


def worker(args) -> int:
    torch.set_num_threads(1)
    from depthscope.analyses import RunOptions
    from depthscope.core.registry import CARDS
    from depthscope.engine.state import state_to_bytes
    from depthscope.run.distributed import init_distributed, merge_on_main
    from depthscope.run.feed import Job, feed, work_estimates

    out = Path(args.out)
    with init_distributed("cpu") as group:
        lm, prompts = load(args)
        names = args.analyses.split(",")
        analyses = {n: CARDS[n](lm, CARDS[n].Settings(), RunOptions(batch_size=64)) for n in names}
        # the runner's share: a few runs of prompts with equal estimated work, a state per run
        estimates = work_estimates(list(analyses.values()), prompts)
        mine = group.shard_prompts(estimates)
        group.barrier()
        started = time.perf_counter()
        jobs = {n: Job.fresh(a, per_run=group.is_distributed) for n, a in analyses.items()}
        per_prompt: dict[int, float] = {}

        def timed(job, ids, seconds: float) -> None:
            for i in ids:  # a batch-wise analysis's seconds are shared by its prompts
                per_prompt[i] = per_prompt.get(i, 0.0) + seconds / len(ids)

        feed(
            lm,
            list(jobs.values()),
            prompts,
            prompt_batch=PROMPT_BATCH,
            order=mine,
            after_prompts=timed,
        )
        computed = time.perf_counter() - started
        merged = {n: merge_on_main(group, job.state) for n, job in jobs.items()}
        seconds = time.perf_counter() - started
        mine_doc = {
            "rank": group.rank,
            "prompts": mine,
            "tokens": sum(len(prompts.sequences[i]) for i in mine),
            "estimated_work": sum(estimates[i] for i in mine) / sum(estimates),
            "compute_s": computed,
            "prompt_s": {str(i): round(per_prompt.get(i, 0.0), 3) for i in mine},
            "prompt_estimates": {str(i): estimates[i] for i in mine},
        }
        ranks = group.gather_bytes(json.dumps(mine_doc).encode())
        if group.is_main:
            data = {n: analyses[n].finish(s) for n, s in merged.items()}
            (out / "data.safetensors").write_bytes(state_to_bytes(_unshared(data)))
            doc = {
                "seconds": seconds,
                "ranks": [json.loads(r) for r in ranks],
                "n_prompts": len(prompts),
                "n_tokens": prompts.n_tokens,
                "model": lm.name,
            }
            (out / "timing.json").write_text(json.dumps(doc))
    return 0


def _unshared(value):
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _unshared(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_unshared(v) for v in value)
    return value


# ---------------------------------------------------------------- the comparison


def launch(world: int, args, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [sys.executable, __file__, "--worker", "--out", str(out), "-n", str(args.n)]
    argv += ["--model", args.model, "--analyses", args.analyses] + (
        ["--quick"] if args.quick else []
    )
    procs = []
    for rank in range(world):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        if world > 1:
            env |= {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)}
            env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen(argv, env=env))
    codes = [proc.wait() for proc in procs]
    if any(codes):
        raise SystemExit(f"{world}-process run failed (exit codes {codes})")
    return json.loads((out / "timing.json").read_text())


def largest_difference(a, b) -> tuple[float, bool]:
    """Largest relative difference between two result trees, and whether they are identical."""
    if isinstance(a, torch.Tensor):
        if torch.equal(a, b):
            return 0.0, True
        scale = b.double().abs().clamp_min(1e-30)
        return float(((a.double() - b.double()).abs() / scale).max()), False
    if isinstance(a, dict):
        parts = [largest_difference(a[k], b[k]) for k in a]
    elif isinstance(a, list | tuple):
        parts = [largest_difference(x, y) for x, y in zip(a, b, strict=True)]
    else:
        return (0.0, True) if a == b else (float("inf"), False)
    return max((p[0] for p in parts), default=0.0), all(p[1] for p in parts)


def run_order(repeats: int) -> list[int]:
    """World sizes in the order they run: 1, 2, then 2, 1, ... (ABBA), so a machine that speeds up
    or slows down during the benchmark favours neither."""
    return [w for r in range(repeats) for w in ((1, 2) if r % 2 == 0 else (2, 1))]


def compare(args) -> dict:
    from depthscope.engine.state import state_from_bytes

    runs: dict[int, list[dict]] = {1: [], 2: []}
    data = {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, world in enumerate(run_order(args.repeats)):
            folder = Path(tmp) / f"run{index}-world{world}"
            runs[world].append(launch(world, args, folder))
            print(
                f"  {world} process{'es' if world > 1 else ''}: {runs[world][-1]['seconds']:.1f} s"
            )
            blob = (folder / "data.safetensors").read_bytes()
            data.setdefault(world, state_from_bytes(blob)[0])
    per_analysis = {name: largest_difference(data[2][name], data[1][name]) for name in data[1]}
    # how well the estimated work predicted each prompt's seconds (1-process runs, summed)
    seconds = {
        i: sum(r["ranks"][0]["prompt_s"][i] for r in runs[1])
        for i in runs[1][0]["ranks"][0]["prompt_s"]
    }
    estimates = runs[1][0]["ranks"][0]["prompt_estimates"]
    scale = sum(seconds.values()) / sum(estimates.values())
    fit = {i: round(seconds[i] / (estimates[i] * scale), 3) for i in seconds}
    one = sum(r["seconds"] for r in runs[1])
    two = sum(r["seconds"] for r in runs[2])
    last = runs[2][-1]["ranks"]
    return {
        "model": runs[1][0]["model"],
        "analyses": args.analyses.split(","),
        "n_prompts": runs[1][0]["n_prompts"],
        "n_tokens": runs[1][0]["n_tokens"],
        "prompt_batch": PROMPT_BATCH,
        "threads_per_process": 1,
        "run_order": run_order(args.repeats),
        "seconds_1_process": round(one / len(runs[1]), 3),
        "seconds_2_processes": round(two / len(runs[2]), 3),
        "speedup": round(one / two, 3),
        "runs_1_process_s": [round(r["seconds"], 3) for r in runs[1]],
        "runs_2_processes_s": [round(r["seconds"], 3) for r in runs[2]],
        "speedup_per_repeat": [
            round(a["seconds"] / b["seconds"], 3) for a, b in zip(runs[1], runs[2], strict=True)
        ],
        "prompt_seconds_over_estimate": fit,  # 1.0: a prompt took its estimated share of time
        "ranks_2_processes": [
            {
                **r,
                "compute_s": round(r["compute_s"], 3),
                "estimated_work": round(r["estimated_work"], 4),
            }
            for r in last
        ],
        "results_identical": {name: same for name, (_, same) in per_analysis.items()},
        "max_relative_difference": {name: diff for name, (diff, _) in per_analysis.items()},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("-n", type=int, default=10, help="prompts (default 10)")
    parser.add_argument("--analyses", default=DEFAULT_ANALYSES)
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs of each (order 1,2 then 2,1, ...: ABBA for 2); speed-up from the summed times",
    )
    parser.add_argument("--quick", action="store_true", help="tiny random model, a few prompts")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.n = min(args.n, 8)
    if args.worker:
        return worker(args)
    doc = compare(args)
    print(
        f"{doc['model']}: {doc['n_prompts']} prompts, {doc['n_tokens']} tokens, "
        f"{', '.join(doc['analyses'])}"
    )
    print(f"1 process : {doc['seconds_1_process']:8.2f} s (mean of {args.repeats})")
    print(f"2 processes: {doc['seconds_2_processes']:8.2f} s  -> {doc['speedup']:.2f}x")
    for rank in doc["ranks_2_processes"]:
        print(
            f"  rank {rank['rank']}: prompts {rank['prompts']}, {rank['tokens']} tokens, "
            f"{rank['estimated_work']:.1%} of the estimated work, {rank['compute_s']:.2f} s computing"
        )
    for name, same in doc["results_identical"].items():
        diff = doc["max_relative_difference"][name]
        print(f"  {name:<16} {'identical' if same else f'max relative difference {diff:.1e}'}")
    path = RESULTS / ("distributed-quick.json" if args.quick else "distributed.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"written to {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
