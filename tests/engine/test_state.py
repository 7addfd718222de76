"""Analysis state is data: it round-trips through safetensors without pickle and merges by rule."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from depthscope.core.errors import DepthscopeError
from depthscope.engine.state import merge, same, state_from_bytes, state_to_bytes, state_type
from depthscope.engine.stats import Max, Mean


@state_type
@dataclass
class ToyState:
    mean: Mean = field(default_factory=Mean)
    peak: Max = field(default_factory=Max)
    per_prompt: list = field(default_factory=list)
    splits: dict = field(default_factory=dict)
    n_prompts: int = 0
    baseline: torch.Tensor | None = same()


def filled(prompts: range, baseline: torch.Tensor) -> ToyState:
    state = ToyState(baseline=baseline)
    for p in prompts:
        values = torch.arange(3, dtype=torch.float32) * (p + 1)
        state.mean.add(values, 1)
        state.peak.add(values)
        state.per_prompt.append({"prompt": p, "effect": values, "tokens": ["a", "b"]})
        state.splits[p] = [p, p + 8]
        state.n_prompts += 1
    return state


def test_round_trip_keeps_types_keys_and_tensors():
    state = filled(range(3), torch.ones(2))
    back, meta = state_from_bytes(state_to_bytes(state, {"fingerprint": "abc", "done": [0, 1, 2]}))
    assert meta == {"fingerprint": "abc", "done": [0, 1, 2]}
    assert isinstance(back, ToyState) and isinstance(back.mean, Mean)
    assert torch.equal(back.mean.value, state.mean.value)
    assert torch.equal(back.peak.value, state.peak.value)
    assert back.splits == {0: [0, 8], 1: [1, 9], 2: [2, 10]}  # int keys survive
    assert back.per_prompt[2]["tokens"] == ["a", "b"] and back.n_prompts == 3


def test_merged_shards_equal_one_pass():
    whole = filled(range(5), torch.ones(2))
    merged = merge(filled(range(3), torch.ones(2)), filled(range(3, 5), torch.ones(2)))
    assert torch.allclose(merged.mean.value, whole.mean.value, rtol=0, atol=1e-12)
    assert torch.equal(merged.peak.value, whole.peak.value)
    assert [e["prompt"] for e in merged.per_prompt] == [0, 1, 2, 3, 4]
    assert merged.splits == whole.splits and merged.n_prompts == 5


def test_shards_that_disagree_on_a_shared_value_are_refused():
    with pytest.raises(DepthscopeError, match="disagree"):
        merge(filled(range(1), torch.ones(2)), filled(range(1, 2), torch.zeros(2)))


def test_foreign_or_damaged_bytes_are_rejected():
    blob = state_to_bytes(filled(range(2), torch.ones(2)))
    for bad in (b"", b"\x80\x04pickle", blob[: len(blob) // 2]):
        with pytest.raises(ValueError):
            state_from_bytes(bad)


def test_unregistered_types_cannot_be_stored_or_loaded():
    @dataclass
    class Unregistered:
        x: int = 0

    with pytest.raises(TypeError, match="registered"):
        state_to_bytes(Unregistered())


def test_written_files_follow_the_umask(tmp_path):
    import os

    from depthscope.core.atomic_files import atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
