"""Presets: named sets of per-analysis data, prompt counts and settings, declared by the cards.

``--preset paper`` reproduces the paper's setup (Csordás, Manning & Potts 2025, as run by the
authors' code): the datasets it used, through ``hf:`` when the Hugging Face hub is reachable, and
otherwise the closest built-in source (said in one line); its prompt counts; its settings. What
the user passes explicitly (``--data``, ``-n``, ``--set``) always wins over a preset.
docs/paper-fidelity.md maps every default to the paper's value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from depthscope.analyses.card import Preset
from depthscope.analyses.catalog import cards
from depthscope.core.errors import DepthscopeError
from depthscope.core.hub_access import hub_reachable
from depthscope.data.sources import DEFAULT_SOURCE


def preset_names() -> list[str]:
    """Every preset some registered card declares choices for."""
    return sorted({name for card in cards() for name in card.presets})


def preset_table(name: str) -> dict[str, Preset]:
    """``{analysis: its choices}`` under preset ``name``, from the cards' declarations."""
    table = {card.name: card.presets[name] for card in cards() if name in card.presets}
    if not table:
        raise DepthscopeError(
            f"unknown preset {name!r}; choose from {', '.join(preset_names()) or 'none'}"
        )
    return table


def hub_datasets() -> bool:
    """Whether ``datasets`` is installed and the Hugging Face hub is reachable
    (:func:`depthscope.core.hub_access.hub_reachable`, decided in seconds)."""
    try:
        import datasets  # noqa: F401
    except ImportError:
        return False
    return hub_reachable()


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
    hub: Callable[[], bool] = hub_datasets,
    settings_of: Callable[[str], set[str]] | None = None,
) -> dict[str, Choice]:
    """Per analysis: the preset's data/n/settings, with the user's explicit ones on top."""
    table = preset_table(name)
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
                    settings["baseline_data"] = DEFAULT_SOURCE
                notice = (
                    f"{analysis}: the hub is unreachable (or `datasets` is missing), so "
                    f"{', '.join(needs_hub)} -> {source if source != preset.data else DEFAULT_SOURCE}, "
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
