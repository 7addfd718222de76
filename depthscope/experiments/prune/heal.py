"""Healing a pruned model: a short LoRA fine-tune, then the same validation as before healing.

The pruning literature (ShortGPT, Gromov et al. 2024, SLEB) judges a pruned model after a brief
parameter-efficient fine-tune that lets the kept layers adapt to the gap. Here each pruned
candidate gets LoRA adapters (peft; rank ``r``, ``alpha = 2r``, no dropout) on every linear layer of
the kept decoder layers next to the cut — the ``window`` layers before and after each removed
layer — or on every linear layer of the model (``window=None``), trained ``steps`` steps with
AdamW on next-token loss over packed windows of ``data``, and merged back into plain weights. The
healed model is measured on the same held-out data as the unhealed one.

Each healed candidate's metrics are kept in ``heal.json`` in the run folder as soon as it is done,
so an interrupted ``depthscope prune --heal lora`` resumes with the next candidate. Needs
``pip install "depthscope[eval]"`` (peft).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from depthscope.core.atomic_files import atomic_write_json, read_json_object
from depthscope.core.errors import DepthscopeError
from depthscope.core.progress import Progress
from depthscope.core.run_folder import RunFolder
from depthscope.data.prompts import tokenize
from depthscope.data.sources import load_examples
from depthscope.experiments.prune.evaluate import EvalData, Tally, evaluate_naive
from depthscope.experiments.prune.surgery import kept_layers, pruned_copy, write_pruned
from depthscope.models.loading.loader import LoadedModel


@dataclass(frozen=True)
class HealSettings:
    """How each pruned candidate is healed (all recorded in ``prune.json``)."""

    steps: int = 50
    data: str = "builtin:text"
    seq_len: int = 96
    batch: int = 4
    lr: float = 2e-4
    rank: int = 8
    window: int | None = 1  # layers on each side of a cut that get adapters; None: all layers
    seed: int = 0
    # [[spec, n], ...]: the held-out texts (drawn as the validation draws them, with ``seed``)
    # that healing must not train on, so a healed perplexity is measured on unseen text
    held_out: list = field(default_factory=list)

    def check(self) -> None:
        for name in ("steps", "seq_len", "batch", "rank"):
            if getattr(self, name) < 1:
                raise DepthscopeError(f"--heal-{name.replace('_', '-')} must be at least 1")
        if self.window is not None and self.window < 0:
            raise DepthscopeError("--heal-window must be >= 0 (or all)")


def require_peft():
    """peft, or one clear line saying how to get it."""
    try:
        import peft  # optional: only healing needs it
    except ImportError:
        raise DepthscopeError(
            'healing needs peft; install it with `pip install "depthscope[eval]"` (or peft)'
        ) from None
    return peft


def heal_texts(settings: HealSettings) -> list[str]:
    """The texts of ``data`` that healing trains on (drawn again with the heal seed): all but the
    held-out texts the healed model is measured on. A passage of ``builtin:text`` can recur inside
    a longer one, which is not excluded; for a strict separation give ``--heal-data file:PATH``."""
    excluded = {
        e.text for spec, n in settings.held_out for e in load_examples(spec, n, seed=settings.seed)
    }
    return [
        e.text
        for e in load_examples(settings.data, None, seed=settings.seed)
        if e.text not in excluded
    ]


def heal_windows(lm: LoadedModel, settings: HealSettings) -> list[list[int]]:
    """Packed training windows of ``seq_len`` tokens from :func:`heal_texts`."""
    ids = [t for text in heal_texts(settings) for t in tokenize(lm.tokenizer, text)]
    size = settings.seq_len
    windows = [ids[i : i + size] for i in range(0, len(ids) - size + 1, size)]
    if not windows:
        raise DepthscopeError(
            f"{settings.data} holds less than one window of {size} tokens besides the held-out "
            "texts; pass more text with --heal-data file:PATH"
        )
    return windows


def adapted_layers(n_layers: int, removed: Sequence[int], window: int | None) -> list[int]:
    """Indices (in the pruned model) of the kept layers that get adapters."""
    kept = kept_layers(n_layers, removed)
    if window is None:
        return list(range(len(kept)))
    near = set()
    for layer in removed:
        for other in range(layer - window, layer + window + 1):
            if other in kept:
                near.add(kept.index(other))
    return sorted(near) or [min(len(kept) - 1, max(0, min(removed)))]


def heal(
    lm: LoadedModel,
    removed: Sequence[int],
    windows: list[list[int]],
    settings: HealSettings,
    progress: Progress,
) -> tuple[torch.nn.Module, list[float]]:
    """The pruned model with LoRA trained ``steps`` steps and merged in; the loss per step."""
    peft = require_peft()
    torch.manual_seed(settings.seed)
    model = pruned_copy(lm, removed)
    layers_path = lm.adapter.spec.layers
    chosen = adapted_layers(lm.n_layers, removed, settings.window)
    targets = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and name.startswith(f"{layers_path}.")
        and int(name[len(layers_path) + 1 :].split(".")[0]) in chosen
    ]
    config = peft.LoraConfig(
        r=settings.rank, lora_alpha=2 * settings.rank, lora_dropout=0.0, target_modules=targets
    )
    model.requires_grad_(False)
    wrapped = peft.get_peft_model(model, config)
    trainable = [p for p in wrapped.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=0.0)
    order = random.Random(settings.seed)
    losses = []
    wrapped.train()
    device = next(model.parameters()).device
    for _ in range(settings.steps):
        rows = [windows[order.randrange(len(windows))] for _ in range(settings.batch)]
        ids = torch.tensor(rows, device=device)
        loss = wrapped(input_ids=ids, labels=ids, use_cache=False).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(round(float(loss.detach()), 5))
        progress.advance(1)
    wrapped.eval()
    return wrapped.merge_and_unload(), losses


def healed_metrics(
    lm: LoadedModel,
    candidates: Sequence[tuple[int, ...]],
    datasets: Sequence[EvalData],
    settings: HealSettings,
    out: Path,
    progress: Progress,
) -> dict[tuple[int, ...], dict]:
    """``{removed set: {"tallies": {source: Tally}, "loss": [...]}}`` for every candidate, resuming
    from ``out/heal.json``; healing the unpruned model (``()``) is skipped: it has no cut."""
    require_peft()
    path = RunFolder(out).heal
    done = _read_state(path, settings)
    windows = heal_windows(lm, settings)
    results: dict[tuple[int, ...], dict] = {}
    todo = [c for c in candidates if c and str(list(c)) not in done]
    progress.start(f"healing {len(todo)} pruned models", len(todo) * settings.steps)
    for removed in candidates:
        if not removed:
            continue
        key = str(list(removed))
        if key not in done:
            model, losses = heal(lm, removed, windows, settings, progress)
            tallies = evaluate_naive(
                lm, [removed], datasets, make_model=lambda _lm, _r, model=model: model
            )[0]
            done[key] = {
                "loss": losses,
                "tallies": {s: asdict(t) for s, t in tallies.items()},
            }
            del model
            atomic_write_json(path, {"settings": asdict(settings), "healed": done})
            progress.stage(f"healed {len(done)} of {len(candidates) - 1}: loss {losses[-1]:.3f}")
        entry = done[key]
        results[removed] = {
            "loss": entry["loss"],
            "tallies": {s: _tally(t) for s, t in entry["tallies"].items()},
        }
    return results


def _tally(doc: dict) -> Tally:
    return Tally(
        nll=doc["nll"],
        tokens=doc["tokens"],
        correct=doc["correct"],
        examples=doc["examples"],
        per_sequence=[tuple(x) for x in doc["per_sequence"]],
    )


def save_healed(
    lm: LoadedModel,
    removed: Sequence[int],
    settings: HealSettings,
    folder: Path,
    progress: Progress,
) -> Path:
    """Heal ``removed`` again (the same seed gives the same weights) and save it as plain weights
    that ``transformers`` loads, with the tokenizer and a record of what was done."""
    model, losses = heal(lm, removed, heal_windows(lm, settings), settings, progress)
    healed = {**asdict(settings), "final_loss": losses[-1]}
    return write_pruned(lm, model, removed, folder, healed=healed)


def _read_state(path: Path, settings: HealSettings) -> dict:
    """Healed candidates of an earlier, interrupted run with the same settings."""
    state = read_json_object(path)
    if state is None or state.get("settings") != asdict(settings):
        return {}
    return dict(state.get("healed") or {})
