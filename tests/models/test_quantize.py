"""``--quantize int8|nf4``: bitsandbytes weights with measurements in fp32, and clear refusals."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import depthscope as ds
from depthscope.core.errors import DepthscopeError
from depthscope.models.loading import quantize
from depthscope.models.loading.loader import load_model
from depthscope.run.runner import describe_model

HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None
# int8 weights (per-row absmax, outliers kept in fp16) on this random tiny model: the logit lens's
# KL profile stays within this relative distance of fp32's (measured 1-3 %); nf4 is far coarser
INT8_TOLERANCE = 0.1


def test_unknown_kind_and_gguf_are_refused_before_loading():
    with pytest.raises(DepthscopeError, match="choose int8 or nf4"):
        quantize.check_quantize("int4", "smollm2-135m")
    if HAS_BNB:
        with pytest.raises(DepthscopeError, match="already quantised"):
            quantize.check_quantize("int8", "/models/x.gguf")


def test_missing_bitsandbytes_says_what_to_install(monkeypatch, tiny_model_dir):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real(name, *a),
    )
    with pytest.raises(DepthscopeError, match=r"pip install bitsandbytes.*--dtype bfloat16"):
        describe_model(str(tiny_model_dir), None, "cpu", "int8")


@pytest.mark.skipif(not HAS_BNB, reason="bitsandbytes is not installed (pip install bitsandbytes)")
def test_int8_matches_fp32_within_tolerance_and_changes_the_fingerprint(tiny_model_dir):
    plain = load_model(str(tiny_model_dir), progress=False)
    int8 = load_model(str(tiny_model_dir), progress=False, quantize="int8")
    linear = type(int8.model.model.layers[0].mlp.up_proj).__name__
    assert linear == "Linear8bitLt"
    assert int8.identity["quantize"] == "int8" and "quantize" not in plain.identity
    assert int8.identity["fingerprint"] != plain.identity["fingerprint"]
    prompts = ["The cat sat on the mat and looked at the door.", "One two three four five six"]
    want = ds.analyze(plain, "logit-lens", prompts).data
    got = ds.analyze(int8, "logit-lens", prompts).data
    trace = ds.trace(int8, prompts[:1])
    assert trace.resid.dtype == torch.float32  # measurements stay in fp32
    kl_want, kl_got = torch.as_tensor(want["kl"]), torch.as_tensor(got["kl"])
    distance = float((kl_got - kl_want).abs().max() / kl_want.abs().max())
    assert 0 < distance < INT8_TOLERANCE  # quantised (not identical), yet close
