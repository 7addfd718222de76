"""An analysis's settings from what a user wrote: ``--set key=value`` text or Python keywords.

:func:`build_settings` is the one place that turns user values into an analysis's settings
dataclass, for the command line, the Python API and presets alike: text is converted to each
field's type (``"layer,mlp"`` for a tuple, ``"yes"`` for a bool), a key the settings lack or an
impossible value is one clear line. :func:`split_overrides` routes a run's ``--set`` items to the
analyses they belong to.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

from depthscope.analyses.base import Analysis
from depthscope.analyses.catalog import analysis_class
from depthscope.core.errors import DepthscopeError


def settings_dict(settings: object) -> dict:
    return dataclasses.asdict(settings)


def setting_names(cls: type[Analysis]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls.Settings)}


def build_settings(
    cls: type[Analysis], values: Mapping[str, object], *, vocab_size: int | None = None
) -> object:
    """``cls.Settings`` from user values: text is converted to each field's type, other values are
    taken as given; unknown keys and values the settings refuse raise one clear line, and so do
    settings that do not fit a model with ``vocab_size`` tokens (e.g. a top-k above it)."""
    fields = setting_names(cls)
    unknown = sorted(set(values) - fields)
    if unknown:
        raise DepthscopeError(
            f"{cls.name} has no setting {', '.join(unknown)}; valid: {', '.join(sorted(fields))}"
        )
    defaults = cls.Settings()
    converted = {
        key: _convert(value, type(getattr(defaults, key)), f"{cls.name}.{key}")
        if isinstance(value, str)
        else value
        for key, value in values.items()
    }
    try:
        settings = cls.Settings(**converted)
        if vocab_size is not None and hasattr(settings, "check_model"):
            settings.check_model(vocab_size)
    except (TypeError, ValueError) as exc:
        raise DepthscopeError(f"bad setting for {cls.name}: {exc}") from None
    return settings


def split_overrides(names: list[str], overrides: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``--set`` items per analysis: ``analysis.key=value`` for one, ``key=value`` for the one that has it.

    An unqualified key that several requested analyses share is refused (naming them), so a setting
    never changes more than the user meant; an unknown key or analysis is refused too.
    """
    per: dict[str, dict[str, str]] = {name: {} for name in names}
    fields = {n: setting_names(analysis_class(n)) for n in names}
    for raw_key, value in overrides.items():
        prefix, dot, key = raw_key.rpartition(".")
        if dot:
            if prefix not in per:
                raise DepthscopeError(
                    f"--set {raw_key}: {prefix!r} is not among the analyses of this run "
                    f"({', '.join(names)})"
                )
            if key not in fields[prefix]:
                valid = ", ".join(sorted(fields[prefix])) or "none"
                raise DepthscopeError(f"{prefix} has no setting {key!r}; valid: {valid}")
            per[prefix][key] = value
            continue
        owners = [n for n in names if key in fields[n]]
        if not owners:
            valid = sorted({f"{n}.{k}" for n in names for k in fields[n]})
            raise DepthscopeError(
                f"unknown setting {key!r} for {', '.join(names)}; valid: {', '.join(valid)}"
            )
        if len(owners) > 1:
            raise DepthscopeError(
                f"--set {key}={value} is ambiguous: {' and '.join(owners)} both have {key!r}; "
                f"write --set {owners[0]}.{key}={value} (one analysis at a time)"
            )
        per[owners[0]][key] = value
    return per


def _convert(raw: str, kind: type, key: str) -> object:
    converters: dict[type, Callable[[str], object]] = {
        bool: _boolean,
        int: int,
        float: float,
        str: str,
        tuple: comma_list,
    }
    try:
        value = converters.get(kind, str)(raw)
    except ValueError:
        raise DepthscopeError(f"setting {key}={raw!r} is not a valid {kind.__name__}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise DepthscopeError(f"setting {key}={raw!r} must be a finite number")
    return value


def comma_list(text: str) -> tuple[str, ...]:
    """A tuple setting written as text: ``"layer,mlp"`` → ``("layer", "mlp")``."""
    return tuple(item for item in text.split(",") if item)


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(text)
