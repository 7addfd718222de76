"""Affine maps between residual streams, solved exactly from streamed sufficient statistics.

For each source boundary ``m`` and target boundary ``l`` we want ``f(x) = W x + b`` minimising
``sum_tokens ||y_l - W x_m - b||^2 + lam_m ||W||_F^2`` (the bias is not penalised). Everything the
solution needs is in ``A^T A`` and ``A^T Y`` with ``A = [X, 1]``: the Gram matrix (its last
row/column holds ``sum x`` and the token count) and the cross products (last row ``sum y``).
They are sums over tokens, so they are accumulated chunk by chunk in float64 and can be merged
across runs or summed over processes (``all_reduce``); no token activation is kept. ``lam_m = ridge * trace(C_m) / d`` where ``C_m`` is the
centred scatter matrix of the source: ``ridge`` is a fraction of the average per-dimension
variance, independent of the number of tokens and of the residual's scale.

Memory (bytes, float64): ``8 (M+1) (d_s+1) (d_s+1 + G d_t)`` for the statistics of ``G`` target
boundaries; the solved maps reuse the same layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from depthscope.core.errors import DepthscopeError

if TYPE_CHECKING:
    from depthscope.run.distributed import Distributed

EPS = 1e-6  # denominators of norm ratios are clamped here, as in the paper


@dataclass
class MapStatistics:
    """``A^T A`` per source boundary and ``A^T Y`` for every (source, target) pair, ``A = [X, 1]``."""

    gram: torch.Tensor  # [S, d_s+1, d_s+1] float64
    cross: torch.Tensor  # [S, d_s+1, G*d_t] float64
    n_targets: int
    d_target: int

    @classmethod
    def zeros(
        cls,
        n_source: int,
        d_source: int,
        n_target: int,
        d_target: int,
        device: torch.device | str = "cpu",
    ) -> MapStatistics:
        f64 = dict(dtype=torch.float64, device=device)
        return cls(
            gram=torch.zeros(n_source, d_source + 1, d_source + 1, **f64),
            cross=torch.zeros(n_source, d_source + 1, n_target * d_target, **f64),
            n_targets=n_target,
            d_target=d_target,
        )

    @property
    def n_tokens(self) -> int:
        return int(round(float(self.gram[0, -1, -1]))) if self.gram.shape[0] else 0

    @property
    def d_source(self) -> int:
        return int(self.gram.shape[-1]) - 1

    def update(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 1024) -> None:
        """Add tokens: ``x`` ``[S, n, d_s]`` source residuals, ``y`` ``[G, n, d_t]`` targets."""
        for start in range(0, x.shape[1], chunk):
            xs = augment(x[:, start : start + chunk].to(self.gram))
            ys = flat_targets(y[:, start : start + chunk].to(self.gram))
            self.gram += xs.transpose(1, 2) @ xs
            for m in range(xs.shape[0]):
                self.cross[m].addmm_(xs[m].T, ys)

    def target_mean(self) -> torch.Tensor:
        """``[G, d_t]`` training mean of every target boundary (the constant-map baseline)."""
        return (self.cross[0, -1] / self.gram[0, -1, -1]).view(self.n_targets, self.d_target)

    def merge(self, other: MapStatistics) -> None:
        """Add another accumulator's tokens (e.g. from another process)."""
        self.gram += other.gram.to(self.gram)
        self.cross += other.cross.to(self.cross)

    def all_reduce(self, group: Distributed) -> None:
        """Sum every process's statistics in place (float64), so every rank can solve."""
        group.all_reduce_(self.gram, "sum")
        group.all_reduce_(self.cross, "sum")


def augment(x: torch.Tensor) -> torch.Tensor:
    """Append the bias column: ``[S, n, d]`` -> ``[S, n, d+1]``."""
    return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)


def flat_targets(y: torch.Tensor) -> torch.Tensor:
    """``[G, n, d_t]`` -> ``[n, G*d_t]`` so one matmul serves every target boundary."""
    return y.permute(1, 0, 2).reshape(y.shape[1], -1)


@dataclass
class AffineMaps:
    """``f_{m,l}(x) = x @ weight[m][:, l-block] + bias[m][l-block]`` for all pairs at once."""

    weight: torch.Tensor  # [S, d_s, G*d_t] float64
    bias: torch.Tensor  # [S, G*d_t] float64
    lam: torch.Tensor  # [S] absolute ridge actually added to the centred Gram matrix
    n_targets: int
    d_target: int

    def to(self, dtype: torch.dtype) -> AffineMaps:
        """A copy for prediction in ``dtype`` (float32 halves memory and doubles CPU speed)."""
        return AffineMaps(
            self.weight.to(dtype), self.bias.to(dtype), self.lam, self.n_targets, self.d_target
        )

    def predict(self, m: int, x: torch.Tensor) -> torch.Tensor:
        """``[n, d_s]`` -> ``[n, G, d_t]`` predictions of every target boundary from source ``m``."""
        out = torch.addmm(self.bias[m], x.to(self.weight.dtype), self.weight[m])
        return out.view(x.shape[0], self.n_targets, self.d_target)


