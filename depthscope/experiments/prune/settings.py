"""What `depthscope prune` is asked to do, checked before any model is loaded (no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass

from depthscope.core.errors import DepthscopeError

CRITERIA = (
    "future-effect",
    "current-effect",
    "future-then-current",
    "block-influence",
    "block-influence-iterative",
    "angular",
    "sleb",
)
DEFAULT_CRITERIA = ("future-effect", "future-then-current", "block-influence", "angular", "sleb")
EFFECT_ANALYSIS = {"future-effect": "future-effects", "current-effect": "current-effects"}
RANDOM = "random"


@dataclass
class PruneSettings:
    """What to rank, how far to prune, and on which data to calibrate and validate."""

    max_drop: int
    criteria: tuple[str, ...] = DEFAULT_CRITERIA
    text: str | None = "builtin:text"  # comma-separated data specs
    text_n: int = 160
    max_tokens: int = 256  # 160 texts of up to 256 tokens: 23 000 tokens on smollm2's tokenizer
    # comma-separated data specs; the default is the easiest level of a task both built-in models
    # solve (78 % and 68 % teacher-forced, docs/data.md), so accuracy can fall when layers go
    task: str | None = "builtin:arith-fewshot:2"
    task_n: int = 40
    calib: str = "builtin:arith-words"
    calib_n: int = 10
    random_seeds: int = 3
    seed: int = 0
    batch_size: int = 16
    run_dir: str | None = None
    heal: str | None = None  # "lora": fine-tune every pruned candidate briefly, measure again
    heal_steps: int = 50
    heal_data: str = "builtin:text"
    eval: str | None = None  # "lm-eval:TASK[,TASK]": lm-evaluation-harness tasks at k = K
    eval_include: str | None = None  # a folder of local task YAMLs in the harness's format
    eval_limit: int | None = None  # examples per task (None: all)

    def check(self) -> None:
        """Input errors that need no model (one line each)."""
        unknown = [c for c in self.criteria if c not in CRITERIA]
        if unknown:
            raise DepthscopeError(
                f"unknown criterion {', '.join(unknown)}; choose from {', '.join(CRITERIA)}"
            )
        if not self.criteria:
            raise DepthscopeError(f"give at least one criterion ({', '.join(CRITERIA)})")
        if self.max_drop < 1:
            raise DepthscopeError(f"--max-drop must be at least 1 (got {self.max_drop})")
        if not self.text and not self.task:
            raise DepthscopeError("nothing to validate on: give --text or --task (or both)")
        for name in ("text_n", "task_n", "calib_n", "max_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise DepthscopeError(f"--{name.replace('_', '-')} must be at least 1")
        if self.random_seeds < 0:
            raise DepthscopeError("--random-seeds must be >= 0")
        if self.heal not in (None, "lora"):
            raise DepthscopeError(f"--heal {self.heal!r}: the only healing is lora")
        if self.heal and self.heal_steps < 1:
            raise DepthscopeError("--heal-steps must be at least 1")

    def check_depth(self, n_layers: int) -> None:
        if self.max_drop >= n_layers:
            raise DepthscopeError(
                f"--max-drop {self.max_drop} must be smaller than the model's {n_layers} layers"
            )


def specs(value: str | None) -> list[str]:
    """Data specs given as one comma-separated string ("" or None: none)."""
    return [spec.strip() for spec in (value or "").split(",") if spec.strip()]
