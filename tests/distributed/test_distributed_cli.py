"""`python -m depthscope analyze` in 2 gloo processes writes the single-process results."""

from __future__ import annotations

import json

from test_distributed import launch_command

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
        )
    )
    for code, _, stderr in results:
        assert code == 2 and "2 processes for only 1 prompts" in stderr, stderr
