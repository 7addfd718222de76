"""`depthscope map` over 2 gloo processes (python -m depthscope, torchrun's variables) = 1 process."""

from __future__ import annotations

import argparse
import json

import torch
from test_distributed import launch_command

from depthscope.cli.maps import add_parser

ARGS = ["--tokens", "700", "--val-tokens", "120", "--ridge", "0.01", "--batch-size", "1"]
ARGS += ["--no-plots"]
PER_RANK = {"seconds", "statistics_tokens_per_s"}  # timings of the process that wrote the file


def single_process(model_dir, out) -> dict:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["map", str(model_dir), str(model_dir), "--out", str(out), *ARGS])
    assert args.handler(args) == 0
    return json.loads((out / "results" / "linear-map.json").read_text())


def test_two_processes_fit_the_same_maps(tiny_model_dir, tmp_path):
    outs = [tmp_path / f"rank{r}" for r in range(2)]
    results = launch_command(
        lambda rank: (
            ["-m", "depthscope", "map", str(tiny_model_dir), str(tiny_model_dir)]
            + ["--out", str(outs[rank]), *ARGS]
        )
    )
    for rank, (code, _, stderr) in enumerate(results):
        assert code == 0, f"rank {rank}:\n{stderr}"
    assert not outs[1].exists()  # only rank 0 writes
    merged = json.loads((outs[0] / "results" / "linear-map.json").read_text())
    assert json.loads((outs[0] / "run.json").read_text())["processes"] == 2
    single = single_process(tiny_model_dir, tmp_path / "single")
    assert merged["data"]["n_train_texts"] >= 2  # both ranks had texts to fold in
    for key, value in single["data"].items():
        if key in PER_RANK:
            continue
        if key in ("rel_err", "r2", "rel_err_mean_baseline", "ridge_lambda"):
            # float64 sums added in another order, then solved: equal to ~1e-12 relative
            got, want = torch.tensor(merged["data"][key]), torch.tensor(value)
            assert torch.allclose(got, want, rtol=1e-10, atol=1e-12), key
        else:
            assert merged["data"][key] == value, key
