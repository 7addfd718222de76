"""The trace and replay engine reproduce each supported family exactly (fp32, 1e-5)."""

from __future__ import annotations

import pytest
import torch
from tiny_models import FAMILIES, random_ids, tiny_model

from depthscope.engine.batch import pad_batch
from depthscope.engine.replay import replay
from depthscope.engine.trace import trace

ATOL = 1e-5


def close(a: torch.Tensor, b: torch.Tensor, atol: float = ATOL) -> bool:
    return torch.allclose(a, b, atol=atol, rtol=1e-5)


@pytest.fixture(scope="module", params=FAMILIES)
def lm(request):
    return tiny_model(request.param)


@pytest.fixture(scope="module")
def single(lm):
    batch = pad_batch(random_ids([11]), pad_id=0)
    return batch, trace(lm.adapter, batch, logits=True, keep_mlp_in=True)


def test_residual_is_sum_of_contributions(lm, single):
    _, tr = single
    for layer in range(tr.n_layers):
        rebuilt = tr.resid[layer] + tr.attn[layer] + tr.mlp[layer]
        assert close(tr.resid[layer + 1], rebuilt), f"layer {layer}"
    assert tr.attn.abs().mean() > 1e-3 and tr.mlp.abs().mean() > 1e-3  # not trivially zero


def test_residual_matches_model_hidden_states(lm, single):
    batch, tr = single
    out = lm.model(input_ids=batch.input_ids, output_hidden_states=True)
    for layer in range(tr.n_layers):
        assert close(tr.resid[layer], out.hidden_states[layer]), f"layer {layer}"
    assert close(tr.logits, out.logits)


def test_mlp_reads_what_the_layer_computed(lm, single):
    _, tr = single
    for layer in range(tr.n_layers):
        expected = tr.resid[layer] if lm.adapter.parallel else tr.resid[layer] + tr.attn[layer]
        assert close(tr.mlp_in[layer], expected), f"layer {layer}"


def test_replay_from_every_layer_reproduces_logits(lm, single):
    _, tr = single
    starts = list(range(tr.n_layers + 1))
    finals = replay(lm.adapter, tr, 0, starts)
    logits = lm.adapter.logits(finals)
    for row, start in enumerate(starts):
        assert close(logits[row], tr.logits[0]), f"replay from layer {start}"


def test_replay_records_clean_sublayers(lm, single):
    _, tr = single
    seen = {}

    def observe(step):
        seen[step.layer] = (step.attn[0], step.mlp[0], step.resid_out[0])

    replay(lm.adapter, tr, 0, [0], observe=observe)
    for layer, (attn, mlp, out) in seen.items():
        assert close(attn, tr.attn[layer, 0]) and close(mlp, tr.mlp[layer, 0])
        assert close(out, tr.resid[layer + 1, 0])


def test_padded_batch_equals_single_prompts(lm):
    lengths = [7, 13, 4]
    ids = random_ids(lengths, seed=3)
    padded = trace(lm.adapter, pad_batch(ids, pad_id=0), logits=True)
    assert padded.valid.sum(1).tolist() == lengths
    for row, n in enumerate(lengths):
        alone = trace(lm.adapter, pad_batch([ids[row]], pad_id=0), logits=True)
        assert close(padded.resid[:, row, :n], alone.resid[:, 0])
        assert close(padded.attn[:, row, :n], alone.attn[:, 0])
        assert close(padded.mlp[:, row, :n], alone.mlp[:, 0])
        finals = replay(lm.adapter, padded, row, list(range(padded.n_layers + 1)))
        logits = lm.adapter.logits(finals[:, :n])
        assert close(logits, alone.logits.expand_as(logits))
