"""Linear maps (E10): bootstrap intervals over held-out texts, the tie rule and the random-init null."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_maps import TEXTS, CharTokenizer, _with_tokenizer
from tiny_models import tiny_model

from depthscope.core.result import Result
from depthscope.experiments.maps import HeldOutMetrics, MapStatistics, fit_linear_maps, solve
from depthscope.experiments.maps.intervals import (
    DIGITS,
    MIN_UNITS,
    UnitSums,
    map_uncertainty,
)
from depthscope.experiments.maps.ridge import EPS
from depthscope.verdict.bootstrap import RESAMPLES, draws, interval_of
from depthscope.verdict.differences import bootstrap_p

ROOT = Path(__file__).resolve().parents[2]
STEP = 10.0**-DIGITS
MORE_TEXTS = [f"{i} {text}" for i, text in enumerate(TEXTS * 2)]  # 36 texts, ~72 tokens each

# ---------------------------------------------------------------- helpers


def held_out_problem(n_units: int = 14, seed: int = 0):
    """Maps solved on training tokens, held-out tokens in units of uneven size, and each token's
    unit; 2 source and 3 target boundaries."""
    gen = torch.Generator().manual_seed(seed)
    x_tr = torch.randn(2, 300, 5, generator=gen, dtype=torch.float64)
    y_tr = torch.randn(3, 300, 4, generator=gen, dtype=torch.float64) + x_tr[0, :, :4]
    stats = MapStatistics.zeros(2, 5, 3, 4)
    stats.update(x_tr, y_tr)
    maps = solve(stats, ridge=0.01)
    sizes = torch.randint(3, 25, (n_units,), generator=gen)
    units = torch.repeat_interleave(torch.arange(n_units), sizes)
    n = int(sizes.sum())
    x = torch.randn(2, n, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(3, n, 4, generator=gen, dtype=torch.float64) * (1 + units[None, :, None] % 3)
    y = y + x[0, :, :4]
    return stats, maps, x, y, units


def token_ratios(maps, x, y) -> torch.Tensor:
    """``[n, S, G]`` every held-out token's ratio, computed directly from the maps."""
    out = torch.empty(x.shape[1], x.shape[0], y.shape[0], dtype=torch.float64)
    for m in range(x.shape[0]):
        for ell in range(y.shape[0]):
            block = slice(ell * 4, (ell + 1) * 4)
            pred = x[m] @ maps.weight[m][:, block] + maps.bias[m][block]
            out[:, m, ell] = (y[ell] - pred).norm(dim=1) / y[ell].norm(dim=1).clamp_min(EPS)
    return out


def scored(maps, x, y, units, chunk: int = 7) -> HeldOutMetrics:
    metrics = HeldOutMetrics.zeros(2, 3, 4, n_units=int(units.max()) + 1)
    for start in range(0, x.shape[1], 40):  # batches that cut through units
        part = slice(start, start + 40)
        metrics.update(maps, x[:, part], y[:, part], chunk=chunk, units=units[part])
    return metrics


def within_rounding(saved: float, naive: float, side: str) -> bool:
    """A saved bound is the naive one rounded outwards to DIGITS decimals."""
    if side == "low":
        return saved <= naive + 1e-12 and naive - saved < STEP + 1e-12
    return saved >= naive - 1e-12 and saved - naive < STEP + 1e-12


# ---------------------------------------------------------------- per-unit statistics


def test_per_unit_sums_are_the_units_own_sums():
    stats, maps, x, y, units = held_out_problem()
    metrics = scored(maps, x, y, units)
    metrics.add_baseline(stats.target_mean(), y, units=units)
    ratios = token_ratios(maps, x, y)
    base = (y - stats.target_mean()[:, None]).norm(dim=2) / y.norm(dim=2).clamp_min(EPS)
    for u in range(int(units.max()) + 1):
        mine = units == u
        assert torch.allclose(metrics.unit_rel[u], ratios[mine].sum(0), rtol=1e-12)
        assert torch.allclose(metrics.unit_base[u], base[:, mine].sum(1), rtol=1e-12)
        assert metrics.unit_n[u] == int(mine.sum())
    # the per-unit sums add up to the totals the point estimates come from
    assert torch.allclose(metrics.unit_rel.sum(0), metrics.rel_sum, rtol=1e-12)
    assert torch.allclose(metrics.rel_err(), ratios.mean(0), rtol=1e-12)
    with pytest.raises(ValueError, match="unit of every token"):
        metrics.update(maps, x, y)


