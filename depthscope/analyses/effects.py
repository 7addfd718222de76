"""Layer-skipping effects on later layers and on the output: current (E3) and future (E4) tokens.

Paper §3.2, Fig. 3 and 17. For every layer ``s``, the layer is skipped (``part="layer"``: its output
:= its input) or one of its sublayers is zeroed (``"attention"``/``"mlp"``) at the intervened
positions, everything after it is recomputed, and two things are measured at the measured positions:

- ``effect[s, l] = max_p ‖c̄_l[p] − c_l[p]‖ / max(‖c_l[p]‖, 1e-6)``: the relative change of every later
  layer's contribution (:func:`~depthscope.engine.stats.relative_change`);
- ``output_change[s] = max_p ‖P̄[p] − P[p]‖₂``: the change of the output distribution
  (:func:`~depthscope.engine.outputs.output_change`).

Current effects intervene on ``[front, T)`` and measure everywhere; future effects intervene on
``[front, t)`` and measure on ``[t, T)`` for sampled split points ``t``. Maxima are taken over
positions and split points, then over prompts (``aggregate``; the other aggregate is stored too).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from depthscope.analyses.base import Analysis, PromptBatch, PromptView, Tally
from depthscope.analyses.card import (
    Finding,
    PaperRef,
    Preset,
    Profile,
    VerdictRule,
    data_key,
    per_prompt_key,
    per_split_key,
)
from depthscope.analyses.splits import SplitSettings, splits_for
from depthscope.core.registry import register
from depthscope.core.result import Result
from depthscope.data.sources import DEFAULT_SOURCE, GSM8K
from depthscope.engine.interventions import PARTS, Knockout
from depthscope.engine.state import state_type
from depthscope.engine.stats import Max, Mean, finite_mean, first_vs_second_half, relative_change
from depthscope.engine.sweep import Sweep, Window, run_joint_sweep, run_sweep, sweep_cost
from depthscope.figures.layers import draw_effects, effect_parts
from depthscope.verdict import bootstrap, rules
from depthscope.verdict.sensitivity import sweep
from depthscope.verdict.words import layer_ranges, rel

AGGREGATES = ("max", "mean")


def skip_sweep(part: str) -> Sweep:
    """Skip layer ``s`` (or zero one sublayer) and measure what changes downstream (paper §3.2)."""
    return Sweep(
        intervention=lambda rows, _trace, _prompt: Knockout(rows.layers, rows.positions, part),
        contribution="after-edit",  # a skipped layer contributes 0 where it is skipped
        layer_measure=relative_change,  # ‖c̄_l − c_l‖ / ‖c_l‖ for every later layer l
        output=True,  # ‖P̄ − P‖₂ of the output distribution
    )


@dataclass
class EffectSettings(SplitSettings):
    """Conventions of the paper's skip experiments (paper values by default)."""

    parts: tuple = field(
        default=PARTS, metadata={"help": "what is removed: layer (skip), attention, mlp (zeroed)"}
    )
    aggregate: str = field(
        default="max", metadata={"help": "over prompts: max (paper) or mean; both are stored"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = set(self.parts) - set(PARTS)
        if unknown:
            raise ValueError(f"parts must be among {PARTS}, got {sorted(unknown)}")
        if not self.parts:
            raise ValueError(f"parts must name at least one of {PARTS}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")


@state_type
@dataclass
class Aggregates:
    """Running max and mean over prompts of one quantity."""

    max: Max = field(default_factory=Max)
    mean: Mean = field(default_factory=Mean)

    def add(self, value) -> None:
        self.max.add(value)
        self.mean.add(value)

    def value(self, aggregate: str):
        return (self.max if aggregate == "max" else self.mean).value


@state_type
@dataclass
class PartState:
    effect: Aggregates = field(default_factory=Aggregates)
    output: Aggregates = field(default_factory=Aggregates)
    # each prompt's mean over its measured positions (and split points), averaged over prompts
    effect_position: Mean = field(default_factory=Mean)
    output_position: Mean = field(default_factory=Mean)
    per_prompt: list = field(default_factory=list)  # {"prompt", "effect", "output_change", ...}


@state_type
@dataclass
class EffectsState:
    parts: dict = field(default_factory=dict)  # part -> PartState
    split_points: dict = field(default_factory=dict)  # prompt id -> split points
    tally: Tally = field(default_factory=Tally)


def later_layer_effect(effect) -> np.ndarray:
    """``e_s = mean_{l>s} R[s, l]``: how much skipping ``s`` changes later layers (last: NaN)."""
    effect = np.asarray(effect, dtype=float)
    return np.array([finite_mean(effect[s, s + 1 :]) for s in range(effect.shape[0])])


def future_use(result: Result, n_layers: int | None) -> Finding | None:
    """Layers whose future output change reaches a fraction of the first-half median.

    On the mean over prompts of the per-prompt output changes, resampled for the intervals;
    results saved without per-prompt data use the saved aggregate, without intervals.
    """
    profile = next(p for p in FutureEffects.profiles if p.name == "future-output-change")
    output_change, samples, _ = profile.sampled(result.data)
    entries = samples is not None
    use = rules.future_use(output_change)
    if use is None:
        return None
    count_interval = deepest_interval = None
    if entries:
        count_interval = bootstrap.interval_over(
            output_change, samples, lambda rows: rules.future_use_rows(rows)[0]
        )
        deepest_interval = bootstrap.interval_over(
            output_change, samples, lambda rows: rules.future_use_rows(rows)[1]
        )
    n = n_layers or len(output_change)
    half = n // 2
    second = [layer for layer in use.layers if layer >= half]
    deepest = max(use.layers) if use.layers else None
    count = f"{len(use.layers)}" + (
        f" [{count_interval.low:.0f}, {count_interval.high:.0f}]"
        if count_interval and count_interval.low is not None
        else ""
    )
    deepest_text = f"layer {deepest_interval.text()}" if deepest_interval else f"layer {deepest}"
    sentence = (
        f"{count} of {n} layers change future predictions by at least "
        f"{rules.FUTURE_FRACTION:g}× the first-half median ({use.reference:.3g}) of the mean "
        f"output change: {layer_ranges(use.layers)}; {len(second)} of the {n - half} "
        f"second-half layers do"
    )
    if deepest is not None:
        sentence += f"; the deepest is {deepest_text} (relative depth {rel(deepest, n):.2f})"
    return Finding(
        key="future_use",
        title="Layers used by future tokens",
        headline=f"{count} of {n}; deepest {deepest_text}"
        if deepest is not None
        else f"{count} of {n}",
        sentence=sentence + ".",
        layer=deepest,
        relative_depth=rel(deepest, n),
        details={
            "count": len(use.layers),
            "layers": use.layers,
            "second_half_count": len(second),
            "fraction": round(len(use.layers) / n, 3),
            "reference": use.reference,
            "threshold": use.threshold,
            "count_interval": count_interval.as_json() if count_interval else None,
            "deepest_interval": deepest_interval.as_json() if deepest_interval else None,
            "aggregate": "mean over prompts" if entries else "as saved",
            "sensitivity": _future_use_sweeps(output_change),
        },
        figures=[f"{result.analysis}_output_change_layer"],
        analyses=[result.analysis],
    )


def _future_use_sweeps(output_change: np.ndarray) -> list[dict]:
    def count(fraction: float) -> int | None:
        use = rules.future_use(output_change, fraction)
        return None if use is None else len(use.layers)

    def deepest(fraction: float) -> int | None:
        use = rules.future_use(output_change, fraction)
        return None if use is None or not use.layers else max(use.layers)

    return [
        sweep("future_fraction", rules.FUTURE_FRACTION, count, "layers used by future tokens"),
        sweep("future_fraction", rules.FUTURE_FRACTION, deepest, "deepest layer used"),
    ]


def current_use(result: Result, n_layers: int | None) -> Finding | None:
    """Do second-half layers matter for the current token? The ratio of the halves' median
    current output change (mean over positions), with its interval over resampled prompts, read
    as an equivalence test: "as much" only when the interval lies within the margin (paper
    Fig. 17a finds they do; a drop would contradict it)."""
    profile = next(p for p in CurrentEffects.profiles if p.preferred_in(result.data))
    if result.data.get("per_prompt"):
        values, weights = profile.per_prompt(result.data)
        interval = bootstrap.bootstrap(values, weights, rules.half_ratio)
    else:
        ratio = float(rules.half_ratio(profile.read(result.data))[0])
        interval = bootstrap.Interval(ratio if np.isfinite(ratio) else None, None, None, 0.0, 0)
    if interval.value is None:
        return None
    margin = rules.CURRENT_MARGIN
    low, high = interval.low, interval.high
    if low is None:
        outcome = "no interval (results saved without per-prompt data)"
    elif 1 / margin <= low and high <= margin:
        outcome = (
            "as much as first-half ones"
            + (" (slightly less)" if high < 1 else " (slightly more)" if low > 1 else "")
            + f": the interval lies within the ±{margin - 1:.0%} equivalence margin"
        )
    elif high < 1:
        outcome = "less than first-half ones"
    elif low > 1:
        outcome = "more than first-half ones"
    else:
        outcome = (
            f"inconclusive at {result.n_prompts} prompts: neither a difference nor equivalence "
            f"within ±{margin - 1:.0%}"
        )
    aggregate = "max" if profile.replaced_by else "mean"  # the max: runs saved before means
    sentence = (
        f"Second-half layers matter for the current token {outcome}: median output change of "
        f"the second over the first half, ratio {interval.text(2)} (each prompt's {aggregate} "
        "over positions)."
    )
    return Finding(
        key="current_use",
        title="Current token, second half",
        headline=f"ratio {interval.text(2)}: {outcome.split(':')[0]}",
        sentence=sentence,
        details={
            "ratio": interval.as_json(),
            "margin": [round(1 / margin, 4), margin],
            "outcome": outcome,
            "profile": profile.name,
        },
        figures=[profile.figure],
        analyses=[result.analysis],
    )


class _EffectsBase(Analysis):
    Settings = EffectSettings
    State = EffectsState
    in_default_run = True
    future: bool
    # `parts` only adds attention/MLP variants next to the layer's: the profiles stay comparable
    settings_not_compared = frozenset({"parts"})
    captions = {
        "effect": "Row = layer skipped, column = later layer; colour = how much that later layer's "
        "contribution changed (1 = as large as the contribution itself). Bright cells right of the "
        "diagonal mean later computation depends on the skipped layer.",
        "output_change": "How much the output distribution changes (L2 distance of probabilities) "
        "when each layer is skipped; low bars mark layers the prediction barely needs.",
        "per_prompt": "The same map for single prompts (no max over prompts), to tell a "
        "consistent pattern from one prompt's outlier.",
    }

    def window(self, length: int, prompt_id: int) -> Window:
        if not self.future:
            return Window((None,), self.settings.front)
        splits = splits_for(self.settings, length, seed=self.options.seed, prompt_id=prompt_id)
        return Window(tuple(splits), self.settings.front)

    def prompt_cost(self, length: int, prompt_id: int) -> float:
        sweep = sweep_cost(length, self.window(length, prompt_id), self.lm.adapter, output=True)
        return len(self.settings.parts) * sweep

    def unusable(self, prompt: PromptView) -> str | None:
        if self.future and not self.window(prompt.length, prompt.prompt_id).splits:
            return (
                f"shorter than {self.settings.split_stride + self.settings.split_margin + 1} "
                "tokens (no split point)"
            )
        if prompt.length <= self.settings.front:
            return f"not longer than front={self.settings.front} (nothing to intervene on)"
        return None

    def new_state(self) -> EffectsState:
        return EffectsState(parts={part: PartState() for part in self.settings.parts})

    def update(self, state: EffectsState, batch: PromptBatch) -> None:
        trace = batch.trace
        for prompt in self.prompts(state, batch):
            window = self.window(prompt.length, prompt.prompt_id)
            state.split_points[prompt.prompt_id] = list(window.splits)
            parts = self.settings.parts
            self.options.progress.start(
                f"{self.name} prompt {prompt.prompt_id}", trace.n_layers * len(parts)
            )
            for part in parts:
                sweep = self._sweep(batch, prompt, window, part)
                stats = state.parts[part]
                stats.effect.add(sweep.effect)
                stats.output.add(sweep.output)
                stats.effect_position.add(sweep.effect_mean)
                stats.output_position.add(sweep.output_mean)
                entry = {
                    "prompt": prompt.prompt_id,
                    "effect": sweep.effect.cpu(),
                    "output_change": sweep.output.cpu(),
                    "effect_position_mean": sweep.effect_mean.cpu(),
                    "output_change_position_mean": sweep.output_mean.cpu(),
                }
                if self.future and part == "layer" and sweep.effect_splits is not None:
                    # each split point's own maps: the verdict resamples split points too
                    entry["effect_splits"] = sweep.effect_splits.cpu()
                    entry["output_change_splits"] = sweep.output_splits.cpu()
                stats.per_prompt.append(entry)

    def _sweep(self, batch: PromptBatch, prompt: PromptView, window: Window, part: str):
        """This prompt's sweep of ``part``: left by the partner analysis (current for future
        effects, future for current) if it ran first, computed jointly with the partner's when
        the partner still needs it, else on its own."""
        shared = batch.shared
        run = dict(batch_size=self.options.batches, progress=self.options.progress)
        if shared is not None:
            found = shared.take(("skip-sweep", self.future, prompt.prompt_id, part))
            if found is not None:
                self.options.progress.advance(batch.trace.n_layers)
                return found
            partner = self._partner(shared, prompt, part)
            if partner is not None:
                future = window if self.future else partner.window(prompt.length, prompt.prompt_id)
                joint = run_joint_sweep(
                    self.lm.adapter,
                    batch.trace,
                    prompt.row,
                    prompt.length,
                    future.splits,
                    self.settings.front,
                    skip_sweep(part),
                    **run,
                )
                if joint is not None:
                    current, future_sweep = joint
                    left = current if self.future else future_sweep
                    shared.put(("skip-sweep", partner.future, prompt.prompt_id, part), left)
                    return future_sweep if self.future else current
        return run_sweep(
            self.lm.adapter, batch.trace, prompt.row, prompt.length, window, skip_sweep(part), **run
        )

    def _partner(self, shared, prompt: PromptView, part: str) -> _EffectsBase | None:
        """The other skip-effects analysis that will still fold in this prompt, on the same model,
        with the same protected front and this part among its parts."""
        for other in shared.partners(prompt.prompt_id, besides=self):
            if (
                isinstance(other, _EffectsBase)
                and other.future != self.future
                and other.lm is self.lm
                and other.settings.front == self.settings.front
                and part in other.settings.parts
            ):
                return other
        return None

    def finish(self, state: EffectsState) -> dict:
        self.require_some(state, "use longer prompts or a smaller front")
        chosen = self.settings.aggregate
        data: dict = {}
        for part, stats in state.parts.items():
            entry = {
                "effect": stats.effect.value(chosen),
                "output_change": stats.output.value(chosen),
                "effect_max": stats.effect.value("max"),
                "effect_mean": stats.effect.value("mean"),
                "output_change_max": stats.output.value("max"),
                "output_change_mean": stats.output.value("mean"),
                "per_prompt": sorted(stats.per_prompt, key=lambda e: e["prompt"]),
            }
            # absent from a state checkpointed before the position means existed
            if stats.effect_position.count == stats.effect.mean.count:
                entry["effect_position_mean"] = stats.effect_position.value
                entry["output_change_position_mean"] = stats.output_position.value
            if part == "layer":
                data.update(entry)
            else:
                data[part] = entry
        data["split_points"] = dict(sorted(state.split_points.items()))
        data["skipped_prompts"] = state.tally.skipped_ids
        return data

    @classmethod
    def draw(cls, result: Result):
        return draw_effects(result)

    @classmethod
    def numbers(cls, result: Result) -> list[str]:
        """First- vs second-half importance for later layers and for the output, per part."""
        lines = []
        for part, block in effect_parts(result.data):
            effect = np.asarray(block["effect"], dtype=float)
            first, second = first_vs_second_half(later_layer_effect(effect)[:-1])
            lines.append(
                f"{part}: mean effect on later layers when skipping a first-half vs second-half "
                f"layer: {first:.3f} vs {second:.3f}"
            )
            output = np.asarray(block["output_change"], dtype=float)
            if np.isfinite(output).any():
                top = int(np.nanargmax(output))
                o1, o2 = first_vs_second_half(output)
                lines.append(
                    f"{part}: output change, first vs second half: {o1:.3f} vs {o2:.3f}; "
                    f"largest at layer {top} ({output[top]:.3f})"
                )
        return lines


@register
class CurrentEffects(_EffectsBase):
    name = "current-effects"
    title = "Skipping a layer: effect on later layers and outputs, all tokens"
    description = "skip each layer on all tokens: change of later layers' contributions and of the output (E3)"
    paper = PaperRef("E3", "§3.2", "Fig. 3a, 17a")
    future = False
    # The verdict reads the mean over positions: the paper's max over positions sits near its
    # ceiling for every layer (issue 21 §2) and cannot show a step. Runs saved before the
    # position means existed fall back to the max.
    profiles = (
        Profile(
            "current-output-change",
            "current output change (mean over positions)",
            data_key("output_change_position_mean"),
            figure="current-effects_output_change_layer_position_mean",
            order=2,
            per_prompt=per_prompt_key("output_change_position_mean"),
            requires="output_change_position_mean",
        ),
        Profile(
            "current-output-change-max",
            "current output change (max over positions)",
            data_key("output_change"),
            figure="current-effects_output_change_layer",
            order=2,
            per_prompt=per_prompt_key("output_change"),
            replaced_by="output_change_position_mean",
        ),
    )
    verdict = (VerdictRule("current_use", "Current token, second half", current_use),)
    presets = {
        "paper": Preset(
            GSM8K,
            20,
            {"front": "1", "aggregate": "max"},
            DEFAULT_SOURCE,
            "§3.2: first 20 GSM8K prompts",
        )
    }


@register
class FutureEffects(_EffectsBase):
    name = "future-effects"
    title = "Skipping a layer: effect on future tokens"
    description = "skip each layer on past tokens only: change at future tokens (E4)"
    paper = PaperRef("E4", "§3.2", "Fig. 3b, 17b")
    future = True
    profiles = (
        Profile(
            "future-effect",
            "mean future effect on later layers",
            lambda data: later_layer_effect(data["effect"]),
            indicator="future effect on later layers",
            figure="future-effects_effect_layer",
            order=0,
            per_prompt=per_prompt_key("effect", of=later_layer_effect),
            per_split=per_split_key("effect_splits"),
            of_split_max=later_layer_effect,
            paper=lambda data: later_layer_effect(data["effect_max"]),
            paper_label="max over prompts",
        ),
        Profile(
            "future-output-change",
            "future output change",
            data_key("output_change"),
            indicator="future output change",
            figure="future-effects_output_change_layer",
            order=1,
            per_prompt=per_prompt_key("output_change"),
            per_split=per_split_key("output_change_splits"),
            of_split_max=np.asarray,
            paper=data_key("output_change_max"),
            paper_label="max over prompts",
        ),
    )
    verdict = (VerdictRule("future_use", "Layers used by future tokens", future_use),)
    presets = {
        "paper": Preset(
            GSM8K,
            10,
            {
                "front": "1",
                "aggregate": "max",
                "n_splits": "4",
                "split_stride": "8",
                "split_margin": "4",
            },
            DEFAULT_SOURCE,
            "§3.2: first 10 GSM8K prompts, 4 split points at multiples of 8",
        )
    }
