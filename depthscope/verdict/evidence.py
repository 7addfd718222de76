"""The transition read off every indicator a run holds, how sure each is, and where they agree.

Each transition indicator a card declares (:class:`~depthscope.analyses.card.Profile` with an
``indicator``) is taken as the weighted mean of its per-prompt profiles and judged step or trend
(:func:`~depthscope.verdict.regime.regime`); the indicators' p-values are Holm-corrected together,
so naming a transition keeps a 5 % family-wise error however many indicators a run holds. The
prompts are resampled (:mod:`depthscope.verdict.bootstrap`) for every number's 90 % interval: the
change point, the threshold-free effective depth (:mod:`depthscope.verdict.depth`) and the trend.

The **consensus transition** is the split that minimises the mean normalised step cost of the
indicators with a step. Two indicators **disagree** when the paired bootstrap interval of their
change points' difference excludes 0 after Holm's correction over all pairs
(:mod:`depthscope.verdict.differences`); the verdict then names the groups that do not. Rules and
constants: docs/summary.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from depthscope.analyses.card import Profile
from depthscope.analyses.catalog import cards
from depthscope.core.result import Result
from depthscope.verdict import bootstrap, regime
from depthscope.verdict.bootstrap import Interval
from depthscope.verdict.depth import effective_depth
from depthscope.verdict.differences import LAYER_MARGIN, Difference, compare_all
from depthscope.verdict.regime import Regime

RULE = (
    "a transition indicator steps when a two-level or step+trend fit beats every step-free fit "
    "(constant, linear, smooth logistic) beyond an AR(1) null of the best step-free fit, Holm-"
    "corrected over the indicators; consensus = the split minimising their mean normalised step "
    "cost; two indicators disagree when the paired bootstrap interval of their change points' "
    "difference excludes 0 after Holm's correction over the pairs"
)


def indicator_profiles() -> list[tuple[str, Profile]]:
    """(analysis, profile) of every registered transition indicator, in the verdict's order."""
    found = [(c.name, p) for c in cards() for p in c.profiles if p.indicator]
    return sorted(found, key=lambda item: item[1].order)


@dataclass
class Indicator:
    """One indicator of a run: its all-prompt profile, regime, and resampled profiles."""

    name: str
    analysis: str
    profile: Profile
    values: np.ndarray  # the all-prompt profile the verdict fits
    draws: np.ndarray | None  # [draws, n] resampled profiles (None: no per-prompt data)
    n_prompts: int | None
    regime: Regime | None = None
    paper: Regime | None = None  # the same rule on the paper's aggregate (max over prompts)
    paper_aggregate: str | None = None
    _splits: np.ndarray | None = field(default=None, repr=False)

    @property
    def significant(self) -> bool:
        return self.regime is not None and self.regime.significant

    @property
    def split(self) -> int | None:
        return self.regime.index if self.significant else None

    def split_draws(self) -> np.ndarray | None:
        """The change point of every draw (NaN: no step in that draw)."""
        if self.draws is None or self.regime is None:
            return None
        if self._splits is None:
            self._splits = regime.draw_splits(self.regime, self.draws)
        return self._splits

    def interval(self) -> Interval | None:
        """The change point's bootstrap interval (None without per-prompt data)."""
        samples = self.split_draws()
        if samples is None:
            return None
        value = float(self.regime.index) if self.significant else None
        return bootstrap.interval_of(value, samples)

    def depth_draws(self, n_layers: int) -> np.ndarray | None:
        if self.draws is None:
            return None
        return effective_depth(self.draws, self.profile.importance, n_layers)

    def depth(self, n_layers: int) -> Interval:
        """The effective depth (relative) with its interval where prompts can be resampled."""
        point = float(effective_depth(self.values, self.profile.importance, n_layers)[0])
        point_or_none = point if np.isfinite(point) else None
        samples = self.depth_draws(n_layers)
        if samples is None:
            return Interval(point_or_none, None, None, 0.0, 0)
        return bootstrap.interval_of(point_or_none, samples)

    def trend(self) -> Interval | None:
        """The linear trend's change over the profile (fit scale) with its interval."""
        if self.regime is None:
            return None
        if self.draws is None:
            return Interval(self.regime.change, None, None, 0.0, 0)
        return bootstrap.interval_of(
            self.regime.change, regime.draw_changes(self.regime, self.draws)
        )