def test_intervals_equal_a_naive_recomputation_over_resampled_texts():
    _, maps, x, y, units = held_out_problem()
    metrics = scored(maps, x, y, units)
    rel = metrics.rel_err().numpy()
    sums = UnitSums.of(metrics.unit_rel, metrics.unit_n)
    out = map_uncertainty(rel, sums)
    assert out["bootstrap"]["computed"] and out["bootstrap"]["unit"] == "text"
    assert out["bootstrap"]["n_units"] == int(units.max()) + 1
    # naive: for every draw, gather the drawn texts' tokens and recompute every error from them
    ratios = token_ratios(maps, x, y)
    members = [torch.nonzero(units == u).flatten() for u in range(sums.n_units)]
    counts = draws(sums.n_units)  # the module's draws: 1000, seed 0
    naive = np.empty((RESAMPLES, 2, 3))
    for b in range(RESAMPLES):
        picked = torch.cat([members[u].repeat(int(c)) for u, c in enumerate(counts[b]) if c])
        naive[b] = ratios[picked].mean(0).numpy()
    low, high = np.asarray(out["rel_err_low"]), np.asarray(out["rel_err_high"])
    for m in range(2):
        for ell in range(3):
            want = interval_of(float(rel[m, ell]), naive[:, m, ell])
            assert within_rounding(low[m, ell], want.low, "low"), (m, ell)
            assert within_rounding(high[m, ell], want.high, "high"), (m, ell)
            assert low[m, ell] <= rel[m, ell] <= high[m, ell]  # the interval holds its value
            assert high[m, ell] > low[m, ell]
    # the best-target test is the paired difference of the same naive draws
    for record in out["best_target_test"]:
        m, best, runner = record["source"], record["best"], record["runner_up"]
        assert best == int(rel[m].argmin())
        diff = naive[:, m, runner] - naive[:, m, best]
        want = interval_of(float(rel[m, runner] - rel[m, best]), diff)
        got = record["difference"]
        assert within_rounding(got["interval"]["low"], want.low, "low")
        assert within_rounding(got["interval"]["high"], want.high, "high")
        assert got["p_value"] == pytest.approx(bootstrap_p(diff), abs=1e-4)
        assert got["p_adjusted"] >= got["p_value"]
        assert record["stated"] == (record["outcome"] == "differ")
        if record["stated"]:
            assert record["tied"] == [best]
        else:
            assert {best, runner} <= set(record["tied"])


def test_too_few_held_out_texts_give_no_interval():
    sums = UnitSums.of(np.ones((MIN_UNITS - 1, 2, 3)), np.full(MIN_UNITS - 1, 4.0))
    out = map_uncertainty(np.full((2, 3), 0.25), sums)
    assert (
        out["bootstrap"]["computed"] is False and "more --val-tokens" in out["bootstrap"]["reason"]
    )
    assert set(out) == {"bootstrap"}


# ---------------------------------------------------------------- ties


def test_two_identical_targets_are_a_tie_not_a_best_target():
    """Per-unit errors of targets 1 and 2 are equal; target 0 is clearly worse, target 3 better
    only for source 1."""
    gen = np.random.default_rng(3)
    n_units = 30
    n = gen.integers(10, 40, n_units).astype(float)
    base = np.array([[0.6, 0.30, 0.30, 0.5], [0.6, 0.40, 0.40, 0.2]])
    per_token = base[None] + gen.normal(0, 0.05, (n_units, 2, 4))
    per_token[:, :, 2] = per_token[:, :, 1]  # identical targets
    sums = UnitSums.of(per_token * n[:, None, None], n)
    rel = (per_token * n[:, None, None]).sum(0) / n.sum()
    tests = map_uncertainty(rel, sums)["best_target_test"]
    tie, clear = tests
    assert (tie["best"], tie["runner_up"]) == (1, 2)
    assert not tie["stated"] and tie["outcome"] == "equivalent"
    assert tie["difference"]["difference"] == 0.0
    assert tie["tied"] == [1, 2]  # targets 0 and 3 are separated from the best
    assert clear["best"] == 3 and clear["stated"] and clear["tied"] == [3]


