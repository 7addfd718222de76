"""Linear maps (E10): streaming ridge solver, held-out metrics, token alignment, end to end."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from tiny_models import tiny_model

from depthscope.core.errors import DepthscopeError
from depthscope.experiments.maps import (
    Aligner,
    HeldOutMetrics,
    MapStatistics,
    align_offsets,
    fit_linear_maps,
    solve,
    target_groups,
)
from depthscope.experiments.maps.ridge import EPS

# ---------------------------------------------------------------- helpers


class CharTokenizer:
    """Fake fast tokenizer: ``<bos>`` then one token per character (or per ``width`` characters)."""

    is_fast = True
    pad_token_id = 0
    all_special_ids = [0, 1, 2]

    def __init__(self, width: int = 1, bos: bool = True, vocab: int = 96) -> None:
        self.width, self.bos, self.vocab = width, bos, vocab

    def get_vocab(self) -> dict[str, int]:
        return {"width": self.width, "bos": int(self.bos)}

    def __call__(self, text, add_special_tokens=True, **kwargs) -> dict:
        spans = [(i, min(i + self.width, len(text))) for i in range(0, len(text), self.width)]
        ids = [3 + sum(map(ord, text[a:b])) % (self.vocab - 3) for a, b in spans]
        special = [False] * len(ids)
        if self.bos and add_special_tokens:
            ids, spans, special = [1, *ids], [(0, 0), *spans], [True, *special]
        return {"input_ids": ids, "offset_mapping": spans, "special_tokens_mask": special}


TEXTS = [
    "The quick brown fox jumps over the lazy dog near the river bank today.",
    "Exceptions are raised when an error is detected and handlers catch them.",
    "A list comprehension builds a new list from an iterable in one expression.",
    "Names refer to objects; assignment binds a name to an object in a scope.",
    "Every module has its own namespace, created when the module is imported.",
    "Generators produce values lazily, one at a time, when asked for the next.",
] * 3


def planted(n: int, d_in: int, d_out: int, noise: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=gen, dtype=torch.float64) * 2 + 3
    w = torch.randn(d_in, d_out, generator=gen, dtype=torch.float64)
    b = torch.randn(d_out, generator=gen, dtype=torch.float64) * 5
    y = x @ w + b + noise * torch.randn(n, d_out, generator=gen, dtype=torch.float64)
    return x, y, w, b


def streamed(x: torch.Tensor, y: torch.Tensor, cuts: list[int]) -> MapStatistics:
    """Statistics of one source and one target boundary, fed in uneven chunks."""
    stats = MapStatistics.zeros(1, x.shape[1], 1, y.shape[1])
    bounds = [0, *cuts, x.shape[0]]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        stats.update(x[None, a:b], y[None, a:b], chunk=7)
    return stats


# ---------------------------------------------------------------- solver


def test_planted_affine_map_is_recovered():
    x, y, w, b = planted(4500, 9, 5, noise=1e-3)  # 4000 training tokens, 500 held out
    other = torch.randn(4500, 9, dtype=torch.float64)  # a source boundary that explains nothing
    stats = MapStatistics.zeros(2, 9, 1, 5)
    for start in range(0, 4000, 900):
        sl = slice(start, min(start + 900, 4000))
        stats.update(torch.stack([x[sl], other[sl]]), y[None, sl])
    maps = solve(stats, ridge=0.0)
    assert torch.allclose(maps.weight[0], w, atol=1e-4)
    assert torch.allclose(maps.bias[0], b, atol=1e-3)
    metrics = HeldOutMetrics.zeros(2, 1, 5)
    fast = solve(stats, ridge=0.0, dtype=torch.float32)  # stored in float32, solved in float64
    assert torch.equal(fast.weight, maps.weight.float()) and torch.equal(
        fast.bias, maps.bias.float()
    )
    metrics.update(fast, torch.stack([x[4000:], other[4000:]]), y[None, 4000:])
    rel = metrics.rel_err()
    expected = (1e-3 * 5**0.5 / y[4000:].norm(dim=1)).mean()  # noise norm / target norm
    assert float(rel[0, 0]) == pytest.approx(float(expected), rel=0.2)
    assert rel[1, 0] > 0.3  # the unrelated source does not predict y
    assert metrics.r2()[0, 0] > 1 - 1e-6


@pytest.mark.parametrize("ridge", [0.0, 0.05])
def test_streaming_solution_equals_direct_solve(ridge):
    x, y, _, _ = planted(600, 12, 4, noise=0.5, seed=3)
    maps = solve(streamed(x, y, cuts=[1, 100, 101, 377]), ridge=ridge)
    a = torch.cat([x, torch.ones(600, 1, dtype=torch.float64)], dim=1)
    if ridge == 0.0:
        direct = torch.linalg.lstsq(a, y, driver="gelsd").solution
    else:
        centred = x - x.mean(0)
        lam = ridge * float((centred * centred).sum()) / x.shape[1]  # trace(C) / d
        penalty = torch.diag(torch.tensor([lam] * 12 + [0.0], dtype=torch.float64))
        direct = torch.linalg.solve(a.T @ a + penalty, a.T @ y)
        assert float(maps.lam[0]) == pytest.approx(lam, rel=1e-12)
    assert torch.allclose(maps.weight[0], direct[:-1], atol=1e-8, rtol=0)
    assert torch.allclose(maps.bias[0], direct[-1], atol=1e-8, rtol=0)


def test_statistics_merge_like_one_stream():
    x, y, _, _ = planted(300, 6, 3, noise=0.1)
    whole = streamed(x, y, cuts=[])
    part = streamed(x[:120], y[:120], cuts=[50])
    part.merge(streamed(x[120:], y[120:], cuts=[]))
    assert torch.allclose(whole.gram, part.gram, rtol=1e-12)
    assert torch.allclose(whole.cross, part.cross, rtol=1e-12)
    assert part.n_tokens == 300


def test_rank_deficient_without_ridge_is_a_clear_error():
    x = torch.randn(5, 8, dtype=torch.float64)  # fewer tokens than dimensions
    stats = streamed(x, torch.randn(5, 2, dtype=torch.float64), cuts=[])
    with pytest.raises(DepthscopeError, match="rank-deficient"):
        solve(stats, ridge=0.0)
    assert torch.isfinite(solve(stats, ridge=0.1).weight).all()


def test_held_out_metric_matches_direct_computation():
    gen = torch.Generator().manual_seed(7)
    x_tr = torch.randn(2, 200, 6, generator=gen, dtype=torch.float64)
    y_tr = torch.randn(3, 200, 4, generator=gen, dtype=torch.float64) + x_tr[0, :, :4]
    stats = MapStatistics.zeros(2, 6, 3, 4)
    stats.update(x_tr, y_tr)
    maps = solve(stats, ridge=0.01)
    x_val = torch.randn(2, 50, 6, generator=gen, dtype=torch.float64)
    y_val = torch.randn(3, 50, 4, generator=gen, dtype=torch.float64) + x_val[0, :, :4]
    y_val[1, 3] = 0.0  # a zero target: its ratio uses the clamped denominator
    metrics = HeldOutMetrics.zeros(2, 3, 4)
    metrics.update(maps, x_val[:, :20], y_val[:, :20], chunk=6)
    metrics.update(maps, x_val[:, 20:], y_val[:, 20:])
    metrics.add_baseline(stats.target_mean(), y_val)
    for m in range(2):
        for ell in range(3):
            w = maps.weight[m][:, ell * 4 : (ell + 1) * 4]
            pred = x_val[m] @ w + maps.bias[m][ell * 4 : (ell + 1) * 4]
            err = (y_val[ell] - pred).norm(dim=1)
            ratio = (err / y_val[ell].norm(dim=1).clamp_min(EPS)).mean()
            sst = ((y_val[ell] - y_val[ell].mean(0)) ** 2).sum()
            assert float(metrics.rel_err()[m, ell]) == pytest.approx(float(ratio), rel=1e-10)
            r2 = 1 - (err**2).sum() / sst
            assert float(metrics.r2()[m, ell]) == pytest.approx(float(r2), rel=1e-10)
    mean = y_tr.mean(1)
    base = ((y_val - mean[:, None]).norm(dim=2) / y_val.norm(dim=2).clamp_min(EPS)).mean(1)
    assert torch.allclose(metrics.baseline(), base, rtol=1e-10)


def test_target_groups_respect_the_memory_budget():
    assert target_groups(19, 640, 31, 576, 8 * 2**30) == [list(range(31))]
    groups = target_groups(19, 640, 31, 576, 1 * 2**30)
    assert [i for g in groups for i in g] == list(range(31))
    per_target = 12 * 19 * 641 * 576
    assert all(len(g) * per_target + 8 * 19 * 641**2 <= 2**30 for g in groups)
    assert target_groups(3, 4, 5, 4, 1) == [[0], [1], [2], [3], [4]]


# ---------------------------------------------------------------- alignment


def test_alignment_on_hand_made_tokenizations():
    # text: "ab cd, é!"  (é split into two byte pieces sharing its span on the target side)
    source = [
        (0, 0),
        (0, 2),
        (2, 5),
        (5, 6),
        (6, 7),
        (7, 8),
        (8, 9),
    ]  # <bos> ab | cd | , | ' ' | é | !
    src_special = [True] + [False] * 6
    target = [(0, 1), (1, 2), (2, 3), (3, 6), (6, 8), (7, 8), (8, 9)]
    # a | b | ' ' | "cd," (merges across a source boundary) | ' '+é byte 1 | é byte 2 | !
    # (byte-level pieces of a character report the whole character's span)
    src_pos, tgt_pos = align_offsets(source, target, src_special, None)
    # shared ends: 2 (ab / b), 6 (, / "cd,"), 8 (é / its last piece), 9 (!); 5 and 7 are not
    assert src_pos == [1, 3, 5, 6]
    assert tgt_pos == [1, 3, 5, 6]


def test_alignment_drops_position_zero_and_special_tokens():
    # no BOS on either side: both first tokens end at 3 but position 0 never aligns
    assert align_offsets([(0, 3), (3, 5)], [(0, 3), (3, 5)]) == ([1], [1])
    # a special token in the middle (empty span) and one flagged special with a span
    source = [(0, 0), (0, 3), (3, 3), (3, 5), (5, 7)]
    target = [(0, 0), (0, 3), (3, 5), (5, 7)]
    assert align_offsets(source, target, None, [True, False, True, False]) == ([1, 4], [1, 3])


def test_aligner_paths():
    same = Aligner(CharTokenizer(), CharTokenizer())
    item = same("hello")
    assert same.method == "same-tokenizer" and item.source_ids == item.target_ids
    assert item.target_positions == [1, 2, 3, 4, 5]  # BOS (position 0) dropped
    diff = Aligner(CharTokenizer(width=1), CharTokenizer(width=2, bos=False), max_tokens=3)
    item = diff("abcdefghij")
    # target: ab cd ef (capped at 3 tokens, position 0 "ab" dropped); source cut at character 6
    assert item.target_positions == [1, 2]
    assert item.source_positions == [4, 6]
    assert len(item.source_ids) == 7


# ---------------------------------------------------------------- end to end


def _with_tokenizer(lm, tokenizer):
    lm.tokenizer = tokenizer
    return lm


def test_end_to_end_same_tokenizer_tiny_models():
    tok = CharTokenizer()
    source = _with_tokenizer(tiny_model("llama"), tok)
    target = _with_tokenizer(tiny_model("gemma3"), tok)
    data = fit_linear_maps(
        source, target, TEXTS, train_tokens=600, val_tokens=150, ridge=1e-3, batch_size=4
    )
    rel, r2 = torch.as_tensor(data["rel_err"]), torch.as_tensor(data["r2"])
    assert rel.shape == (5, 5) and r2.shape == (5, 5)
    assert torch.isfinite(rel).all() and torch.isfinite(r2).all()
    assert (rel >= 0).all() and (r2 <= 1).all()
    assert len(data["best_target"]) == 5
    assert data["best_target"] == rel.argmin(dim=1).tolist()
    assert (data["n_train_tokens"], data["n_val_tokens"]) == (600, 150)
    assert data["alignment"] == "same-tokenizer"
    assert (data["source_layers"], data["target_layers"]) == (4, 4)
    # same tokenizer: everything but each text's BOS aligns
    assert data["aligned_fraction"] == pytest.approx(
        data["n_aligned_positions"] / data["n_target_positions"]
    )
    assert data["aligned_fraction"] > 0.95
    # a model mapped onto itself: every boundary predicts itself (almost) exactly
    self_map = fit_linear_maps(
        source, source, TEXTS, train_tokens=600, val_tokens=150, ridge=1e-9, batch_size=4
    )
    assert torch.as_tensor(self_map["rel_err"]).diagonal().max() < 1e-4


def test_end_to_end_different_tokenizers_and_target_groups():
    source = _with_tokenizer(tiny_model("llama"), CharTokenizer(width=1))
    target = _with_tokenizer(tiny_model("qwen2"), CharTokenizer(width=2, bos=False))
    kwargs = dict(train_tokens=300, val_tokens=80, ridge=1e-2, batch_size=3)
    one = fit_linear_maps(source, target, TEXTS, **kwargs)
    split = fit_linear_maps(source, target, TEXTS, memory_gb=1e-6, **kwargs)
    assert one["alignment"] == "shared-character-ends"
    assert 0.8 < one["aligned_fraction"] < 1.0  # position 0 of the target never aligns
    assert one["target_groups"] == 1 and split["target_groups"] == 4
    rel_one, rel_split = torch.as_tensor(one["rel_err"]), torch.as_tensor(split["rel_err"])
    assert rel_one.shape == (5, 4)
    assert torch.allclose(rel_one, rel_split, rtol=1e-6)


def test_ridge_sweep_equals_one_fit_per_ridge():
    """The sweep solves every strength from one pass of statistics; each entry must be what a
    separate fit with that ridge finds, and the main result must not change."""
    tok = CharTokenizer()
    source = _with_tokenizer(tiny_model("llama"), tok)
    target = _with_tokenizer(tiny_model("gpt_neox"), tok)
    kwargs = dict(train_tokens=400, val_tokens=100, batch_size=4)
    swept = fit_linear_maps(source, target, TEXTS, ridge=1e-3, ridge_sweep=(0.0, 1e-1), **kwargs)
    assert [row["ridge"] for row in swept["ridge_sweep"]] == [0.0, 1e-3, 1e-1]
    for row in swept["ridge_sweep"]:
        alone = fit_linear_maps(source, target, TEXTS, ridge=row["ridge"], **kwargs)
        rel = torch.as_tensor(alone["rel_err"])
        assert row["rel_err_mean"] == pytest.approx(float(rel.mean()), rel=1e-9)
        assert row["best_target"] == alone["best_target"]
        if row["ridge"] == 1e-3:
            assert torch.equal(torch.as_tensor(swept["rel_err"]), rel)
    means = [row["rel_err_mean"] for row in swept["ridge_sweep"]]
    assert len(set(means)) == 3  # the strengths are really different fits
    assert "ridge_sweep" not in fit_linear_maps(source, target, TEXTS, ridge=1e-3, **kwargs)


def test_too_few_tokens_is_a_one_line_error():
    tok = CharTokenizer()
    source = _with_tokenizer(tiny_model("llama"), tok)
    with pytest.raises(DepthscopeError, match=r"only \d+ aligned tokens .* lower --tokens"):
        fit_linear_maps(source, source, TEXTS[:2], train_tokens=500, val_tokens=100, ridge=0.1)


def test_map_command_writes_result_run_and_figures(tiny_model_dir, tmp_path, capsys):
    from depthscope.cli.maps import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "run"
    args = parser.parse_args(
        ["map", str(tiny_model_dir), str(tiny_model_dir), "--tokens", "400", "--val-tokens", "100"]
        + ["--out", str(out), "--ridge", "0.01"]
    )
    assert args.handler(args) == 0
    doc = json.loads((out / "results" / "linear-map.json").read_text())
    assert doc["analysis"] == "linear-map"
    assert set(doc["model"]) == {"source", "target", "name"}
    assert len(doc["data"]["rel_err"]) == 4 and len(doc["data"]["rel_err"][0]) == 4
    assert doc["n_tokens"] == 500
    assert json.loads((out / "run.json").read_text())["analyses"] == ["linear-map"]
    assert sorted(p.name for p in (out / "figures").glob("*.png")) == [
        "linear-map_best_match.png",
        "linear-map_rel_err.png",
    ]
    assert "best target layer" in capsys.readouterr().out


def test_ridge_sweep_option_parses_and_refuses_what_is_not_a_number(capsys):
    from depthscope.cli.maps import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["map", "a", "b", "--ridge-sweep", "0,1e-5,0.1"])
    assert args.ridge_sweep == (0.0, 1e-5, 0.1)
    with pytest.raises(SystemExit):
        parser.parse_args(["map", "a", "b", "--ridge-sweep", "0,small"])
    assert "--ridge-sweep takes comma-separated numbers" in capsys.readouterr().err
