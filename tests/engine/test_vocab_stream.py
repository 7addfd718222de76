"""The logit lens over vocabulary tiles (online softmax) equals the materialised computation —
KL in both directions, top-k overlap and the top tokens — on every tiny family, with tiles that
do not divide the vocabulary, and the lens over a whole prompt equals its naive per-boundary
readout."""

from __future__ import annotations

import pytest
import torch
from tiny_models import FAMILIES, VOCAB, random_ids, tiny_model

from depthscope.analyses.logit_lens import DIRECTIONS, lens_metrics, lens_prompt
from depthscope.engine.batch import pad_batch
from depthscope.engine.outputs import log_probs
from depthscope.engine.trace import trace
from depthscope.engine.vocab_stream import FinalRows, final_log_probs, streamed_lens

K = 5


def residuals(family: str):
    lm = tiny_model(family)
    ids = random_ids([13], seed=3)
    traced = trace(lm.adapter, pad_batch(ids, 0))
    return lm, traced.resid[:, 0, : len(ids[0])]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("tile", [7, 32, VOCAB])  # ragged last tile, even tiles, one piece
def test_streamed_lens_equals_the_materialised_lens(family, direction, tile):
    lm, resid = residuals(family)
    n_layers = resid.shape[0] - 1
    final_logp = log_probs(lm.adapter, resid[n_layers])
    final = FinalRows.of(final_logp, K, direction)
    block = resid[:n_layers]
    found = streamed_lens(lm.adapter, block, final, K, direction, top=8, tile=tile)
    lens_logp = log_probs(lm.adapter, block.reshape(-1, block.shape[-1])).view(
        n_layers, resid.shape[1], -1
    )
    kl, overlap = lens_metrics(
        lens_logp, final_logp.unsqueeze(0), final.topk.unsqueeze(0), K, direction
    )
    assert torch.allclose(found.kl, kl, atol=1e-5, rtol=1e-4)
    assert torch.equal(found.overlap, overlap)
    best = lens_logp.topk(8, dim=-1)
    assert torch.equal(found.top_ids, best.indices)
    assert torch.allclose(found.top_logp, best.values, atol=1e-5)


def test_a_whole_prompt_matches_one_readout_per_boundary():
    """The analysis's blockwise loop against the naive definition: for each boundary alone,
    read the residual through the head and compare it with the output."""
    lm, resid = residuals("llama")
    n_layers = resid.shape[0] - 1
    got = lens_prompt(lm.adapter, resid, K, "lens||final")
    final = log_probs(lm.adapter, resid[n_layers])
    for layer in range(n_layers):
        lens = log_probs(lm.adapter, resid[layer])
        want = (lens.exp() * (lens - final)).sum(-1).sum()
        assert abs(float(got.kl_sum[layer]) - float(want)) < 1e-4 * max(1.0, float(want))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("tile", [7, 32, None])  # ragged, even, the device's default
def test_tiled_final_distribution_equals_one_matmul(family, tile):
    lm, resid = residuals(family)
    want = log_probs(lm.adapter, resid[-1])
    got = final_log_probs(lm.adapter, resid[-1], tile)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5)
