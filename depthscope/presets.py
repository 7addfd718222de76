"""Presets: named sets of per-analysis data, prompt counts and settings.

``--preset paper`` reproduces the paper's setup (Csordás, Manning & Potts 2025, as run by the
authors' code): the datasets it used, through ``hf:`` when the Hugging Face hub is reachable, and
otherwise the closest built-in source (said in one line); its prompt counts; its settings. What
the user passes explicitly (``--data``, ``-n``, ``--set``) always wins over a preset.
docs/paper-fidelity.md maps every default to the paper's value.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from depthscope.errors import DepthscopeError


@dataclass(frozen=True)
class AnalysisPreset:
    """Data, count and settings of one analysis under a preset."""

    data: str
    n: int | None
    settings: dict[str, str] = field(default_factory=dict)
    offline: str | None = None  # the built-in source used when ``data`` needs the hub
    why: str = ""  # where the values come from


GSM8K, WORDS = "hf:gsm8k", "builtin:arith-words"

PAPER: dict[str, AnalysisPreset] = {
    "contributions": AnalysisPreset(
        GSM8K, 20, {"eps": "1e-6"}, WORDS, "§3.1: first 20 GSM8K test prompts"
    ),
    "current-effects": AnalysisPreset(
        GSM8K, 20, {"front": "1", "aggregate": "max"}, WORDS, "§3.2: first 20 GSM8K prompts"
    ),
    "future-effects": AnalysisPreset(
        GSM8K,
        10,
        {
            "front": "1",
            "aggregate": "max",
            "n_splits": "4",
            "split_stride": "8",
            "split_margin": "4",
        },
        WORDS,
        "§3.2: first 10 GSM8K prompts, 4 split points at multiples of 8",
    ),
    "logit-lens": AnalysisPreset(
        GSM8K,
        20,
        {"k": "5", "kl_direction": "lens||final", "weighting": "prompt"},
        WORDS,
        "§3.3: first 20 GSM8K prompts, KL(lens ‖ final), top-5",
    ),
    "local-effects": AnalysisPreset(
        GSM8K, 10, {"front": "1", "aggregate": "max"}, WORDS, "§3.4: first 10 GSM8K prompts"
    ),
    "igrad": AnalysisPreset(
        "builtin:paper",
        None,
        {"steps": "256", "block": "16", "rule": "riemann"},
        None,
        "§3.5: the two hand-written prompts, 256-step left Riemann sum",
    ),
    "erasure": AnalysisPreset(
        "builtin:paper",
        None,
        {"baseline_data": GSM8K, "baseline_n": "10"},
        None,
        "§3.5: the two prompts, baseline = mean over the first 10 GSM8K prompts",
    ),
    "depth-score": AnalysisPreset(
        "hf:mquake",
        20,
        {"aggregate": "max"},  # split rule by dataset: MQuAKE at the answer start, MATH inside
        "builtin:hops",
        "§3.6: 20 MQuAKE examples per hop count (run --data hf:math for the MATH levels)",
    ),
}

PRESETS: dict[str, dict[str, AnalysisPreset]] = {"paper": PAPER}


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub answers and `datasets` is installed (decided in seconds)."""
    try:
        import datasets  # noqa: F401
    except ImportError:
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Choice:
    """What a preset decided for one analysis, after the user's explicit options."""

    data: str
    n: int | None
    settings: dict[str, str]
    notice: str = ""


def apply_preset(
    name: str,
    analyses: list[str],
    *,
    data: str | None,
    n: int | None,
    overrides: dict[str, str],
    hub: Callable[[], bool] = hub_reachable,
    settings_of: Callable[[str], set[str]] | None = None,
) -> dict[str, Choice]:
    """Per analysis: the preset's data/n/settings, with the user's explicit ones on top."""
    table = PRESETS.get(name)
    if table is None:
        raise DepthscopeError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    online: bool | None = None
    choices = {}
    for analysis in analyses:
        preset = table.get(analysis)
        if preset is None:
            continue
        source, notice = preset.data, ""
        needs_hub = [
            s for s in (source, preset.settings.get("baseline_data", "")) if s.startswith("hf:")
        ]
        settings = dict(preset.settings)
        if needs_hub:
            online = hub() if online is None else online
            if not online:
                if source.startswith("hf:") and preset.offline:
                    source = preset.offline
                if settings.get("baseline_data", "").startswith("hf:"):
                    settings["baseline_data"] = WORDS
                notice = (
                    f"{analysis}: the hub is unreachable (or `datasets` is missing), so "
                    f"{', '.join(needs_hub)} -> {source if source != preset.data else WORDS}, "
                    "the closest built-in source"
                )
        if settings_of is not None:
            settings = {k: v for k, v in settings.items() if k in settings_of(analysis)}
        explicit = {
            key.rpartition(".")[2]
            for key in overrides
            if "." not in key or key.rpartition(".")[0] == analysis
        }
        settings = {f"{analysis}.{k}": v for k, v in settings.items() if k not in explicit}
        choices[analysis] = Choice(
            data=data or source,
            n=n if n is not None else preset.n,
            settings=settings,
            notice=notice if data is None else "",
        )
    return choices
