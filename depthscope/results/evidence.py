"""The transition read off every indicator a run holds, how sure each is, and where they agree.

Each transition indicator a card declares (:class:`~depthscope.analyses.card.Profile` with an
``indicator``) is taken as the weighted mean of its per-prompt profiles, fitted with the two-level
change-point rule (:func:`~depthscope.analyses.rules.change_point`), and resampled over prompts
for a 90 % interval (:mod:`depthscope.analyses.bootstrap`). The **consensus transition** is the
split that minimises the indicators' mean normalised two-level cost
(:func:`~depthscope.analyses.rules.joint_change_points`), over the indicators with a significant
step, resampled the same way. An indicator whose interval does not overlap the consensus interval
disagrees; the verdict then lists the groups of indicators that agree among themselves instead of
one number. Rules and constants: docs/summary.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depthscope.analyses import bootstrap, rules
from depthscope.analyses.bootstrap import Interval
from depthscope.analyses.card import Profile
from depthscope.analyses.catalog import cards
from depthscope.analyses.rules import ChangePoint
from depthscope.results.document import Result

RULE = (
    "consensus = the split minimising the mean normalised two-level cost of the indicators with "
    "a significant step; an indicator disagrees when its 90 % interval does not overlap the "
    "consensus interval"
)


def indicator_profiles() -> list[tuple[str, Profile]]:
    """(analysis, profile) of every registered transition indicator, in the verdict's order."""
    found = [(c.name, p) for c in cards() for p in c.profiles if p.indicator]
    return sorted(found, key=lambda item: item[1].order)


@dataclass
class Indicator:
    """One indicator of a run: its all-prompt profile, change point and resampled change points."""

    name: str
    analysis: str
    profile: Profile
    values: np.ndarray  # the all-prompt profile the verdict fits
    point: ChangePoint | None
    draws: np.ndarray | None  # [draws, n] resampled profiles (None: no per-prompt data)
    n_prompts: int | None

    @property
    def significant(self) -> bool:
        return self.point is not None and self.point.significant

    def interval(self) -> Interval | None:
        """The change point's bootstrap interval (None without per-prompt data or a null)."""
        if self.draws is None or self.point is None:
            return None
        samples = rules.change_points(
            self.draws, self.profile.expected, log=self.profile.log, null=self.point.null
        )
        value = float(self.point.index) if self.significant else None
        return bootstrap.interval_of(value, samples)


def read_indicator(name: str, profile: Profile, result: Result) -> Indicator:
    """The indicator from a saved result: per-prompt data where the result keeps it."""
    draws = n_prompts = None
    if profile.per_prompt is not None and result.data.get("per_prompt"):
        values, weights = profile.per_prompt(result.data)
        mean = bootstrap.weighted_mean(values, weights)
        draws = bootstrap.resampled(values, weights, bootstrap.draws(len(weights)))
        n_prompts = len(weights)
    else:  # results saved before per-prompt data were kept: no interval
        mean = np.asarray(profile.read(result.data), dtype=float)
    point = rules.change_point(mean, profile.expected, log=profile.log)
    return Indicator(profile.indicator, name, profile, mean, point, draws, n_prompts)


def indicators(results: dict[str, Result]) -> list[Indicator]:
    return [
        read_indicator(n, p, results[n])
        for n, p in indicator_profiles()
        if n in results and p.evidence_in(results[n].data)
    ]


def _curves(indicator: Indicator, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised cost curves of the all-prompt profile ``[width]`` and of each draw."""
    profile = indicator.profile
    full = rules.normalised_costs(indicator.values, log=profile.log, width=width)[0]
    if indicator.draws is None:
        return full, full[None, :]
    return full, rules.normalised_costs(indicator.draws, log=profile.log, width=width)


@dataclass
class Consensus:
    layer: int | None
    interval: Interval | None
    members: list[str]
    groups: list[list[str]]  # indicators that agree among themselves; one group = agreement

    @property
    def agreed(self) -> bool:
        return len(self.groups) <= 1


def _overlap(a: Interval | None, b: Interval | None, pa: float, pb: float) -> bool:
    lo_a, hi_a = (a.low, a.high) if a and a.low is not None else (pa, pa)
    lo_b, hi_b = (b.low, b.high) if b and b.low is not None else (pb, pb)
    return lo_a <= hi_b and lo_b <= hi_a


def consensus(found: list[Indicator], intervals: dict[str, Interval | None]) -> Consensus:
    """The joint change point of the significant indicators, its interval and agreement."""
    members = [i for i in found if i.significant]
    if not members:
        return Consensus(None, None, [], [])
    width = max(i.values.size for i in members)
    curves = [_curves(i, width) for i in members]
    layer = int(rules.joint_change_points([c[0][None, :] for c in curves])[0])
    n_draws = max(c[1].shape[0] for c in curves)
    per_draw = [np.broadcast_to(c[1], (n_draws, width)) for c in curves]
    resampled = n_draws > 1
    interval = (
        bootstrap.interval_of(float(layer), rules.joint_change_points(per_draw))
        if resampled
        else None
    )
    # groups: indicators ordered by change point, joined while their intervals overlap
    ordered = sorted(members, key=lambda i: i.point.index)
    groups: list[list[Indicator]] = []
    for indicator in ordered:
        if groups and any(
            _overlap(
                intervals[indicator.name],
                intervals[other.name],
                indicator.point.index,
                other.point.index,
            )
            for other in groups[-1]
        ):
            groups[-1].append(indicator)
        else:
            groups.append([indicator])
    agree_with_consensus = all(
        _overlap(intervals[i.name], interval, i.point.index, layer) for i in members
    )
    if agree_with_consensus and len(groups) > 1:
        groups = [[i for g in groups for i in g]]
    return Consensus(
        layer, interval, [i.name for i in members], [[i.name for i in g] for g in groups]
    )
