"""The tuned lens: it recovers a known map, the identity lens is the logit lens exactly, its files
(depthscope's and the tuned-lens project's) reload to the same readouts, a lens of another model is
refused before any prompt runs, and an interrupted training ends where an uninterrupted one ends."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from tiny_models import random_ids, tiny_model

import depthscope as ds
from depthscope.core.errors import DepthscopeError
from depthscope.engine.tuned_lens import TunedLens, load_tuned_lens
from depthscope.experiments import lens as training
from depthscope.experiments.lens import LensSettings, Translators, boundary_loss, train_lens

PROMPTS = random_ids([9, 14, 6], seed=3)


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama")


def random_lens(lm, seed: int = 0, scale: float = 0.05) -> TunedLens:
    generator = torch.Generator().manual_seed(seed)
    shape = (lm.n_layers, lm.d_model)
    weight = scale * torch.randn(*shape, lm.d_model, generator=generator)
    return TunedLens(weight, scale * torch.randn(*shape, generator=generator))


def test_the_identity_lens_is_the_logit_lens_exactly(lm, tmp_path):
    TunedLens.identity(lm.n_layers, lm.d_model).save(tmp_path / "id", {"note": "identity"})
    data = ds.analyze(lm, "logit-lens", PROMPTS, lens=f"tuned:{tmp_path / 'id'}").data
    for key in ("kl", "topk_overlap"):
        assert torch.equal(torch.as_tensor(data["tuned"][key]), torch.as_tensor(data[key]))
    plain = ds.analyze(lm, "logit-lens", PROMPTS).data
    assert torch.equal(torch.as_tensor(plain["kl"]), torch.as_tensor(data["kl"]))
    assert "tuned" not in plain


def test_a_saved_lens_and_the_tuned_lens_projects_layout_read_the_same(lm, tmp_path):
    lens = random_lens(lm)
    lens.save(tmp_path / "ours", {"note": "random"})
    again = load_tuned_lens(tmp_path / "ours")
    assert torch.equal(again.weight, lens.weight) and torch.equal(again.bias, lens.bias)
    peer = tmp_path / "peer"  # config.json + params.pt, as the tuned-lens project saves them
    peer.mkdir()
    state = {}
    for b in range(lm.n_layers):
        state[f"{b}.weight"], state[f"{b}.bias"] = lens.weight[b].clone(), lens.bias[b].clone()
    torch.save(state, peer / "params.pt")
    config = {"base_model_name_or_path": "tiny", "d_model": lm.d_model}
    (peer / "config.json").write_text(json.dumps({**config, "num_hidden_layers": lm.n_layers}))
    ours = ds.analyze(lm, "logit-lens", PROMPTS, lens=f"tuned:{tmp_path / 'ours'}").data
    theirs = ds.analyze(lm, "logit-lens", PROMPTS, lens=f"tuned:{peer}").data
    assert torch.equal(torch.as_tensor(ours["tuned"]["kl"]), torch.as_tensor(theirs["tuned"]["kl"]))
    assert not torch.equal(torch.as_tensor(ours["tuned"]["kl"]), torch.as_tensor(ours["kl"]))


def test_a_lens_of_another_model_is_refused_before_any_prompt_runs(lm, tmp_path):
    TunedLens.identity(lm.n_layers, lm.d_model + 8).save(tmp_path / "wide", {})
    with pytest.raises(DepthscopeError, match="translators of width"):
        ds.analyze(lm, "logit-lens", PROMPTS, lens=f"tuned:{tmp_path / 'wide'}")
    with pytest.raises(DepthscopeError, match="holds no tuned lens"):
        ds.analyze(lm, "logit-lens", PROMPTS, lens=f"tuned:{tmp_path / 'nothing'}")


def test_training_recovers_a_known_linear_map(lm):
    """Residuals whose final distribution is the head's readout of ``(I + A) h + c``: the trained
    translator of that boundary maps every residual where the known map does (the head's norm
    leaves only the direction identifiable), and its KL falls to near zero."""
    adapter = lm.adapter
    d = lm.d_model
    generator = torch.Generator().manual_seed(1)
    known = 0.3 * torch.randn(d, d, generator=generator)
    shift = 0.3 * torch.randn(d, generator=generator)
    h = torch.randn(256, d, generator=generator)
    with torch.no_grad():
        final = F.log_softmax(adapter.logits(h + h @ known.T + shift).float(), -1)
    translators = Translators(lm.n_layers, d)
    optimizer = torch.optim.Adam(translators.parameters(), lr=0.02)
    start = float(boundary_loss(adapter, translators, 0, h, final))
    for _ in range(400):
        optimizer.zero_grad()
        loss = boundary_loss(adapter, translators, 0, h, final)
        loss.backward()
        optimizer.step()
    assert float(loss) < 0.01 * start
    learned = h + h @ translators.weight[0].detach().T + translators.bias[0].detach()
    target = h + h @ known.T + shift
    assert F.cosine_similarity(learned, target, dim=-1).min() > 0.99


def test_an_interrupted_training_ends_where_an_uninterrupted_one_ends(
    tiny_model_dir, tmp_path, monkeypatch
):
    text = tmp_path / "text.txt"
    words = " ".join(f"word{i % 37} and more{i % 11}." for i in range(400))
    text.write_text("\n".join(words[i : i + 300] for i in range(0, len(words), 300)) + "\n")
    lm = ds.load_model(str(tiny_model_dir), progress=False)
    settings = LensSettings(
        data=f"file:{text}", tokens=512, heldout_tokens=64, seq_len=32, batch=2, checkpoint_every=2
    )
    whole = train_lens(lm, settings, tmp_path / "whole")
    real_step = training.lens_loss_step
    calls = {"n": 0}

    def interrupt_at_five(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(training, "lens_loss_step", interrupt_at_five)
    with pytest.raises(KeyboardInterrupt):
        train_lens(lm, settings, tmp_path / "resumed")
    assert (tmp_path / "resumed" / "checkpoint" / "state.json").exists()
    monkeypatch.setattr(training, "lens_loss_step", real_step)
    resumed = train_lens(lm, settings, tmp_path / "resumed")
    assert resumed["loss"] == whole["loss"] and resumed["tokens"] == whole["tokens"]
    a, b = load_tuned_lens(tmp_path / "whole"), load_tuned_lens(tmp_path / "resumed")
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    held = whole["heldout"]["kl_lens_final"]
    assert len(held["tuned"]) == lm.n_layers and not (tmp_path / "whole" / "checkpoint").exists()
