"""The from-scratch architectures: causal, exactly reproduced by the engine, saved and loaded."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from depthscope.engine.batch import pad_batch
from depthscope.engine.replay import replay
from depthscope.engine.trace import trace
from depthscope.experiments.training.models import ARCHS, ModelSize, build_model
from depthscope.experiments.training.tokenizer import char_tokenizer
from depthscope.models.adapters import BoundAdapter
from depthscope.models.shared_moe import SharedForCausalLM

VOCAB = 40
TINY = ModelSize(layers=4, d_model=32, heads=4, group_size=2, n_experts=6, expert_size=8)
ATOL = 1e-5


def tiny(arch: str, seed: int = 0) -> torch.nn.Module:
    """A tiny model with large random weights, so every layer changes the residual noticeably."""
    model = build_model(arch, TINY, VOCAB, pad_id=0, eos_id=1, seed=seed).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or "layernorm" in name:
                param.add_(0.3 * torch.randn_like(param))
            else:
                param.normal_(0.0, 0.2)
    model.requires_grad_(False)
    return model


def random_ids(lengths, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(2, VOCAB, (n,), generator=gen).tolist() for n in lengths]


def close(a, b, atol=ATOL):
    return torch.allclose(a, b, atol=atol, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_changing_a_future_token_never_changes_past_logits(arch):
    model = tiny(arch)
    ids = torch.tensor(random_ids([12]))
    clean = model(input_ids=ids).logits
    for t in (1, 5, 11):
        edited = ids.clone()
        edited[0, t] = (edited[0, t] + 7) % VOCAB
        logits = model(input_ids=edited).logits
        assert torch.equal(logits[0, :t], clean[0, :t]), f"position {t} leaked backwards"
        assert not close(logits[0, t], clean[0, t])  # the edit itself does matter


def test_transformer_is_a_sequential_pre_ln_neox():
    model = tiny("transformer")
    config = model.config
    assert config.model_type == "gpt_neox" and not config.use_parallel_residual
    assert config.hidden_act == "relu" and config.rotary_pct == 1.0
    assert not BoundAdapter(model).parallel


def test_shared_layers_reuse_weights_through_distinct_hook_sites():
    model = tiny("shared")
    layers = model.model.layers
    assert layers[0].block is layers[2].block is model.model.blocks[0]
    assert layers[1].block is layers[3].block is model.model.blocks[1]
    assert layers[0].attn_out is not layers[2].attn_out
    names = list(model.state_dict())
    assert not any(".layers." in name for name in names)  # weights stored once, in the blocks
    assert sum("blocks.0.ffn.keys" in name for name in names) == 1
    fired = [0] * len(layers)
    handles = [
        layer.attn_out.register_forward_hook(lambda *a, i=i: fired.__setitem__(i, fired[i] + 1))
        for i, layer in enumerate(layers)
    ]
    model(input_ids=torch.tensor(random_ids([5])))
    for handle in handles:
        handle.remove()
    assert fired == [1] * len(layers)


# The engine pattern of tests/engine/test_engine.py, for the shared model (the transformer is GPT-NeoX,
# which tests/engine/test_engine.py covers).


@pytest.fixture(scope="module")
def shared():
    model = tiny("shared")
    return model, BoundAdapter(model)


@pytest.fixture(scope="module")
def single(shared):
    _, adapter = shared
    batch = pad_batch(random_ids([11]), pad_id=0)
    return batch, trace(adapter, batch, logits=True, keep_mlp_in=True)


def test_shared_residual_is_sum_of_contributions(single):
    _, tr = single
    for layer in range(tr.n_layers):
        assert close(tr.resid[layer + 1], tr.resid[layer] + tr.attn[layer] + tr.mlp[layer])
        assert close(tr.mlp_in[layer], tr.resid[layer] + tr.attn[layer])
    assert tr.attn.abs().mean() > 1e-3 and tr.mlp.abs().mean() > 1e-3


def test_shared_trace_matches_hidden_states_and_logits(shared, single):
    model, _ = shared
    batch, tr = single
    out = model(input_ids=batch.input_ids, output_hidden_states=True)
    for layer in range(tr.n_layers):
        assert close(tr.resid[layer], out.hidden_states[layer]), f"layer {layer}"
    assert close(tr.logits, out.logits)


def test_shared_replay_from_every_layer_reproduces_logits(shared, single):
    _, adapter = shared
    _, tr = single
    starts = list(range(tr.n_layers + 1))
    logits = adapter.logits(replay(adapter, tr, 0, starts))
    for row, start in enumerate(starts):
        assert close(logits[row], tr.logits[0]), f"replay from layer {start}"


def test_shared_padded_batch_equals_single_prompts(shared):
    _, adapter = shared
    lengths = [7, 13, 4]
    ids = random_ids(lengths, seed=3)
    padded = trace(adapter, pad_batch(ids, pad_id=0), logits=True)
    for row, n in enumerate(lengths):
        alone = trace(adapter, pad_batch([ids[row]], pad_id=0), logits=True)
        assert close(padded.resid[:, row, :n], alone.resid[:, 0])
        finals = replay(adapter, padded, row, list(range(padded.n_layers + 1)))
        logits = adapter.logits(finals[:, :n])
        assert close(logits, alone.logits.expand_as(logits))


def test_left_padding_mask_is_respected():
    model = tiny("shared")
    ids = random_ids([6])[0]
    alone = model(input_ids=torch.tensor([ids])).logits
    left = model(
        input_ids=torch.tensor([[0, 0, *ids]]),
        attention_mask=torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1]]),
        position_ids=torch.arange(-2, 6)[None].clamp_min(0),
    ).logits
    assert close(left[0, 2:], alone[0])


def test_sigma_moe_uses_k_experts_per_token():
    model = tiny("shared")
    moe = model.model.blocks[0].ffn
    x = torch.randn(9, 32)
    dense = torch.zeros_like(x)  # naive reference: every expert, gates zeroed except the top k
    gates = torch.sigmoid(x @ moe.selection.t())
    top = gates.topk(moe.k, dim=-1).indices
    for token in range(9):
        for expert in top[token].tolist():
            hidden = torch.relu(x[token] @ moe.keys[expert])
            dense[token] += gates[token, expert] * (hidden @ moe.values[expert])
    assert close(moe(x), dense)


@pytest.mark.parametrize("arch", ARCHS)
def test_saved_folder_loads_with_load_model_and_analyses_run(tmp_path, arch):
    import depthscope as ds
    from depthscope.models.loading.loader import load_model

    tokenizer = char_tokenizer()
    model = build_model(arch, TINY, len(tokenizer), 0, 1, seed=0).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    lm = load_model(str(tmp_path), progress=False)
    assert lm.n_layers == TINY.layers
    assert type(lm.model) is type(model)
    ids = lm.tokenizer("Q: What is 2 + 3? A: 5")["input_ids"]
    assert close(lm.model(input_ids=torch.tensor([ids])).logits, model(torch.tensor([ids])).logits)
    data = ds.analyze(lm, "contributions", [ids]).data
    assert len(data["rel_layer"]) == TINY.layers


def test_shared_is_registered_with_the_auto_classes(tmp_path):
    model = tiny("shared")
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(loaded, SharedForCausalLM)
    ids = torch.tensor(random_ids([8]))
    assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_char_tokenizer_loads_offline_and_keeps_answers_as_the_tail(tmp_path):
    from depthscope.data.dm_arith import problem

    char_tokenizer().save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert tok.pad_token_id is not None and tok.eos_token_id is not None
    assert tok.bos_token_id is None
    text = "Q: What is -24 + -10? A: -34"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    assert tok.convert_ids_to_tokens(tok("1234")["input_ids"]) == ["1", "2", "3", "4"]
    for index in range(50):
        example = problem("mixed", index).example()
        joint = tok(example.text)["input_ids"]
        answer = tok(example.answer, add_special_tokens=False)["input_ids"]
        assert joint[-len(answer) :] == answer
        assert joint[: -len(answer)] == tok(example.prompt)["input_ids"]