def read_indicator(
    name: str, profile: Profile, result: Result, seed: int = bootstrap.SEED
) -> Indicator:
    """The indicator from a saved result (its regime not yet judged with the others)."""
    mean, draws, n_prompts = profile.sampled(result.data, seed)
    found = Indicator(profile.indicator, name, profile, mean, draws, n_prompts)
    found.regime = regime.regime(mean, profile.expected, log=profile.log)
    if profile.paper is not None:
        try:
            paper = np.asarray(profile.paper(result.data), dtype=float)
        except (KeyError, IndexError, TypeError, ValueError):
            paper = None
        if paper is not None:
            found.paper = regime.regime(paper, profile.expected, log=profile.log)
            found.paper_aggregate = profile.paper_label
    return found


def indicators(results: dict[str, Result], seed: int = bootstrap.SEED) -> list[Indicator]:
    """Every indicator the run holds, judged together (Holm over their p-values). ``seed``
    picks the bootstrap draws (another seed for other prompts keeps two runs independent)."""
    found = [
        read_indicator(n, p, results[n], seed)
        for n, p in indicator_profiles()
        if n in results and p.evidence_in(results[n].data)
    ]
    judge([i for i in found if i.regime is not None], lambda i: i.regime, "regime")
    judge([i for i in found if i.paper is not None], lambda i: i.paper, "paper")
    return found


def judge(found: list[Indicator], read, attribute: str) -> None:
    adjusted = regime.holm_adjusted({i.name: read(i).p_value for i in found})
    for item in found:
        setattr(item, attribute, regime.judged(read(item), adjusted[item.name]))


@dataclass
class Consensus:
    layer: int | None
    interval: Interval | None
    members: list[str]
    groups: list[list[str]]  # indicators that do not differ among themselves
    pairs: dict[str, Difference] = field(default_factory=dict)  # "a | b" -> b − a
    samples: np.ndarray | None = None  # the joint split of every bootstrap draw

    @property
    def agreed(self) -> bool:
        return len(self.groups) <= 1


def _step_curves(indicator: Indicator, width: int) -> np.ndarray:
    """``[rows, width]``: normalised step cost at each absolute split, all-prompt row first."""
    found = indicator.regime
    models = regime.models_for(tuple(float(i) for i in found.x), found.smooth_span, found.penalty)
    rows = indicator.values[None, :]
    if indicator.draws is not None:
        rows = np.concatenate([rows, indicator.draws], axis=0)
    rows = rows[:, found.x]
    out = np.full((rows.shape[0], width), np.nan)
    finite = np.isfinite(rows).all(axis=1)
    costs = models.step_costs(regime.prepared(rows[finite], found.log))
    positions = found.x[models.splits]
    keep = positions < width
    out[np.ix_(np.nonzero(finite)[0], positions[keep])] = costs[:, keep]
    return out


def pair_name(a: str, b: str) -> str:
    return f"{a} | {b}"


def consensus(found: list[Indicator]) -> Consensus:
    """The joint change point of the indicators with a step, its interval and the paired tests."""
    members = [i for i in found if i.significant]
    if not members:
        return Consensus(None, None, [], [])
    width = max(i.values.size for i in members)
    curves = np.stack([_step_curves(i, width) for i in members])
    joint = curves.mean(axis=0)
    finite = np.isfinite(joint)
    best = np.where(finite.any(axis=1), np.where(finite, joint, np.inf).argmin(axis=1), -1)
    layer = int(best[0])
    interval = samples = None
    if joint.shape[0] > 1:
        samples = np.where(best[1:] >= 0, best[1:], np.nan).astype(float)
        interval = bootstrap.interval_of(float(layer), samples)
    ordered = sorted(members, key=lambda i: i.split)
    pairs = {}
    for index, a in enumerate(ordered):
        for b in ordered[index + 1 :]:
            da, db = a.split_draws(), b.split_draws()
            if da is not None and db is not None:
                pairs[pair_name(a.name, b.name)] = (a.split, b.split, da, db)
    tested = compare_all(pairs, margin=LAYER_MARGIN, unit="layers")
    groups: list[list[Indicator]] = []
    for item in ordered:
        fits = groups and not any(
            tested.get(pair_name(other.name, item.name)) is not None
            and tested[pair_name(other.name, item.name)].outcome == "differ"
            for other in groups[-1]
        )
        if fits:
            groups[-1].append(item)
        else:
            groups.append([item])
    return Consensus(
        layer,
        interval,
        [i.name for i in members],
        [[i.name for i in g] for g in groups],
        tested,
        samples,
    )
