"""Every load is proven on the model as loaded: the adapter's pieces add up to each layer's output
and the clean replay gives the model's logits, or the model is refused naming the layer
(depthscope/engine/proof.py); the record lands in run.json; --no-load-check skips it, recorded."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import transformers as tf
from tiny_models import (
    FAMILIES,
    LLAMA_LIKE,
    build_tiny,
    tiny_falcon,
    tiny_gemma3_multimodal,
    tiny_model,
    tiny_tokenizer,
)

import depthscope as ds
from depthscope.cli import build_parser, main
from depthscope.core.errors import DepthscopeError
from depthscope.engine.proof import PROBE_LENGTHS, TOLERANCES, probe_batch, tolerance
from depthscope.engine.replay import replay
from depthscope.engine.trace import trace
from depthscope.models.adapters import ADAPTERS, Adapter, BoundAdapter, first_tensor
from depthscope.models.loading.loader import LoadedModel, load_model
from depthscope.run.memory_plan import ModelShape


def _wrap(model, **kwargs) -> LoadedModel:
    return LoadedModel.from_model(model, None, **kwargs)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_table_family_is_proven_without_copies(family):
    lm = _wrap(tiny_model(family).model, name=f"tiny-{family}")
    record = lm.identity["load_check"]
    assert record["status"] == "passed" and record["dtype"] == "float32"
    assert record["tolerance"] == TOLERANCES[torch.float32]
    assert record["residual_identity"]["max_rel"] < 1e-6
    assert record["replay_layers"]["max_rel"] < 1e-6
    assert record["replay_logits"]["max_rel"] < 1e-6
    assert record["probe"] == {"prompts": 2, "tokens": list(PROBE_LENGTHS), "seed": 0}
    assert record["copies_sublayers"] is False  # no family of the table pays for copies
    assert set(record) >= {"seconds"}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_proven_within_its_own_tolerance(dtype):
    lm = _wrap(tiny_model("llama").model.to(dtype))
    record = lm.identity["load_check"]
    assert record["status"] == "passed" and record["tolerance"] == tolerance(dtype)
    assert 0 < record["residual_identity"]["max_rel"] < record["tolerance"] / 5  # rounding only
    assert tolerance(dtype) > tolerance(torch.float32)
    assert tolerance(dtype, quantized=True) >= tolerance(dtype)


def test_the_probe_is_small_and_always_the_same():
    a, b = probe_batch(1000), probe_batch(1000)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.valid, b.valid)
    assert a.size == 2 and a.lengths == list(PROBE_LENGTHS) and max(PROBE_LENGTHS) <= 32
    assert int(a.input_ids.max()) < 1000
    assert probe_batch(50, max_len=5).lengths == [5, 5]


def _add_extra_term(layer: torch.nn.Module) -> None:
    """Break one decoder layer: its output carries a term no sublayer accounts for."""
    forward = layer.forward

    def broken(hidden_states, *args, **kwargs):
        output = forward(hidden_states, *args, **kwargs)
        out = first_tensor(output) + 0.5 * hidden_states.roll(1, dims=-1)
        return (out, *output[1:]) if isinstance(output, tuple) else out

    layer.forward = broken


def test_a_layer_with_an_extra_term_is_refused_naming_the_layer():
    model = tiny_model("llama").model
    _add_extra_term(model.model.layers[2])
    with pytest.raises(DepthscopeError) as refused:
        _wrap(model, name="broken")
    message = str(refused.value)
    assert "\n" not in message
    assert "does not describe broken: at layer 2 " in message
    assert "relative error" in message and "allowed in float32" in message
    skipped = _wrap(model, name="broken", load_check=False)  # the user's own risk, recorded
    assert skipped.identity["load_check"]["status"] == "skipped"


def test_a_broken_layer_is_refused_by_load_model(tiny_model_dir, monkeypatch):
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    forward = LlamaDecoderLayer.forward

    def broken(self, hidden_states, *args, **kwargs):
        out = forward(self, hidden_states, *args, **kwargs)
        return out + 0.1 * hidden_states if self.self_attn.layer_idx == 1 else out

    monkeypatch.setattr(LlamaDecoderLayer, "forward", broken)
    with pytest.raises(DepthscopeError, match="at layer 1 the captured attention and MLP"):
        load_model(str(tiny_model_dir), progress=False)
    lm = load_model(str(tiny_model_dir), progress=False, load_check=False)
    assert lm.identity["load_check"] == {
        "status": "skipped",
        "reason": "--no-load-check / load_check=False",
        "adapter": {"family": "llama", "source": "table"},
    }


def test_an_adapter_whose_head_misses_a_logit_scale_is_refused():
    model = tiny_model("llama").model
    forward = model.forward

    def scaled(*args, **kwargs):  # Granite divides the head's logits by ``logits_scaling``
        output = forward(*args, **kwargs)
        output.logits = output.logits / 3.0
        return output

    model.forward = scaled
    with pytest.raises(DepthscopeError, match="do not give the model's logits"):
        _wrap(model, name="scaled")


FALCON = Adapter(
    family="falcon",
    model_types=("falcon",),
    layers="transformer.h",
    final_norm="transformer.ln_f",
    attn_out="self_attention",
    mlp_out="mlp",
    mlp_in="input_layernorm",
    parallel=True,
)


def test_falcon_in_place_add_is_copied_and_proven():
    """Falcon's ``mlp_output += attention_output`` would turn a kept m into m + a."""
    model = tiny_falcon()
    lm = _wrap(model, adapter=FALCON, name="tiny-falcon")
    record = lm.identity["load_check"]
    assert record["status"] == "passed" and record["copies_sublayers"] is True
    assert record["residual_identity"]["max_rel"] < 1e-5
    # the kept m is the MLP's own output (a plain hook with a copy: the naive way)
    seen = {}
    handles = [
        layer.mlp.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o.clone()))
        for k, layer in enumerate(model.transformer.h)
    ]
    batch = probe_batch(96)
    try:
        tr = trace(lm.adapter, batch, logits=True)
    finally:
        for handle in handles:
            handle.remove()
    for k in range(tr.n_layers):
        assert torch.allclose(tr.mlp[k], seen[k], atol=1e-6), k
    observed = {}
    replay(lm.adapter, tr, 0, [0], observe=lambda s: observed.__setitem__(s.layer, s.mlp))
    for k, mlp in observed.items():  # what an observer of a replay is shown is copied too
        assert torch.allclose(mlp[0], seen[k][0], atol=1e-5), k