def centred(stats: MapStatistics, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centred scatter ``C``, centred cross products ``C_xy`` and the source mean, for source ``m``."""
    n = stats.gram[m, -1, -1]
    sum_x = stats.gram[m, :-1, -1]
    sum_y = stats.cross[m, -1]
    mean_x = sum_x / n
    scatter = stats.gram[m, :-1, :-1] - torch.outer(sum_x, mean_x)
    cross = stats.cross[m, :-1] - torch.outer(mean_x, sum_y)
    return scatter, cross, mean_x


def ridge_lambda(scatter: torch.Tensor, ridge: float) -> float:
    """Absolute ridge: ``ridge`` times the mean eigenvalue ``trace(C)/d`` of the centred scatter."""
    return float(ridge) * float(torch.trace(scatter)) / scatter.shape[0]


def solve(
    stats: MapStatistics,
    ridge: float,
    *,
    dtype: torch.dtype = torch.float64,
    names: tuple[str, ...] = (),
) -> AffineMaps:
    """Ridge solution for every source boundary, all target boundaries at once (one Cholesky each).

    Centring first (exactly equivalent to the unpenalised bias column) keeps the system well
    conditioned even when residuals have a large mean. The solve is float64; the maps are stored
    in ``dtype`` one source boundary at a time, so a float32 result never needs a full float64
    copy next to the statistics. ``names[m]`` labels errors.
    """
    if ridge < 0:
        raise DepthscopeError(f"--ridge must be >= 0 (got {ridge})")
    n = stats.n_tokens
    if n < 2:
        raise DepthscopeError(
            f"only {n} training tokens; a map needs many more (use more --tokens)"
        )
    n_source, d_source = stats.gram.shape[0], stats.d_source
    out = dict(dtype=dtype, device=stats.gram.device)
    weight = torch.empty(n_source, d_source, stats.cross.shape[-1], **out)
    bias = torch.empty(n_source, stats.cross.shape[-1], **out)
    lams = torch.empty(n_source, dtype=torch.float64)
    for m in range(n_source):
        scatter, cross, mean_x = centred(stats, m)
        lam = ridge_lambda(scatter, ridge)
        system = scatter + lam * torch.eye(d_source, dtype=scatter.dtype, device=scatter.device)
        factor, info = torch.linalg.cholesky_ex(system)
        if int(info) != 0:
            label = names[m] if m < len(names) else f"source boundary {m}"
            raise DepthscopeError(
                f"{label}: the source residuals are rank-deficient over {n} tokens "
                f"(d={d_source}), so the least-squares map is not unique; use --ridge > 0 "
                f"or more --tokens"
            )
        solution = torch.cholesky_solve(cross, factor)
        weight[m] = solution
        bias[m] = stats.cross[m, -1] / n - mean_x @ solution
        lams[m] = lam
    return AffineMaps(weight, bias, lams, stats.n_targets, stats.d_target)


@dataclass
class HeldOutMetrics:
    """Per-token relative error and R^2 of every map on held-out tokens (mergeable sums).

    ``rel_err[m, l] = mean_t ||y - f(x)|| / max(||y||, 1e-6)`` (the paper's metric: the mean of
    per-token ratios) and ``r2[m, l] = 1 - SSE / SST``, SST around the held-out per-dimension mean,
    both summed over dimensions. ``baseline`` is the relative error of predicting the training mean.

    With ``n_units > 0`` the sums the relative errors need are also kept per held-out unit (a
    text): ``unit_rel[u, m, l]`` (sum of the unit's per-token ratios), ``unit_base[u, l]`` and
    ``unit_n[u]`` (its token count), so a bootstrap can resample whole units without refitting
    (:mod:`depthscope.experiments.maps.intervals`). :meth:`update` then takes each token's unit.
    """

    rel_sum: torch.Tensor  # [S, G]
    sse: torch.Tensor  # [S, G]
    y_sum: torch.Tensor  # [G, d_t]
    y_sq: torch.Tensor  # [G]
    base_sum: torch.Tensor  # [G]
    n: int = 0
    unit_rel: torch.Tensor | None = None  # [U, S, G] per held-out unit, if kept
    unit_base: torch.Tensor | None = None  # [U, G]
    unit_n: torch.Tensor | None = None  # [U] tokens per unit

    @classmethod
    def zeros(cls, n_source: int, n_target: int, d_target: int, n_units: int = 0) -> HeldOutMetrics:
        f64 = dict(dtype=torch.float64)
        per_unit = n_units > 0
        return cls(
            rel_sum=torch.zeros(n_source, n_target, **f64),
            sse=torch.zeros(n_source, n_target, **f64),
            y_sum=torch.zeros(n_target, d_target, **f64),
            y_sq=torch.zeros(n_target, **f64),
            base_sum=torch.zeros(n_target, **f64),
            unit_rel=torch.zeros(n_units, n_source, n_target, **f64) if per_unit else None,
            unit_base=torch.zeros(n_units, n_target, **f64) if per_unit else None,
            unit_n=torch.zeros(n_units, **f64) if per_unit else None,
        )

    def _units(self, units: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if self.unit_rel is None:
            return None
        if units is None or len(units) != n:
            raise ValueError("per-unit held-out sums need the unit of every token")
        return torch.as_tensor(units, dtype=torch.long)

    def update(
        self,
        maps: AffineMaps,
        x: torch.Tensor,
        y: torch.Tensor,
        chunk: int = 1024,
        units: torch.Tensor | None = None,
    ) -> None:
        """Add held-out tokens ``x`` ``[S, n, d_s]``, ``y`` ``[G, n, d_t]``.

        Predictions are computed in the maps' dtype (see :meth:`AffineMaps.to`). ``units[t]`` is
        token ``t``'s held-out unit (needed when the sums are kept per unit).
        """
        dtype = maps.weight.dtype
        units = self._units(units, x.shape[1])
        for start in range(0, x.shape[1], chunk):
            xs = x[:, start : start + chunk].to(maps.weight.device, dtype)
            ys = y[:, start : start + chunk].to(maps.weight.device, dtype).transpose(0, 1)
            y_norm = ys.norm(dim=-1)  # [n, G]
            denom = y_norm.clamp_min(EPS)
            for m in range(xs.shape[0]):
                err = (maps.predict(m, xs[m]) - ys).norm(dim=-1)  # [n, G]
                ratio = err / denom
                self.rel_sum[m] += ratio.sum(0).double().cpu()
                self.sse[m] += err.double().square().sum(0).cpu()
                if units is not None:
                    picked = units[start : start + chunk]
                    self.unit_rel[:, m].index_add_(0, picked, ratio.double().cpu())
            y64 = ys.double().cpu()
            self.y_sum += y64.sum(0)
            self.y_sq += y64.square().sum(dim=(0, 2))
            self.n += int(xs.shape[1])
            if units is not None:
                ones = torch.ones(xs.shape[1], dtype=torch.float64)
                self.unit_n.index_add_(0, units[start : start + chunk], ones)

    def all_reduce(self, group: Distributed) -> None:
        """Sum every process's held-out sums in place (float64)."""
        for total in (self.rel_sum, self.sse, self.y_sum, self.y_sq, self.base_sum):
            group.all_reduce_(total, "sum")
        for total in (self.unit_rel, self.unit_base, self.unit_n):
            if total is not None:  # each unit is scored by one process, zeros elsewhere
                group.all_reduce_(total, "sum")
        count = torch.tensor([self.n], dtype=torch.float64)
        self.n = int(group.all_reduce_(count, "sum").item())

    def add_baseline(
        self, train_mean: torch.Tensor, y: torch.Tensor, units: torch.Tensor | None = None
    ) -> None:
        """Relative error of the constant map ``f(x) = training mean`` (how much x explains)."""
        ys = y.double().cpu().transpose(0, 1)  # [n, G, d_t]
        err = (ys - train_mean.double().cpu()).norm(dim=-1)
        ratio = err / ys.norm(dim=-1).clamp_min(EPS)
        self.base_sum += ratio.sum(0)
        units = self._units(units, ys.shape[0])
        if units is not None:
            self.unit_base.index_add_(0, units, ratio)

    def rel_err(self) -> torch.Tensor:
        return self.rel_sum / max(self.n, 1)

    def baseline(self) -> torch.Tensor:
        return self.base_sum / max(self.n, 1)

    def r2(self) -> torch.Tensor:
        sst = self.y_sq - self.y_sum.square().sum(-1) / max(self.n, 1)  # [G]
        return 1.0 - self.sse / sst.clamp_min(torch.finfo(torch.float64).tiny)
