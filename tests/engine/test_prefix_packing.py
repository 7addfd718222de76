"""Packing several split points of one prompt into one sequence changes nothing but the cost."""

from __future__ import annotations

import pytest
import torch
from tiny_models import FAMILIES, random_ids, tiny_model

import depthscope as ds
from depthscope.engine.batch import pad_batch
from depthscope.engine.prefix_packing import pack_prompt
from depthscope.engine.replay import replay
from depthscope.engine.trace import trace


@pytest.mark.parametrize("family", FAMILIES)
def test_packed_clean_replay_reproduces_every_segment(family):
    lm = tiny_model(family)
    ids = random_ids([21, 13], seed=2)
    traced = trace(lm.adapter, pad_batch(ids, 0))
    length = len(ids[0])
    packed = pack_prompt(lm.adapter, traced, 0, length, [16, 8, 3])
    assert packed is not None  # every supported family's layer arguments are understood
    final = replay(lm.adapter, packed.trace, 0, [0])[0]
    expected = traced.resid[-1, 0, packed.positions]
    assert torch.allclose(final, expected, atol=1e-5)
    assert packed.positions.numel() == length + (length - 16) + (length - 8) + (length - 3)


def test_unknown_layer_arguments_fall_back(monkeypatch):
    lm = tiny_model("llama")
    traced = trace(lm.adapter, pad_batch(random_ids([20]), 0))
    traced.calls[1].kwargs["mystery"] = {"table": torch.zeros(3)}
    assert pack_prompt(lm.adapter, traced, 0, 20, [8]) is None


@pytest.mark.parametrize("analysis", ["future-effects", "local-effects"])
def test_packed_and_unpacked_sweeps_agree(analysis, monkeypatch):
    lm = tiny_model("llama")
    prompts = random_ids([30, 26], seed=5)
    settings = {"parts": ("layer", "attention")} if analysis == "future-effects" else {}
    packed = ds.analyze(lm, analysis, prompts, **settings).data
    monkeypatch.setattr("depthscope.engine.sweep.pack_prompt", lambda *a, **k: None)
    unpacked = ds.analyze(lm, analysis, prompts, **settings).data
    keys = (
        ["effect", "output_change", "effect_position_mean", "output_change_position_mean"]
        if analysis == "future-effects"
        else ["current", "future"]
    )
    for key in keys:
        assert torch.allclose(
            torch.as_tensor(packed[key]), torch.as_tensor(unpacked[key]), atol=1e-5
        )
