"""One process of a multi-process test: ``python distributed_worker.py SCENARIO OUT_DIR``.

The test starts two of these with torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, ...) set, so
each joins a gloo group through :func:`depthscope.run.distributed.init_distributed` exactly as under
``torchrun``. Like the CLI, a :class:`DepthscopeError` is printed as one line and exits with 2.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

torch.set_num_threads(1)

from depthscope.core.errors import DepthscopeError  # noqa: E402
from depthscope.run.distributed import Distributed, init_distributed, merge_on_main  # noqa: E402

ANALYSES = ("contributions", "future-effects", "logit-lens", "erasure", "local-effects")
PROMPT_LENGTHS = [14, 21, 17, 30, 16, 25, 19]  # by tokens, ranks get prompts 0 1 4 5 and 2 3 6 ...
PROMPT_BATCH = 3  # ... so batches [0, 1, 2] and [3, 4, 5] are traced by both ranks and split


def prompt_set():
    from tiny_models import random_ids

    from depthscope.data.prompts import PromptSet

    sequences = random_ids(PROMPT_LENGTHS, seed=11)
    return PromptSet(sequences, answer_lengths=[2] * len(sequences))


def make_analysis(lm, name: str, baseline: list[list[int]], **settings):
    """An analysis (default settings unless given); erasure gets its baseline prompts directly."""
    from depthscope.analyses import RunOptions
    from depthscope.core.registry import CARDS

    cls = CARDS[name]
    options = RunOptions(batch_size=16)
    if hasattr(options, "baseline_sequences"):  # where the baseline is an option
        options.baseline_sequences = baseline
    analysis = cls(lm, cls.Settings(**settings), options)
    if name == "erasure":
        analysis.baseline = baseline  # where prepare() computes it: a preset baseline is kept
    return analysis


def fold(analyses: dict, prompts, ids: list[int], segmented: bool = False) -> dict:
    """Each analysis's state over prompts ``ids`` as the runner folds its share: whole batches
    traced as one process cuts them, only ``ids`` processed, a state per run when ``segmented``."""
    from depthscope.run.feed import Job, feed

    lm = next(iter(analyses.values())).lm
    jobs = {name: Job.fresh(analysis, per_run=segmented) for name, analysis in analyses.items()}
    feed(lm, list(jobs.values()), prompts, prompt_batch=PROMPT_BATCH, order=ids)
    return {name: job.state for name, job in jobs.items()}


def shard_states(lm, group: Distributed, prompts, names=ANALYSES) -> dict:
    """Each analysis's state over this rank's prompts (traced exactly as one process would)."""
    mine = group.shard_prompts([len(s) for s in prompts.sequences])
    analyses = {name: make_analysis(lm, name, prompts.sequences[:3]) for name in names}
    states = fold(analyses, prompts, mine, group.is_distributed)
    return {"analyses": analyses, "states": states, "prompt_ids": mine}


def finished(analyses: dict, states: dict) -> dict:
    return {name: analyses[name].finish(state) for name, state in states.items()}


def unshared(value):
    """A copy whose tensors own their memory (result data may hold one tensor under two keys)."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: unshared(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(unshared(v) for v in value)
    return value


def scenario_analyses(group: Distributed, out: Path) -> None:
    """Merge every analysis's state on rank 0; rank 0 saves the finished data."""
    from tiny_models import tiny_model

    from depthscope.engine.state import state_to_bytes

    lm = tiny_model("llama")
    prompts = prompt_set()
    group.check_same("settings", {"analyses": ANALYSES, "tokens": prompts.sequences})
    shard = shard_states(lm, group, prompts)
    merged = {name: merge_on_main(group, state) for name, state in shard["states"].items()}
    (out / f"ids-{group.rank}.txt").write_text(" ".join(map(str, shard["prompt_ids"])))
    if group.is_main:
        data = finished(shard["analyses"], merged)
        (out / "merged.safetensors").write_bytes(state_to_bytes(unshared(data)))


def scenario_collectives(group: Distributed, out: Path) -> None:
    """gather_bytes (uneven and empty blobs), all-reduce sum/max in float64, barrier."""
    blob = bytes(range(group.rank * 5 % 256)) * (group.rank * 3)  # rank 0 sends b""
    gathered = group.gather_bytes(blob)
    total = torch.tensor([1.5, float(group.rank)], dtype=torch.float64)
    group.all_reduce_(total, "sum")
    peak = torch.tensor([float(group.rank), 5.0 - group.rank])
    group.all_reduce_(peak, "max")
    group.barrier()
    lines = [f"sum {total.tolist()}", f"max {peak.tolist()}"]
    if gathered is not None:
        lines.append("sizes " + " ".join(str(len(b)) for b in gathered))
        expected = [bytes(range(r * 5 % 256)) * (r * 3) for r in range(group.world_size)]
        lines.append(f"equal {gathered == expected}")
    (out / f"collectives-{group.rank}.txt").write_text("\n".join(lines))


def scenario_dies(group: Distributed, out: Path) -> None:
    """Rank 1 dies without a word; rank 0 must stop with a clear error, not wait."""
    if group.rank == 1:
        os._exit(17)
    time.sleep(0.5)
    group.gather_bytes(b"state of rank 0")
    (out / "rank0-finished").write_text("should not happen")


def scenario_stalls(group: Distributed, out: Path) -> None:
    """Rank 1 is alive but never answers; rank 0 must give up after the group's timeout."""
    if group.rank == 1:
        time.sleep(3600)
    group.gather_bytes(b"state of rank 0")


def scenario_mismatch(group: Distributed, out: Path) -> None:
    """Ranks run different settings: every rank stops with the same clear error."""
    group.check_same("settings", {"n_splits": 4 + group.rank})


SCENARIOS = {
    "analyses": scenario_analyses,
    "collectives": scenario_collectives,
    "dies": scenario_dies,
    "stalls": scenario_stalls,
    "mismatch": scenario_mismatch,
}


def main() -> int:
    scenario, out = sys.argv[1], Path(sys.argv[2])
    try:
        with init_distributed("cpu") as group:
            SCENARIOS[scenario](group, out)
    except DepthscopeError as exc:
        print(f"depthscope: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
