"""Training a tuned lens (Belrose et al. 2023) from depthscope's traces: ``depthscope lens train``.

Objective and initialisation as in the tuned-lens paper: one affine translator per residual
boundary ``b < L``, identity-initialised (``W_b = 0, c_b = 0`` read as ``h + W h + c``), trained to
minimise ``KL(final ‖ lens_b)`` from the model's own output distribution, summed over boundaries,
on packed windows of text. The paper trains 250 steps of 2^18 tokens with SGD and Nesterov
momentum; a CPU has about a thousandth of that budget, so depthscope uses Adam (lr 1e-3, no weight
decay), whose per-parameter step sizes converge in a few dozen small steps (docs/logit-lens.md
states the measured tokens and times). The model is frozen; each batch is traced once without
gradients and the boundaries are trained one after the other, so only one ``[tokens, vocab]``
block of logits exists at a time.

A run checkpoints its translators, the optimizer and the random state every few steps and when
interrupted (``depthscope.run.checkpoints``, nothing pickled); rerunning the same command resumes
and ends where an uninterrupted run ends. The result is ``lens.safetensors`` + ``lens.json`` with
the held-out KL per boundary of both the logit lens and the tuned lens.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from depthscope.core.errors import DepthscopeError
from depthscope.core.folders import OutputFolder
from depthscope.core.interrupts import sigterm_as_interrupt
from depthscope.core.progress import Progress
from depthscope.core.run_folder import LENS_OUTPUTS
from depthscope.data.prompts import tokenize
from depthscope.data.sources import load_examples
from depthscope.engine.batch import Batch
from depthscope.engine.trace import trace
from depthscope.engine.tuned_lens import TunedLens
from depthscope.experiments.lens_settings import LensSettings
from depthscope.experiments.training.run_dir import (
    drop_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from depthscope.models.loading.loader import LoadedModel


class Translators(torch.nn.Module):
    """The trainable form of a :class:`TunedLens` (``weight [L, d, d]``, ``bias [L, d]``)."""

    def __init__(self, n_layers: int, d_model: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(n_layers, d_model, d_model))
        self.bias = torch.nn.Parameter(torch.zeros(n_layers, d_model))

    def lens(self) -> TunedLens:
        return TunedLens(self.weight.detach().clone(), self.bias.detach().clone())


def windows(lm: LoadedModel, settings: LensSettings) -> tuple[list[list[int]], list[list[int]]]:
    """Training and held-out windows of ``seq_len`` tokens, packed from whole texts; the held-out
    windows come from texts the training windows never see (the end of the source)."""
    examples = load_examples(settings.data, None, seed=settings.seed)
    ids = [tokenize(lm.tokenizer, e.text) for e in examples]
    need_train, need_held = (
        settings.steps * settings.batch,
        math.ceil(settings.heldout_tokens / settings.seq_len),
    )
    held_ids, held_texts = [], 0
    while ids and len(held_ids) < need_held * settings.seq_len:
        held_ids = ids.pop() + held_ids
        held_texts += 1
    train_ids = [t for text in ids for t in text]
    size = settings.seq_len
    train = [train_ids[i : i + size] for i in range(0, len(train_ids) - size + 1, size)]
    held = [held_ids[i : i + size] for i in range(0, len(held_ids) - size + 1, size)]
    if len(held) < need_held or not train:
        raise DepthscopeError(
            f"{settings.data} holds too little text for {settings.heldout_tokens} held-out tokens "
            f"and training; pass a larger source (file:PATH) or fewer --tokens"
        )
    # cycle through the training windows if the source is shorter than the budget
    order = [train[(i * 7919) % len(train)] for i in range(need_train)]
    return order, held[:need_held]


def _batch(rows: list[list[int]], device: torch.device) -> Batch:
    ids = torch.tensor(rows, dtype=torch.long, device=device)
    return Batch(ids, torch.ones_like(ids, dtype=torch.bool))


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``KL(p ‖ q)`` per row, from log-probabilities ``[rows, vocab]``."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def boundary_loss(
    adapter, translators: Translators, b: int, h: torch.Tensor, final: torch.Tensor
) -> torch.Tensor:
    """``mean KL(final ‖ lens_b)`` over the rows of residuals ``h [rows, d]`` of boundary ``b``."""
    moved = h + h @ translators.weight[b].T + translators.bias[b]
    return _kl(final, F.log_softmax(adapter.logits(moved).float(), -1)).mean()


def lens_loss_step(
    lm: LoadedModel, translators: Translators, rows: list[list[int]], optimizer
) -> float:
    """One optimizer step on a batch of windows; the mean KL(final ‖ tuned) over boundaries."""
    adapter = lm.adapter
    with torch.no_grad():
        traced = trace(adapter, _batch(rows, lm.device))
        resid = traced.resid.float()
        final = F.log_softmax(adapter.logits(resid[-1].reshape(-1, resid.shape[-1])).float(), -1)
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for b in range(adapter.n_layers):  # one boundary's graph at a time
        loss = boundary_loss(adapter, translators, b, resid[b].reshape(-1, resid.shape[-1]), final)
        loss.backward()
        total += float(loss.detach())
    optimizer.step()
    return total / adapter.n_layers


@torch.no_grad()
def heldout_kl(lm: LoadedModel, lens: TunedLens, held: list[list[int]]) -> dict:
    """Per boundary ``0..L-1``: mean KL over held-out tokens, both directions, both lenses."""
    adapter = lm.adapter
    n = adapter.n_layers
    sums = {key: torch.zeros(n, dtype=torch.float64) for key in ("logit", "tuned")}
    reverse = {key: torch.zeros(n, dtype=torch.float64) for key in ("logit", "tuned")}
    count = 0
    for start in range(0, len(held), 4):
        traced = trace(adapter, _batch(held[start : start + 4], lm.device))
        resid = traced.resid.float()
        width = resid.shape[-1]
        final = F.log_softmax(adapter.logits(resid[-1].reshape(-1, width)).float(), -1)
        count += final.shape[0]
        for b in range(n):
            h = resid[b].reshape(-1, width)
            for key, x in (("logit", h), ("tuned", lens.translate(h[None], b)[0])):
                log_q = F.log_softmax(adapter.logits(x).float(), -1)
                sums[key][b] += _kl(log_q, final).sum().double().cpu()  # KL(lens ‖ final)
                reverse[key][b] += _kl(final, log_q).sum().double().cpu()  # KL(final ‖ lens)
    return {
        "tokens": count,
        "kl_lens_final": {k: (v / count).tolist() for k, v in sums.items()},
        "kl_final_lens": {k: (v / count).tolist() for k, v in reverse.items()},
    }


def identity(lm: LoadedModel, settings: LensSettings) -> dict:
    """What a checkpoint must have been made for to be resumed."""
    return {
        "model": lm.identity.get("fingerprint"),
        "n_layers": lm.n_layers,
        "d_model": lm.d_model,
        **asdict(settings),
    }


def train_lens(
    lm: LoadedModel,
    settings: LensSettings,
    out: Path,
    progress: Progress | None = None,
    *,
    fresh: bool = False,
) -> dict:
    """Train (or resume) a lens into ``out``; returns the record written to ``lens.json``."""
    progress = progress or Progress()
    settings.check()
    out = Path(out)
    folder = OutputFolder(out, outputs=LENS_OUTPUTS)
    folder.check()
    train, held = windows(lm, settings)
    # a lens folder is one model's, as a run directory is
    folder.claim(str(lm.identity.get("fingerprint")), lm.name, lm.identity.get("source"))
    for parameter in lm.model.parameters():
        parameter.requires_grad_(False)
    torch.manual_seed(settings.seed)
    translators = Translators(lm.n_layers, lm.d_model).to(lm.device)
    optimizer = torch.optim.Adam(translators.parameters(), lr=settings.lr)
    wanted = identity(lm, settings)
    step, seconds, losses = 0, 0.0, []
    meta = None if fresh else load_checkpoint(out, translators, optimizer)
    if meta is not None:
        if meta.get("identity") != wanted:
            raise DepthscopeError(
                f"--out {out} holds a checkpoint of a lens trained otherwise (another model or "
                f"other settings); rerun with the same settings, pass --fresh, or another --out"
            )
        step, seconds, losses = meta["train_state"]["step"], meta["seconds"], meta["losses"]
        progress.note(f"resuming the lens from its checkpoint at step {step}")

    def checkpoint() -> None:
        state = {"identity": wanted, "train_state": {"step": step}, "seconds": seconds}
        save_checkpoint(out, translators, optimizer, {**state, "losses": losses})

    progress.start(f"tuned lens for {lm.name}", settings.steps)
    progress.advance(step)
    try:
        with sigterm_as_interrupt():
            while step < settings.steps:
                began = time.perf_counter()
                rows = train[step * settings.batch : (step + 1) * settings.batch]
                losses.append(round(lens_loss_step(lm, translators, rows, optimizer), 6))
                step += 1
                seconds += time.perf_counter() - began
                progress.advance(1)
                if step % 5 == 0 or step == settings.steps:
                    progress.stage(f"lens step {step}/{settings.steps}: KL {losses[-1]:.3f}")
                if step % settings.checkpoint_every == 0 and step < settings.steps:
                    checkpoint()
    except KeyboardInterrupt:
        checkpoint()
        raise
    lens = translators.lens()
    scored = heldout_kl(lm, lens, held)
    record = {
        "model": {
            "name": lm.name,
            "fingerprint": lm.identity.get("fingerprint"),
            "n_layers": lm.n_layers,
            "d_model": lm.d_model,
        },
        "data": settings.data,
        "tokens": step * settings.batch * settings.seq_len,
        "settings": asdict(settings),
        "objective": "KL(final ‖ tuned lens), summed over boundaries 0..L-1",
        "optimizer": f"Adam, lr {settings.lr}, no weight decay; identity initialisation",
        "seconds": round(seconds, 1),
        "loss": losses,
        "heldout": scored,
    }
    lens.save(out, record)
    drop_checkpoint(out)
    return record