def test_identical_target_layers_of_a_real_model_tie_end_to_end():
    """A target layer that writes nothing leaves its output boundary equal to its input: the maps
    into both boundaries are the same, so no source boundary can prefer one of them."""
    tok = CharTokenizer()
    target = _with_tokenizer(tiny_model("llama"), tok)
    layer = target.model.model.layers[1]
    with torch.no_grad():
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()
    data = fit_linear_maps(
        target, target, MORE_TEXTS, train_tokens=450, val_tokens=800, ridge=1e-6, batch_size=6
    )
    rel = torch.as_tensor(data["rel_err"])
    assert torch.equal(rel[:, 1], rel[:, 2])  # boundaries 1 and 2 are the same residual
    assert data["bootstrap"]["computed"] and data["bootstrap"]["n_units"] >= MIN_UNITS
    for record in data["best_target_test"]:
        low = data["rel_err_low"][record["source"]]
        high = data["rel_err_high"][record["source"]]
        assert all(
            lo <= r <= hi for lo, r, hi in zip(low, rel[record["source"]], high, strict=True)
        )
        if record["best"] in (1, 2):
            assert not record["stated"] and record["outcome"] == "equivalent"
            assert {1, 2} <= set(record["tied"])
    assert data["best_target_test"][1]["best"] == 1  # the self-map's own boundary (and its twin)


# ---------------------------------------------------------------- the null


def test_random_null_is_fitted_on_the_same_texts_and_compared_pairwise():
    tok = CharTokenizer()
    source = _with_tokenizer(tiny_model("llama"), tok)
    target = _with_tokenizer(tiny_model("gemma3"), tok)
    null = _with_tokenizer(tiny_model("llama", seed=7), tok)
    kwargs = dict(train_tokens=450, val_tokens=800, ridge=1e-3, batch_size=6)
    data = fit_linear_maps(source, target, MORE_TEXTS, null=null, **kwargs)
    alone = fit_linear_maps(null, target, MORE_TEXTS, **kwargs)
    got = data["null"]
    assert torch.equal(torch.as_tensor(got["rel_err"]), torch.as_tensor(alone["rel_err"]))
    assert got["best_target"] == alone["best_target"] and got["model"] == null.name
    assert np.asarray(got["rel_err_low"]).shape == (5, 5)
    assert len(got["best_target_test"]) == 5 and len(data["null_comparison"]) == 5
    # the trained result is the one a fit without the null gives
    plain = fit_linear_maps(source, target, MORE_TEXTS, **kwargs)
    assert torch.equal(torch.as_tensor(data["rel_err"]), torch.as_tensor(plain["rel_err"]))
    assert data["best_target_test"] == plain["best_target_test"]
    rel, null_rel = np.asarray(data["rel_err"]), np.asarray(got["rel_err"])
    for record in data["null_comparison"]:
        m = record["source"]
        assert record["target"] == int(rel[m].argmin())
        assert record["null_target"] == int(null_rel[m].argmin())
        gap = null_rel[m].min() - rel[m].min()
        assert record["difference"]["difference"] == pytest.approx(gap, abs=2 * STEP)
        assert record["beats_null"] == (record["outcome"] == "differ" and gap > 0)
    # a null without the source's shape is refused in one line
    other = _with_tokenizer(tiny_model("qwen2"), tok)  # 3 layers, the source has 4
    with pytest.raises(ValueError, match="does not have the source's architecture"):
        fit_linear_maps(source, target, MORE_TEXTS, null=other, **kwargs)


# ---------------------------------------------------------------- command, figures, numbers, docs


def _parser() -> argparse.ArgumentParser:
    from depthscope.cli.maps import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser


