"""bf16: every analysis runs in half precision, measuring in fp32; batching and packing stay within
the noise floor, and results stay within a stated distance of the fp32 reference.

Tolerances (docs/scaling.md, "bf16 and its noise floor"): bf16 keeps 8 significant bits, so one
rounding is up to ``2**-8`` relative and its epsilon is ``2**-7 ≈ 0.0078``. Relative changes are
``‖c̄ − c‖ / ‖c‖``; a contribution ``c`` recomputed in bf16 carries rounding of the residual it is
taken from, so unchanged computations read as changes of about ``eps · ‖h‖ / ‖c‖``. Measured on
these tiny models (CPU): batch size changes nothing, packing changes effects by at most
``2**-7``, and bf16 differs from fp32 by at most 0.042 in an effect and 0.012 in an output change.
The tolerances below leave a factor of about two.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from distributed_worker import fold, make_analysis, prompt_set
from tiny_models import random_ids, tiny_model

import depthscope as ds
from depthscope.engine.batch import pad_batch
from depthscope.engine.replay import replay
from depthscope.engine.trace import trace

BF16_EPS = 2.0**-7
VARIANT_TOL = 2 * BF16_EPS  # batch 1 vs 64, packed vs unpacked: same dtype, other shapes
EFFECT_TOL = 0.08  # bf16 vs fp32: relative changes of layer contributions
OUTPUT_TOL = 0.03  # bf16 vs fp32: L2 change of the output distribution
PROMPTS = [30, 26, 40, 21]
SWEEP_MODULE = next(
    m
    for m in ("depthscope.engine.sweep", "depthscope.analyses.sweep")
    if importlib.util.find_spec(m)
)


def bf16_model(family: str):
    lm = tiny_model(family)
    lm.model.to(torch.bfloat16)
    return lm


def effects(lm, batch_size: int, name: str = "future-effects") -> dict:
    settings = {"parts": ("layer", "attention")} if name == "future-effects" else {}
    prompts = random_ids(PROMPTS, seed=5)
    data = ds.analyze(lm, name, prompts, **settings, batch_size=batch_size).data
    if name == "future-effects":
        return {
            "layer": torch.as_tensor(data["effect"]),
            "layer output": torch.as_tensor(data["output_change"]),
            "attention": torch.as_tensor(data["attention"]["effect"]),
            "attention output": torch.as_tensor(data["attention"]["output_change"]),
        }
    return {key: torch.as_tensor(data[key]) for key in ("current", "future")}


def largest_gap(a: dict, b: dict) -> dict:
    return {key: float((a[key].double() - b[key].double()).abs().max()) for key in a}


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt_neox"])
def test_future_effects_bf16_batching_packing_and_fp32(family, monkeypatch):
    reference = effects(tiny_model(family), 64)
    packed = effects(bf16_model(family), 64)
    one_row = effects(bf16_model(family), 1)
    monkeypatch.setattr(f"{SWEEP_MODULE}.pack_prompt", lambda *a, **k: None)
    unpacked = effects(bf16_model(family), 64)
    for variant in (one_row, unpacked):
        assert max(largest_gap(variant, packed).values()) <= VARIANT_TOL
    for key, gap in largest_gap(packed, reference).items():
        assert gap <= (OUTPUT_TOL if "output" in key else EFFECT_TOL), (key, gap)
    assert all(v.dtype in (torch.float32, torch.float64) for v in packed.values())
    assert reference["layer"].max() > 0.5  # effects are large, so the tolerances are meaningful


def test_local_effects_bf16(monkeypatch):
    reference = effects(tiny_model("llama"), 64, "local-effects")
    packed = effects(bf16_model("llama"), 64, "local-effects")
    monkeypatch.setattr(f"{SWEEP_MODULE}.pack_prompt", lambda *a, **k: None)
    unpacked = effects(bf16_model("llama"), 64, "local-effects")
    assert max(largest_gap(unpacked, packed).values()) <= VARIANT_TOL
    assert max(largest_gap(packed, reference).values()) <= EFFECT_TOL


def test_bf16_trace_keeps_model_dtype_and_replay_reproduces_it():
    lm = bf16_model("llama")
    traced = trace(lm.adapter, pad_batch(random_ids([19, 12]), 0), logits=True)
    assert traced.resid.dtype == torch.bfloat16
    assert traced.contributions(0, torch.float32).dtype == torch.float32
    exact = traced.resid[1:, 0].float() - traced.resid[:-1, 0].float()
    assert torch.equal(traced.contributions(0, torch.float32), exact)
    finals = replay(lm.adapter, traced, 0, list(range(traced.n_layers + 1)))
    gap = (finals.float() - traced.resid[-1, 0].float()).abs().max()
    scale = traced.resid[-1, 0].float().abs().max()
    assert gap <= 2 * BF16_EPS * scale  # clean replay = the model, to bf16 rounding


def flat(value, path=""):
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from flat(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from flat(item, f"{path}[{index}]")


SETTINGS = {"igrad": {"steps": 8, "block": 8}}


@pytest.mark.parametrize(
    "name",
    ["contributions", "current-effects", "logit-lens", "erasure", "igrad", "depth-score"],
)
def test_every_analysis_runs_in_bf16_and_measures_in_fp32(name):
    prompts = prompt_set()
    prompts.levels = [1, 2] * 3 + [1]
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        lm = tiny_model("llama")
        lm.model.to(dtype)
        analysis = make_analysis(lm, name, prompts.sequences[:3], **SETTINGS.get(name, {}))
        state = fold({name: analysis}, prompts, [0, 1, 2, 3])[name]
        results[dtype] = dict(flat(analysis.finish(state)))
    reference, half = results[torch.float32], results[torch.bfloat16]
    assert half.keys() == reference.keys() and half
    for key, value in half.items():
        assert value.dtype in (torch.float32, torch.float64, torch.long, torch.bool), key
        assert value.shape == reference[key].shape, key
        if value.is_floating_point():
            assert torch.isfinite(value).all(), key
            ref = reference[key].double()
            gap = (value.double() - ref).abs()
            assert (gap <= EFFECT_TOL * ref.abs().clamp_min(1.0)).all(), (key, float(gap.max()))
