"""--device and --device-map are checked before loading: one clear line for every bad value."""

from __future__ import annotations

import json

import pytest
import torch

from depthscope.core.errors import DepthscopeError
from depthscope.models.placement import (
    gpus_of_process,
    parse_device_map,
    resolve_placement,
)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda gpu: (10 * 2**30 + gpu, 80 * 2**30))


def test_cuda_without_a_gpu_is_one_line(no_gpu):
    with pytest.raises(
        DepthscopeError, match=r"--device cuda asks for a GPU but .*; or use --device cpu"
    ):
        resolve_placement("cuda")
    with pytest.raises(DepthscopeError, match="asks for a GPU"):
        resolve_placement("cuda:1")


def test_unknown_or_missing_devices(two_gpus):
    with pytest.raises(DepthscopeError, match="unknown device 'gpu'"):
        resolve_placement("gpu")
    with pytest.raises(DepthscopeError, match=r"has 2 CUDA GPU\(s\) \(cuda:0..cuda:1\)"):
        resolve_placement("cuda:2")
    assert resolve_placement("cuda:1").device == "cuda:1"
    assert resolve_placement("cpu").device == "cpu"


def test_device_map_forms(tmp_path, no_gpu):
    assert parse_device_map(None) is None
    assert parse_device_map("auto") == "auto" and parse_device_map("balanced") == "balanced"
    mapping = {"model.embed_tokens": "cpu", "model.layers.0": "disk", "lm_head": "cpu"}
    assert parse_device_map(json.dumps(mapping)) == mapping
    path = tmp_path / "map.json"
    path.write_text(json.dumps(mapping))
    assert parse_device_map(str(path)) == mapping
    placement = resolve_placement("cpu", str(path))
    assert placement.device_map == mapping and placement.offloads_to_disk


def test_device_map_naming_a_missing_device(two_gpus):
    with pytest.raises(DepthscopeError, match=r"missing device for 'model.layers.3': .*has 2 CUDA"):
        parse_device_map('{"model.layers.0": 0, "model.layers.3": 5}')
    with pytest.raises(DepthscopeError, match="for 'lm_head': unknown device 'tpu'"):
        parse_device_map('{"lm_head": "tpu"}')
    with pytest.raises(DepthscopeError, match=r"'lm_head' -> \[1\] is not a device"):
        parse_device_map('{"lm_head": [1]}')
    with pytest.raises(DepthscopeError, match="not valid JSON"):
        parse_device_map('{"lm_head": 0,}')
    with pytest.raises(DepthscopeError, match="non-empty object"):
        parse_device_map("{}")
    with pytest.raises(DepthscopeError, match="is not one of auto, balanced"):
        parse_device_map("everywhere")


def test_device_map_gpu_without_gpus(no_gpu):
    with pytest.raises(
        DepthscopeError, match="missing device for 'model.layers.0'.*asks for a GPU"
    ):
        parse_device_map('{"model.layers.0": 0, "lm_head": "cpu"}')


def test_processes_on_one_machine_get_their_own_gpus(two_gpus):
    assert resolve_placement("cuda", local_rank=1, local_world_size=2).device == "cuda:1"
    with pytest.raises(DepthscopeError, match="only 2 GPU"):
        resolve_placement("cuda", local_rank=2, local_world_size=3)
    placement = resolve_placement("cpu", "auto", local_rank=1, local_world_size=2)
    assert placement.device == "cuda:1" and placement.device_map == "auto"
    assert placement.max_memory[0] == 0 and placement.max_memory[1] == 10 * 2**30 + 1
    with pytest.raises(DepthscopeError, match="explicit --device-map would put every process"):
        resolve_placement("cpu", '{"lm_head": 0}', local_rank=0, local_world_size=2)
    assert gpus_of_process(1, 2, 8) == [4, 5, 6, 7]
    with pytest.raises(DepthscopeError, match="start at most 2 processes per machine"):
        gpus_of_process(0, 3, 2)
