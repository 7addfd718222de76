"""Current and future effects from one packed replay equal the two separate sweeps (and the
naive one-forward-pass-per-skip oracle), on every tiny family."""

from __future__ import annotations

import pytest
import torch
from naive import naive_effects
from tiny_models import FAMILIES, random_ids, tiny_model

from depthscope.analyses.effects import skip_sweep
from depthscope.core.progress import Progress
from depthscope.engine.batch import pad_batch
from depthscope.engine.sweep import Window, run_joint_sweep, run_sweep
from depthscope.engine.trace import trace

SPLITS = (14, 6, 10)
FRONT = 1


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a.float(), b.float(), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("part", ["layer", "mlp"])
def test_joint_sweep_equals_separate_sweeps_and_the_naive_oracle(family, part):
    lm = tiny_model(family)
    ids = random_ids([19, 12], seed=5)
    traced = trace(lm.adapter, pad_batch(ids, 0))
    length = len(ids[0])
    spec = skip_sweep(part)
    run = dict(batch_size=7, progress=Progress())
    joint = run_joint_sweep(lm.adapter, traced, 0, length, SPLITS, FRONT, spec, **run)
    assert joint is not None  # every supported family's layer arguments can be packed
    current, future = joint
    want_current = run_sweep(lm.adapter, traced, 0, length, Window((None,), FRONT), spec, **run)
    want_future = run_sweep(lm.adapter, traced, 0, length, Window(SPLITS, FRONT), spec, **run)
    for got, want in ((current, want_current), (future, want_future)):
        for field in ("effect", "output", "effect_mean", "output_mean"):
            assert close(getattr(got, field), getattr(want, field)), field
    naive_current, naive_output = naive_effects(lm, ids[0], part, FRONT, None)
    assert close(current.effect, naive_current) and close(current.output, naive_output)
    per_split = [naive_effects(lm, ids[0], part, FRONT, t) for t in SPLITS]
    assert close(future.effect, torch.stack([e for e, _ in per_split]).amax(dim=0))
    assert close(future.output, torch.stack([o for _, o in per_split]).amax(dim=0))


def test_no_split_point_means_no_joint_sweep():
    lm = tiny_model("llama")
    ids = random_ids([9], seed=1)
    traced = trace(lm.adapter, pad_batch(ids, 0))
    spec = skip_sweep("layer")
    assert (
        run_joint_sweep(
            lm.adapter, traced, 0, 9, (), FRONT, spec, batch_size=4, progress=Progress()
        )
        is None
    )
