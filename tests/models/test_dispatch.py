"""A model dispatched by accelerate (weights offloaded, moved in by hooks) gives the plain model's results.

On a machine without GPUs every execution device is the CPU, but the weights of offloaded modules
really live on disk (or in a CPU state dict) and sit on the ``meta`` device between calls, exactly
as with a GPU execution device; trace and replay must go through accelerate's hooks and find each
module's execution device instead of reading its (meta) parameters.
"""

from __future__ import annotations

import pytest
import torch
from accelerate import cpu_offload, dispatch_model
from tiny_models import random_ids, tiny_model

import depthscope as ds
from depthscope.core.errors import DepthscopeError
from depthscope.engine.batch import pad_batch
from depthscope.engine.replay import replay
from depthscope.engine.trace import trace
from depthscope.models.adapters import BoundAdapter
from depthscope.models.devices import execution_device, home_device, to_device
from depthscope.models.loading.loader import LoadedModel

PROMPTS = [24, 17, 30]


def disk_offloaded(tmp_path) -> LoadedModel:
    """Tiny Llama with the embedding, layers 1 and 3, the final norm and the head on disk."""
    lm = tiny_model("llama")
    device_map = {
        "model.embed_tokens": "disk",
        "model.rotary_emb": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "disk",
        "model.layers.2": "cpu",
        "model.layers.3": "disk",
        "model.norm": "disk",
        "lm_head": "disk",
    }
    model = dispatch_model(lm.model, device_map, main_device="cpu", offload_dir=str(tmp_path))
    return LoadedModel(model, None, BoundAdapter(model), {"name": "tiny-llama-disk"})


def cpu_offloaded(tmp_path) -> LoadedModel:
    """Tiny Llama whose every weight is kept in a CPU state dict and moved in per module call."""
    lm = tiny_model("llama")
    model = cpu_offload(lm.model, execution_device="cpu")
    return LoadedModel(model, None, BoundAdapter(model), {"name": "tiny-llama-cpu-offload"})


OFFLOADS = {"disk": disk_offloaded, "cpu-offload": cpu_offloaded}


@pytest.fixture(params=list(OFFLOADS))
def offloaded(request, tmp_path) -> LoadedModel:
    return OFFLOADS[request.param](tmp_path)


def test_offloaded_weights_really_live_off_the_module(offloaded):
    layer = offloaded.adapter.layers[1]
    assert {p.device.type for p in layer.parameters()} == {"meta"}  # moved in only during a call
    assert execution_device(layer) == torch.device("cpu")
    assert home_device(offloaded.model) == torch.device("cpu")


def test_trace_and_replay_equal_the_plain_model(offloaded):
    plain = tiny_model("llama")
    batch = pad_batch(random_ids(PROMPTS, seed=4), 0)
    expected = trace(plain.adapter, batch, logits=True, keep_mlp_in=True)
    got = trace(offloaded.adapter, batch, logits=True, keep_mlp_in=True)
    for name in ("resid", "attn", "mlp", "mlp_in", "logits"):
        assert torch.equal(getattr(got, name), getattr(expected, name)), name
    starts = list(range(plain.n_layers + 1))
    for row in range(len(PROMPTS)):
        clean = replay(plain.adapter, expected, row, starts)
        assert torch.equal(replay(offloaded.adapter, got, row, starts), clean)
    # the head runs through the offloaded final norm and unembedding too
    final = got.resid[-1, 0]
    assert torch.equal(offloaded.adapter.logits(final), plain.adapter.logits(final))


def test_future_effects_equal_the_plain_model(offloaded):
    prompts = random_ids(PROMPTS, seed=6)
    parts = ("layer", "attention")
    expected = ds.analyze(tiny_model("llama"), "future-effects", prompts, parts=parts).data
    got = ds.analyze(offloaded, "future-effects", prompts, parts=parts).data
    for key in ("effect", "output_change"):
        assert torch.equal(torch.as_tensor(got[key]), torch.as_tensor(expected[key])), key
    assert torch.equal(
        torch.as_tensor(got["attention"]["effect"]),
        torch.as_tensor(expected["attention"]["effect"]),
    )
    assert torch.as_tensor(expected["effect"]).abs().sum() > 0  # a real comparison


def test_a_module_with_meta_weights_and_no_hook_is_a_clear_error():
    lm = tiny_model("llama")
    layer = lm.adapter.layers[0].to("meta")
    with pytest.raises(DepthscopeError, match="offloaded .* without an accelerate hook"):
        execution_device(layer)
    assert execution_device(layer, fallback="cpu") == torch.device("cpu")


def test_to_device_keeps_tensors_already_in_place():
    t = torch.ones(2)
    nested = (t, [t, {"mask": t, "flag": True}], None)
    moved = to_device(nested, torch.device("cpu"))
    assert moved[0] is t and moved[1][1]["mask"] is t and moved[1][1]["flag"] is True
    assert moved[2] is None
