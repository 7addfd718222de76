"""What a training run is, as plain data: its settings, the model sizes, the E11 and E12 recipes.

Importing this module costs no torch: ``depthscope scratch --help`` and ``finetune --help`` show
these defaults, and a setting the run refuses is answered before anything heavy loads. The loop
(:mod:`~depthscope.experiments.training.loop`), the models
(:mod:`~depthscope.experiments.training.models`) and the experiments' data
(:mod:`~depthscope.experiments.training.e11`, :mod:`~depthscope.experiments.training.e12`) use
them.
"""

from __future__ import annotations

from dataclasses import dataclass

from depthscope.core.errors import DepthscopeError
from depthscope.data.sources import DM_ARITH

LOSS_MODES = ("all", "answer")
SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation and bookkeeping settings of one run (all of them recorded in training.json)."""

    steps: int
    batch_size: int = 16
    seq_len: int = 256
    lr: float = 1e-3
    schedule: str = "cosine"
    warmup: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 0.25
    loss: str = "all"
    seed: int = 0
    eval_every: int = 0  # 0: evaluate only at the end
    checkpoint_every: int = 100
    log_every: int = 10

    def check(self) -> None:
        """One clear line for each impossible setting."""
        positive = ("steps", "batch_size", "seq_len", "checkpoint_every", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise DepthscopeError(f"{flag} must be at least 1 (got {getattr(self, name)})")
        if self.warmup < 0 or self.eval_every < 0:
            raise DepthscopeError("--warmup and --eval-every must be >= 0")
        if not self.lr > 0:
            raise DepthscopeError(f"--lr must be positive (got {self.lr})")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise DepthscopeError("--grad-clip and --weight-decay must be >= 0")
        if self.loss not in LOSS_MODES:
            raise DepthscopeError(f"--loss must be one of {', '.join(LOSS_MODES)}")
        if self.schedule not in SCHEDULES:
            raise DepthscopeError(f"schedule must be one of {', '.join(SCHEDULES)}")


ARCHS = ("transformer", "shared")


@dataclass(frozen=True)
class ModelSize:
    """Depth, width and, for ``shared``, the grouping and σ-MoE sizes (0 = derived)."""

    layers: int = 8
    d_model: int = 128
    heads: int = 4
    group_size: int = 2
    n_experts: int = 0
    expert_size: int = 64
    experts_per_token: int = 0
    max_len: int = 2048

    def check(self, arch: str) -> None:
        if arch not in ARCHS:
            raise DepthscopeError(f"--arch must be one of {', '.join(ARCHS)} (got {arch!r})")
        if self.layers < 1 or self.d_model < 1 or self.heads < 1:
            raise DepthscopeError("--layers, --d-model and --heads must be at least 1")
        if self.d_model % self.heads or (self.d_model // self.heads) % 2:
            raise DepthscopeError(
                f"--d-model {self.d_model} must split into {self.heads} heads of even size; "
                f"change --heads or --d-model"
            )
        if arch == "shared" and self.layers % self.group_size:
            raise DepthscopeError(
                f"--layers {self.layers} must be a multiple of --group-size {self.group_size}"
            )

    def experts(self) -> tuple[int, int]:
        """``(n_experts, k)``: given values, or parameter-matched to the dense Transformer."""
        d, size = self.d_model, self.expert_size
        k = self.experts_per_token or max(1, (2 * d) // size)
        if self.n_experts:
            return self.n_experts, min(k, self.n_experts)
        repeats = self.layers // self.group_size
        dense_per_block = repeats * 12 * d * d  # a dense layer has 4d² attention + 8d² FFN weights
        n = max(k, round((dense_per_block - 4 * d * d) / (2 * d * size)))
        return n, k


# ---------------------------------------------------------------- E11: a small model from scratch

# E11's hyper-parameters scaled to a laptop (paper: AdamW lr 2.5e-4, wd 0.01, warmup 4000, cosine
# to 0.1·lr, 100k steps, batch 64 × 1024 tokens, grad clip 0.25); see docs/training.md.
# A step of the 0.93M-parameter default takes 0.33-0.39 s on one thread (measured; the slower with
# two runs side by side), so 3000 steps take 17-20 minutes; docs/training.md has the measured runs.
E11_DEFAULTS = TrainSettings(
    steps=3000,
    batch_size=16,
    seq_len=128,
    lr=3e-3,
    schedule="cosine",
    warmup=100,
    min_lr_ratio=0.1,
    weight_decay=0.01,
    grad_clip=0.25,
    loss="all",
    checkpoint_every=500,
    log_every=50,
)
E11_SIZE = ModelSize(layers=8, d_model=96, heads=4)
E11_SCALE = "small"
E11_EVAL_EXAMPLES = 100  # per module, as the paper reports accuracy per DM-math file


# ---------------------------------------------------------------- E12: fine-tuning a causal LM

E12_DATA = DM_ARITH
E12_POOL = 2000
E12_EVAL_EXAMPLES = 16

# E12's hyper-parameters scaled to a laptop (paper: AdamW lr 2e-5 constant after 100 warmup steps,
# wd 0, grad clip 1, 10k steps, batch 64 × 512 tokens); see docs/training.md.
E12_DEFAULTS = TrainSettings(
    steps=200,
    batch_size=4,
    seq_len=96,
    lr=1e-4,
    schedule="constant",
    warmup=10,
    min_lr_ratio=1.0,
    weight_decay=0.0,
    grad_clip=1.0,
    loss="all",
    checkpoint_every=50,
    log_every=10,
)
