"""Weights that cannot fit are refused from the config, before loading, naming what would fit."""

from __future__ import annotations

import pytest
import torch
import transformers as tf

from depthscope.core.errors import DepthscopeError
from depthscope.models.loading import fit, loader

# Llama 3.1 8B's shape: 8.03 B parameters, 32.1 GB in fp32, 16.1 GB in bf16, 8.0 GB in int8
LLAMA_8B = tf.LlamaConfig(
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_attention_heads=32,
    num_key_value_heads=8,
    num_hidden_layers=32,
)


def test_the_parameter_count_comes_from_the_config_alone():
    assert fit.parameter_count(LLAMA_8B) == 8_030_261_248


def test_too_large_for_the_memory_names_what_would_fit():
    with pytest.raises(DepthscopeError) as refused:
        fit.check_weights_fit(LLAMA_8B, torch.float32, "cpu", None, "llama-8b", available=20e9)
    line = str(refused.value)
    assert "8.03 B parameters: 32.1 GB in float32" in line and "20.0 GB free" in line
    assert "--dtype bfloat16 (16.1 GB)" in line and "--quantize int8 (8.0 GB)" in line
    assert "--device-map auto" in line and "\n" not in line
    # with room, or once quantised into the room, nothing is said
    fit.check_weights_fit(LLAMA_8B, torch.float32, "cpu", None, "llama-8b", available=40e9)
    fit.check_weights_fit(LLAMA_8B, torch.float32, "cpu", "int8", "llama-8b", available=10e9)


def test_load_model_refuses_before_reading_weights(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(fit, "free_bytes", lambda device: 1000)  # a machine with 1 kB free
    monkeypatch.setattr(loader, "_load_weights", lambda *a, **k: pytest.fail("weights were read"))
    with pytest.raises(DepthscopeError, match="GB free; load it with"):
        loader.load_model(str(tiny_model_dir), progress=False)
