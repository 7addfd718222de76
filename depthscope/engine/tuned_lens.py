"""A tuned lens: one learned affine translator per residual boundary, read out by the model's head.

Belrose et al. 2023 ("Eliciting Latent Predictions from Transformers with the Tuned Lens") replace
the logit lens's ``unembed(norm(h_b))`` by ``unembed(norm(h_b + W_b h_b + c_b))``, with ``W_b``
and ``c_b`` trained so that the readout of boundary ``b`` matches the model's final distribution.
``W_b = 0, c_b = 0`` is the logit lens exactly. The last boundary (the model's output) has no
translator.

Two file layouts are read:

- depthscope's: ``lens.json`` (what the lens is for, how it was trained, its held-out KL per
  boundary) and ``lens.safetensors`` (``weight [L, d, d]``, ``bias [L, d]``);
- the tuned-lens project's: ``config.json`` (``d_model``, ``num_hidden_layers``, ``bias``) and
  ``params.pt`` (``"{b}.weight"``, ``"{b}.bias"`` per boundary), read with
  ``torch.load(weights_only=True)`` so the file cannot execute code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from depthscope.core.atomic_files import atomic_write_json
from depthscope.core.errors import DepthscopeError
from depthscope.core.run_folder import LENS_RECORD, LENS_TENSORS, RunFolder

FORMAT = "depthscope-tuned-lens/1"
PEER_CONFIG, PEER_PARAMS = "config.json", "params.pt"  # the tuned-lens project's layout


@dataclass
class TunedLens:
    """Translators ``weight [L, d, d]`` and ``bias [L, d]`` for boundaries ``0..L-1``."""

    weight: torch.Tensor
    bias: torch.Tensor
    record: dict = field(default_factory=dict)

    @classmethod
    def identity(cls, n_layers: int, d_model: int, dtype: torch.dtype = torch.float32) -> TunedLens:
        """The logit lens as a tuned lens (every translator zero)."""
        return cls(
            torch.zeros(n_layers, d_model, d_model, dtype=dtype),
            torch.zeros(n_layers, d_model, dtype=dtype),
        )

    @property
    def n_layers(self) -> int:
        return int(self.weight.shape[0])

    @property
    def d_model(self) -> int:
        return int(self.weight.shape[-1])

    def translate(self, block: torch.Tensor, first: int) -> torch.Tensor:
        """Residuals ``[layers, ..., d]`` of boundaries ``first, first+1, ... < L`` through their
        translators: ``h + W h + c``."""
        count = block.shape[0]
        weight = self.weight[first : first + count].to(block.device, block.dtype)
        bias = self.bias[first : first + count].to(block.device, block.dtype)
        flat = block.reshape(count, -1, block.shape[-1])
        moved = torch.baddbmm(flat + bias[:, None, :], flat, weight.transpose(1, 2))
        return moved.reshape(block.shape)

    def check_fits(self, n_layers: int, d_model: int, model: str, where: str) -> None:
        """Refuse a lens made for another shape of model, in one line."""
        if (self.n_layers, self.d_model) != (n_layers, d_model):
            raise DepthscopeError(
                f"the tuned lens in {where} has {self.n_layers} translators of width "
                f"{self.d_model}, but {model} has {n_layers} layers of width {d_model}; train a "
                f"lens for this model with `depthscope lens train {model} --out DIR`"
            )

    def fingerprint(self) -> str:
        """A short hash of the translators (a result computed with another lens is recomputed)."""
        digest = hashlib.sha256()
        for tensor in (self.weight, self.bias):
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()[:16]

    def save(self, folder: Path, record: dict) -> None:
        """``lens.safetensors`` then ``lens.json`` (data only)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = RunFolder(folder)
        tmp = folder / f".{LENS_TENSORS}.tmp"
        tensors = {
            "weight": self.weight.detach().contiguous(),
            "bias": self.bias.detach().contiguous(),
        }
        save_file(tensors, str(tmp))
        tmp.replace(files.lens_tensors)
        atomic_write_json(files.lens_record, {"format": FORMAT, **record})
        self.record = {"format": FORMAT, **record}


def load_tuned_lens(folder: str | Path) -> TunedLens:
    """A lens folder in depthscope's layout or the tuned-lens project's; one clear line otherwise."""
    folder = Path(folder).expanduser()
    files = RunFolder(folder)
    if files.lens_record.is_file():
        try:
            record = json.loads(files.lens_record.read_text())
            tensors = load_file(str(files.lens_tensors))
            lens = TunedLens(tensors["weight"].float(), tensors["bias"].float(), record)
        except Exception as exc:  # safetensors and json raise their own error types
            raise DepthscopeError(
                f"the tuned lens in {folder} is damaged ({type(exc).__name__}); train it again "
                f"with `depthscope lens train MODEL --out {folder}`"
            ) from None
        return lens
    if (folder / PEER_CONFIG).is_file() and (folder / PEER_PARAMS).is_file():
        return _load_peer(folder)
    raise DepthscopeError(
        f"{folder} holds no tuned lens (neither {LENS_RECORD} + {LENS_TENSORS} nor the tuned-lens "
        f"project's {PEER_CONFIG} + {PEER_PARAMS}); train one with `depthscope lens train MODEL "
        f"--out DIR`"
    )


def _load_peer(folder: Path) -> TunedLens:
    """The tuned-lens project's files: ``config.json`` and a state dict ``params.pt``."""
    try:
        config = json.loads((folder / PEER_CONFIG).read_text())
        state = torch.load(folder / PEER_PARAMS, map_location="cpu", weights_only=True)
        n_layers, d_model = int(config["num_hidden_layers"]), int(config["d_model"])
        weight = torch.stack([state[f"{b}.weight"].float() for b in range(n_layers)])
        bias = torch.stack(
            [
                state[f"{b}.bias"].float() if f"{b}.bias" in state else torch.zeros(d_model)
                for b in range(n_layers)
            ]
        )
    except Exception as exc:  # json, pickle-free torch.load and missing keys alike
        raise DepthscopeError(
            f"the tuned-lens files in {folder} could not be read ({type(exc).__name__}: {exc}); "
            f"pass a folder written by the tuned-lens project or by `depthscope lens train`"
        ) from None
    if weight.shape[1:] != (d_model, d_model):
        raise DepthscopeError(
            f"the tuned-lens files in {folder} hold translators of shape {tuple(weight.shape[1:])}, "
            f"not ({d_model}, {d_model}) as its config.json says; the files do not belong together"
        )
    record = {"format": "tuned-lens", "source": str(folder), "config": config}
    return TunedLens(weight, bias, record)