def test_null_option_parses_explains_itself_and_refuses_bad_values(capsys):
    parser = _parser()
    assert parser.parse_args(["map", "a", "b"]).null is None
    assert parser.parse_args(["map", "a", "b", "--null", "random-init"]).null == "random-init:0"
    assert parser.parse_args(["map", "a", "b", "--null", "random-init:4"]).null == "random-init:4"
    for bad in ("random", "random-init:", "random-init:x", "shuffled"):
        with pytest.raises(SystemExit):
            parser.parse_args(["map", "a", "b", "--null", bad])
        err = capsys.readouterr().err
        message = [line for line in err.splitlines() if "error:" in line]
        assert len(message) == 1 and "--null takes random-init or random-init:SEED" in message[0]
    with pytest.raises(SystemExit):
        parser.parse_args(["map", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--null random-init[:SEED]" in text and "freshly initialised weights" in text


@pytest.fixture(scope="module")
def null_run(tiny_model_dir, tmp_path_factory):
    """``depthscope map`` on the tiny model with ``--null random-init:1`` and enough held-out texts."""
    folder = tmp_path_factory.mktemp("map-null")
    lines = [text.replace("the", f"the {i}") for i, text in enumerate(TEXTS * 3)]
    (folder / "texts.txt").write_text("\n".join(lines) + "\n")
    out = folder / "run"
    args = _parser().parse_args(
        ["map", str(tiny_model_dir), str(tiny_model_dir), "--data", f"file:{folder / 'texts.txt'}"]
        + ["--tokens", "400", "--val-tokens", "600", "--ridge", "0.01", "--out", str(out)]
        + ["--null", "random-init:1"]
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEPTHSCOPE_CACHE", str(folder / "cache"))
        assert args.handler(args) == 0
    return out


def test_map_command_with_null_saves_intervals_ties_and_the_null(null_run, capsys):
    doc = json.loads((null_run / "results" / "linear-map.json").read_text())
    data = doc["data"]
    assert doc["settings"]["null"] == "random-init:1"
    assert data["bootstrap"]["computed"] and data["bootstrap"]["unit"] == "text"
    assert data["bootstrap"]["n_units"] == data["n_val_texts"] >= MIN_UNITS
    assert data["null"]["kind"] == "random-init" and data["null"]["init_seed"] == 1
    assert data["null"]["source"].startswith("random-init:1:")
    assert len(data["null_comparison"]) == len(data["best_target_test"]) == 4
    for record in data["best_target_test"]:
        assert set(record) >= {"best", "rel_err", "runner_up", "difference", "outcome", "tied"}
        assert record["difference"]["outcome"] == record["outcome"]
    assert sorted(p.name for p in (null_run / "figures").glob("*.png")) == [
        "linear-map_best_error.png",
        "linear-map_best_match.png",
        "linear-map_rel_err.png",
    ]
    numbers = Result.load(null_run / "results" / "linear-map.json").numbers()
    assert any(line.startswith("best target stated for") for line in numbers)
    assert any("beyond the random-init null" in line for line in numbers)


def _findings_runs():
    spec = importlib.util.spec_from_file_location(
        "findings_runs_maps", ROOT / "docs" / "findings_runs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_findings_render_the_intervals_of_a_kept_run_and_old_references(
    null_run, tmp_path, monkeypatch
):
    runs = _findings_runs()
    monkeypatch.setattr(runs, "MAP_REFERENCE", tmp_path / "map.json")
    monkeypatch.setattr(runs, "FIGURES", tmp_path)
    runs.take_map(null_run)
    block = runs.linear_map_block()
    assert "| 90% interval |" in block and "| null − trained |" in block
    assert "Intervals: 90% percentile bootstrap over the" in block
    assert "Null: the same maps from `random-init:1:" in block
    assert list(tmp_path.glob("linear-map_*_best_error.png"))  # the new figure is kept too
    kept = json.loads(runs.MAP_REFERENCE.read_text())
    for key in runs.MAP_UNCERTAINTY_KEYS:
        kept.pop(key)  # a reference saved before the bootstrap existed
    runs.MAP_REFERENCE.write_text(json.dumps(kept))
    old = runs.linear_map_block()
    assert "One run, no interval" in old and "| 90% interval |" not in old
