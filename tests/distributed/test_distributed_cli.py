"""`python -m depthscope analyze` in 2 gloo processes writes the single-process results."""

from __future__ import annotations

import json
import shutil
import signal
import time

from slow_cli import SLOW_CLI
from test_distributed import launch_command, start_ranks, wait_ranks

from depthscope.cli import main

ARGS = ["--analyses", "contributions,future-effects,logit-lens", "-n", "6", "--no-plots"]
# effects: identical; logit-lens and contributions: float64 means summed in another order
RTOL = {"future-effects": 0.0, "logit-lens": 1e-12, "contributions": 1e-12}


def close(a, b, rtol: float) -> bool:
    if isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rtol) for k in b)
    if isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, rtol) for x, y in zip(a, b, strict=True))
    if isinstance(b, float) and isinstance(a, float):
        return abs(a - b) <= rtol * max(abs(b), 1.0)
    return a == b


def test_analyze_in_two_processes_equals_one(tiny_model_dir, tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    results = launch_command(
        lambda rank: ["-m", "depthscope", "analyze", str(tiny_model_dir), "--out", str(two), *ARGS]
    )
    for rank, (code, _, stderr) in enumerate(results):
        assert code == 0, f"rank {rank}:\n{stderr}"
    assert main(["analyze", str(tiny_model_dir), "--out", str(one), *ARGS]) == 0
    assert json.loads((two / "run.json").read_text())["world_size"] == 2
    for name, rtol in RTOL.items():
        merged = json.loads((two / "results" / f"{name}.json").read_text())["data"]
        single = json.loads((one / "results" / f"{name}.json").read_text())["data"]
        assert close(merged, single, rtol), name
    assert not list((two / "state").glob("*")), "checkpoints of both ranks are removed"


def test_more_processes_than_prompts_is_one_line_on_every_rank(tiny_model_dir, tmp_path):
    results = launch_command(
        lambda rank: (
            ["-m", "depthscope", "analyze", str(tiny_model_dir), "--out", str(tmp_path)]
            + ["--analyses", "contributions", "-n", "1", "--no-plots"]
            + ["--data", "builtin:arith-words"]  # one prompt (a mixture has one per source)
        )
    )
    for code, _, stderr in results:
        assert code == 2 and "2 processes for only 1 prompts" in stderr, stderr


def test_a_stopped_run_resumes_on_as_many_processes_and_recomputes_on_more(
    tiny_model_dir, tmp_path
):
    """SIGTERM both ranks mid-run: each saves its share. A rerun on 2 processes resumes it; on 3
    the shares differ, so the ranks recompute (rank 0 says so). Both equal one process's results."""
    stopped = tmp_path / "stopped"
    procs = start_ranks(
        lambda rank: (
            ["-c", SLOW_CLI, "0.05", "analyze", str(tiny_model_dir), "--out", str(stopped)] + ARGS
        )
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        if all(list((stopped / "state").glob(f"*.rank{r}.json")) for r in range(2)):
            break
        time.sleep(0.05)
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for code, _, stderr in wait_ranks(procs):
        assert code in (130, 143) and "rerun the same command to resume" in stderr, stderr
    again = tmp_path / "again"
    shutil.copytree(stopped, again)
    assert main(["analyze", str(tiny_model_dir), "--out", str(tmp_path / "one"), *ARGS]) == 0

    def rerun(out, world: int) -> list:
        return launch_command(
            lambda rank: (
                ["-m", "depthscope", "analyze", str(tiny_model_dir), "--out", str(out)] + ARGS
            ),
            world=world,
        )

    resumed = rerun(stopped, 2)
    assert [code for code, _, _ in resumed] == [0, 0], resumed
    said = resumed[0][1] + resumed[0][2]  # rank 0 reports; the others stay quiet
    assert "resumed after" in said and "another share" not in said, said
    recomputed = rerun(again, 3)
    assert [code for code, _, _ in recomputed] == [0, 0, 0], recomputed
    for out in (stopped, again):
        for name, rtol in RTOL.items():
            merged = json.loads((out / "results" / f"{name}.json").read_text())["data"]
            single = json.loads((tmp_path / "one" / "results" / f"{name}.json").read_text())
            assert close(merged, single["data"], rtol), (out.name, name)
    said = recomputed[0][1] + recomputed[0][2]
    assert "another share" in said and "resumed after" not in said, said
