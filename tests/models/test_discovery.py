"""Adapters discovered from the module tree (depthscope/models/discovery.py): found for families
the table does not know, proven by the load-time proof, equal to a naive one-forward-per-
intervention computation on tiny MoE models, refused in one line where nothing adds up; and the
precedence registered > table > discovered."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
import transformers as tf
from naive import naive_effects
from tiny_models import (
    COMMON,
    LLAMA_LIKE,
    build_tiny,
    random_ids,
    tiny_falcon,
    tiny_gemma3_multimodal,
    tiny_tokenizer,
)

import depthscope as ds
from depthscope.core.errors import DepthscopeError
from depthscope.models import adapters
from depthscope.models.adapters import ADAPTERS
from depthscope.models.loading.loader import LoadedModel

SMALL = dict(**LLAMA_LIKE, num_hidden_layers=3)
MOE = {
    "mixtral": (tf.MixtralConfig, tf.MixtralForCausalLM, dict(num_local_experts=4)),
    "qwen3_moe": (
        tf.Qwen3MoeConfig,
        tf.Qwen3MoeForCausalLM,
        dict(num_experts=4, moe_intermediate_size=32, head_dim=8),
    ),
    "olmoe": (tf.OlmoeConfig, tf.OlmoeForCausalLM, dict(num_experts=4)),
}


@pytest.fixture(autouse=True)
def fresh_session(monkeypatch):
    """Each test starts with no registered and no discovered adapter."""
    monkeypatch.setattr(adapters, "_REGISTERED", [])
    monkeypatch.setattr(adapters, "_DISCOVERED", [])


def _tiny(config_cls, model_cls, **kwargs) -> torch.nn.Module:
    return build_tiny(config_cls, model_cls, **{**SMALL, **kwargs})


def tiny_moe(model_type: str) -> LoadedModel:
    config_cls, model_cls, kwargs = MOE[model_type]
    model = _tiny(config_cls, model_cls, num_experts_per_tok=2, **kwargs)
    return LoadedModel.from_model(model, None, name=f"tiny-{model_type}")


@pytest.fixture(scope="module", params=sorted(MOE))
def moe(request):
    adapters._DISCOVERED.clear()
    return tiny_moe(request.param)


def test_moe_families_are_discovered_and_proven(moe):
    record = moe.identity["load_check"]
    assert record["status"] == "passed"
    assert record["adapter"] == {"family": moe.identity["model_type"], "source": "discovered"}
    spec = moe.adapter.spec
    assert (spec.layers, spec.final_norm) == ("model.layers", "model.norm")
    assert (spec.attn_out, spec.mlp_out, spec.mlp_in) == (
        "self_attn",
        "mlp",
        "post_attention_layernorm",
    )
    assert moe.adapter.parallel is False
    assert record["residual_identity"]["max_rel"] < 1e-6


@pytest.mark.parametrize("part", ["layer", "attention", "mlp"])
def test_discovered_moe_adapters_match_a_naive_forward_per_intervention(moe, part):
    """Skip one layer, zero its attention, zero its MLP (the MoE block): the engine's replay on
    the discovered adapter equals one full forward pass per intervention."""
    prompts = random_ids([12, 7], seed=5)
    data = ds.analyze(moe, "current-effects", prompts, parts=(part,), batch_size=2).data
    got = data if part == "layer" else data[part]
    naive = [naive_effects(moe, ids, part, front=1, split=None) for ids in prompts]
    expected = torch.stack([e for e, _ in naive]).amax(0)
    actual = torch.as_tensor(got["effect"], dtype=expected.dtype)
    assert torch.allclose(actual, expected, atol=1e-5, rtol=1e-4), (actual - expected).abs().max()
    assert expected.max() > 1e-3  # the interventions do something
    output = torch.stack([o for _, o in naive]).amax(0)
    assert torch.allclose(
        torch.as_tensor(got["output_change"], dtype=output.dtype), output, atol=1e-5
    )


def test_a_discovered_adapter_is_kept_for_the_session():
    first = tiny_moe("mixtral")
    assert adapters.lookup_adapter(first.model) == (first.adapter.spec, "discovered")
    again = tiny_moe("mixtral")  # found, not searched again; still proven
    assert again.adapter.spec is first.adapter.spec  # a new search would build a new Adapter
    assert again.identity["load_check"]["adapter"]["source"] == "discovered"
    assert again.identity["load_check"]["status"] == "passed"


def test_registered_beats_table_beats_discovery():
    llama = next(a for a in ADAPTERS if a.family == "llama")
    model = _tiny(tf.MixtralConfig, tf.MixtralForCausalLM, num_local_experts=4)
    ds.register_adapter(dataclasses.replace(llama, family="my-mixtral", model_types=("mixtral",)))
    lm = LoadedModel.from_model(model, None)
    assert lm.identity["load_check"]["adapter"] == {"family": "my-mixtral", "source": "registered"}
    plain = _tiny(tf.LlamaConfig, tf.LlamaForCausalLM)
    table = LoadedModel.from_model(plain, None).identity["load_check"]["adapter"]
    assert table == {"family": "llama", "source": "table"}


def test_a_llama_class_under_another_model_type_uses_the_table():
    """EXAONE 3 and InternLM3 are ``LlamaForCausalLM`` under their own model types."""
    model = _tiny(tf.LlamaConfig, tf.LlamaForCausalLM)
    model.config.model_type = "exaone"
    lm = LoadedModel.from_model(model, None)
    assert lm.identity["load_check"]["adapter"] == {"family": "llama", "source": "table"}


def test_parallel_blocks_and_in_place_adds_are_discovered():
    cohere = LoadedModel.from_model(_tiny(tf.CohereConfig, tf.CohereForCausalLM), None)
    assert cohere.adapter.parallel is True and cohere.adapter.spec.mlp_in == "input_layernorm"
    # Falcon adds ``mlp_output += attention_output`` in place
    lm = LoadedModel.from_model(tiny_falcon(), None)
    record = lm.identity["load_check"]
    assert record["adapter"]["source"] == "discovered" and record["copies_sublayers"] is True
    assert (lm.adapter.spec.attn_out, lm.adapter.spec.mlp_out) == ("self_attention", "mlp")


def test_post_sublayer_norms_are_discovered():
    lm = LoadedModel.from_model(_tiny(tf.Exaone4Config, tf.Exaone4ForCausalLM), None)
    spec = lm.adapter.spec
    assert (spec.attn_out, spec.mlp_out) == (
        "post_attention_layernorm",
        "post_feedforward_layernorm",
    )
    assert spec.mlp_in == "mlp"  # OLMo 2-shaped: the MLP reads h + a itself


def test_nothing_adds_up_is_refused_in_one_line_naming_the_best_candidate():
    config = tf.BloomConfig(**COMMON, hidden_size=32, n_layer=3, n_head=4)
    torch.manual_seed(0)
    with pytest.raises(DepthscopeError) as refused:
        LoadedModel.from_model(tf.BloomForCausalLM(config).eval(), None)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("unsupported architecture BloomForCausalLM (model_type='bloom')")
    best = r"the best candidate \(attn_out='\w+', mlp_out='\w+'\) misses at layer \d by relative"
    assert re.search(best, message), message
    assert "register_adapter (docs/extending.md)" in message


def test_granite_scaled_branches_are_refused_not_discovered_wrong():
    config = tf.GraniteConfig(**COMMON, **SMALL, residual_multiplier=0.5, logits_scaling=4.0)
    torch.manual_seed(0)
    with pytest.raises(DepthscopeError, match="model_type='granite'.*misses at layer 0"):
        LoadedModel.from_model(tf.GraniteForCausalLM(config).eval(), None)


def test_a_multimodal_wrapper_of_a_table_family_is_discovered():
    lm = LoadedModel.from_model(tiny_gemma3_multimodal(tiny_tokenizer()), None)
    spec = lm.adapter.spec
    assert lm.identity["load_check"]["adapter"]["source"] == "discovered"
    assert spec.layers == "model.language_model.layers"
    assert (spec.attn_out, spec.mlp_out) == (
        "post_attention_layernorm",
        "post_feedforward_layernorm",
    )


def test_layers_that_name_their_mixer_differently_get_alternatives(coverage):
    """Qwen3-Next: ``linear_attn`` in some layers, ``self_attn`` in others; each layer uses the
    first of ``linear_attn|self_attn`` it has, and the proof holds for every layer."""
    model = coverage.build("qwen3_next")
    kinds = {
        type(layer.linear_attn if hasattr(layer, "linear_attn") else layer.self_attn)
        for layer in model.model.layers
    }
    assert len(kinds) == 2  # the tiny model has both kinds of layer
    lm = LoadedModel.from_model(model, None)
    assert lm.adapter.spec.attn_out == "linear_attn|self_attn"
    assert lm.identity["load_check"]["status"] == "passed"
    for layer, site in zip(model.model.layers, lm.adapter.attn_out, strict=True):
        assert site is getattr(layer, "linear_attn", None) or site is layer.self_attn


def test_an_adapter_can_decline_packing():
    from depthscope.engine.batch import pad_batch
    from depthscope.engine.prefix_packing import pack_prompt
    from depthscope.engine.trace import trace

    lm = tiny_moe("mixtral")
    assert lm.adapter.spec.packing is True and lm.identity["load_check"]["packing"] is True
    ids = random_ids([14], seed=3)
    traced = trace(lm.adapter, pad_batch(ids, 0))
    assert pack_prompt(lm.adapter, traced, 0, 14, [7]) is not None
    declined = adapters.BoundAdapter(lm.model, dataclasses.replace(lm.adapter.spec, packing=False))
    assert pack_prompt(declined, traced, 0, 14, [7]) is None


def test_load_model_discovers_a_saved_model_and_records_it(tmp_path):
    from depthscope.models.loading.loader import load_model

    tokenizer = tiny_tokenizer()
    config_cls, model_cls, kwargs = MOE["olmoe"]
    model = _tiny(config_cls, model_cls, num_experts_per_tok=2, vocab_size=len(tokenizer), **kwargs)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    lm = load_model(str(tmp_path), progress=False)
    record = lm.identity["load_check"]
    assert record["status"] == "passed"
    assert record["adapter"] == {"family": "olmoe", "source": "discovered"}
    assert lm.identity["family"] == "olmoe" and lm.n_layers == 3
