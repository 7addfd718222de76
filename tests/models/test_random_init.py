"""``random-init:MODEL``: the model's architecture and tokenizer with fresh, seeded weights, the
reference a trained model's verdict is read against."""

from __future__ import annotations

import pytest
import torch

from depthscope.core.errors import DepthscopeError
from depthscope.models.loading.loader import inspect_model, load_model, random_init_spec


def test_spec_forms():
    assert random_init_spec("random-init:smollm2-135m") == ("smollm2-135m", 0)
    assert random_init_spec("random-init:3:some/model") == ("some/model", 3)
    assert random_init_spec("smollm2-135m") is None
    with pytest.raises(DepthscopeError, match="needs a model"):
        random_init_spec("random-init:")


def test_random_init_has_the_architecture_and_seeded_fresh_weights(tiny_model_dir):
    trained = load_model(str(tiny_model_dir), progress=False)
    fresh = load_model(f"random-init:5:{tiny_model_dir}", progress=False)
    again = load_model(f"random-init:5:{tiny_model_dir}", progress=False)
    other = load_model(f"random-init:6:{tiny_model_dir}", progress=False)
    # the fixture itself was made by the family's initialiser under seed 0: seed 0 rebuilds it
    rebuilt = load_model(f"random-init:{tiny_model_dir}", progress=False)
    for name, tensor in trained.model.state_dict().items():
        assert torch.equal(tensor, rebuilt.model.state_dict()[name]), name
    assert fresh.n_layers == trained.n_layers and fresh.d_model == trained.d_model
    assert fresh.tokenizer.get_vocab() == trained.tokenizer.get_vocab()
    weights = [
        dict(m.model.named_parameters())["model.layers.1.mlp.up_proj.weight"]
        for m in (trained, fresh, again, other)
    ]
    assert not torch.equal(weights[0], weights[1])  # not the checkpoint's weights
    assert torch.equal(weights[1], weights[2])  # seed 5 twice: the same weights
    assert not torch.equal(weights[1], weights[3])
    fingerprints = {m.fingerprint for m in (trained, fresh, other)}
    assert len(fingerprints) == 3 and fresh.fingerprint == again.fingerprint
    assert fresh.identity["init_seed"] == 5 and fresh.name.endswith("-random-init")
    # known before the weights load, like every fingerprint
    assert inspect_model(f"random-init:5:{tiny_model_dir}", progress=False).fingerprint == (
        fresh.fingerprint
    )


def test_random_init_is_not_quantised(tiny_model_dir):
    with pytest.raises(DepthscopeError, match="not quantised"):
        inspect_model(f"random-init:{tiny_model_dir}", quantize="nf4", progress=False)