def test_tiny_table_models_keep_uncopied_sublayers():
    lm = tiny_model("llama")
    trace(lm.adapter, probe_batch(96))
    assert lm.adapter.copy_sites is False


def test_a_multimodal_wrapper_is_read_through_its_text_config(tmp_path):
    """Gemma 3's wrapper has no ``config.hidden_size``; the loader reads the text config's."""
    tokenizer = tiny_tokenizer()
    model = tiny_gemma3_multimodal(tokenizer)
    assert not hasattr(model.config, "hidden_size")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    gemma3 = next(a for a in ADAPTERS if a.family == "gemma3")
    wrapper = dataclasses.replace(
        gemma3,
        family="gemma3-wrapper",
        layers="model.language_model.layers",
        final_norm="model.language_model.norm",
    )
    lm = load_model(str(tmp_path), progress=False, adapter=wrapper)
    assert lm.d_model == 32 and lm.identity["d_model"] == 32 and lm.vocab_size == len(tokenizer)
    assert lm.identity["load_check"]["status"] == "passed"
    assert ModelShape.of(lm.model).d_model == 32
    assert BoundAdapter(lm.model, wrapper).n_layers == 2


def test_every_command_that_loads_a_model_takes_no_load_check():
    parser = build_parser()
    for argv in (
        ["prune", "smollm2-135m"],
        ["map", "gemma3-270m", "smollm2-135m"],
        ["finetune", "smollm2-135m", "--out", "x"],
        ["lens", "train", "--out", "x"],
        ["analyze"],
    ):
        assert parser.parse_args(argv).load_check is True, argv
        assert parser.parse_args([*argv, "--no-load-check"]).load_check is False, argv


def test_the_proof_lands_in_run_json(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["analyze", str(tiny_model_dir), "-n", "1", "--analyses", "logit-lens", "--no-plots"]
    assert main([*common, "--out", str(out)]) == 0, capsys.readouterr()
    record = json.loads((out / "run.json").read_text())["model"]["load_check"]
    assert record["status"] == "passed" and record["dtype"] == "float32"
    assert {"residual_identity", "replay_logits", "tolerance", "probe", "seconds"} <= set(record)
    skipped = tmp_path / "skipped"
    assert main([*common, "--out", str(skipped), "--no-load-check"]) == 0
    record = json.loads((skipped / "run.json").read_text())["model"]["load_check"]
    assert record["status"] == "skipped"


def test_the_api_loads_with_and_without_the_proof(tiny_model_dir):
    assert ds.load_model(str(tiny_model_dir), progress=False).identity["load_check"]["status"] == (
        "passed"
    )
    lm = ds.load_model(str(tiny_model_dir), progress=False, load_check=False)
    assert lm.identity["load_check"]["status"] == "skipped"
    assert lm.fingerprint == ds.load_model(str(tiny_model_dir), progress=False).fingerprint


def test_the_report_shows_the_proof():
    from depthscope.figures.report import identity_rows

    record = _wrap(tiny_model("llama").model).identity["load_check"]
    rows = dict(identity_rows({}, {"name": "m", "load_check": record}))
    assert rows["load-time proof"].startswith("passed: residual identity 0")
    assert "tolerance 0.0001 in float32" in rows["load-time proof"]
    skipped = {"status": "skipped", "reason": "--no-load-check / load_check=False"}
    assert dict(identity_rows({}, {"load_check": skipped}))["load-time proof"] == "skipped"
    assert dict(identity_rows({}, {}))["load-time proof"] is None  # an older run.json


def test_granite_scaled_branches_given_the_obvious_adapter_are_refused_at_layer_0():
    """Granite adds ``residual_multiplier`` × each branch: a llama-like adapter misses the scale."""
    model = build_tiny(
        tf.GraniteConfig,
        tf.GraniteForCausalLM,
        **LLAMA_LIKE,
        num_hidden_layers=2,
        residual_multiplier=0.5,
        logits_scaling=4.0,
    )
    llama = next(a for a in ADAPTERS if a.family == "llama")
    obvious = dataclasses.replace(llama, family="granite", model_types=("granite",))
    with pytest.raises(DepthscopeError, match="does not describe tiny-granite: at layer 0 "):
        _wrap(model, adapter=obvious, name="tiny-granite")
