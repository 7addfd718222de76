"""Figures and the HTML report are drawn from saved result documents only.

Synthetic documents with the real schema cover every analysis (including ones whose analyses
may not exist yet); one test draws results computed on a tiny random model. The tests look at
what is plotted (image arrays, colour limits, tick labels, bar order), not only at file names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import AxesImage

from depthscope.core.errors import DepthscopeError
from depthscope.core.result import Result
from depthscope.figures.figure_files import draw, plot_result
from depthscope.figures.report import key_numbers, plot_run, write_report
from depthscope.figures.tokens import deepest_row

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
L = 6
TOKENS = ["<|begin_of_text|>", "5", "Ġ+", "Ġ7", "Ġ=", "Ġ$", "12"]  # answer: "12" (1 token)


# ---------------------------------------------------------------- synthetic documents


def upper_effect(n: int, seed: int, diagonal: float) -> np.ndarray:
    """A skip-effect matrix with the structure of the real one: zero below the diagonal."""
    rng = np.random.default_rng(seed)
    matrix = np.triu(rng.uniform(0.05, 0.9, (n, n)), k=1)
    np.fill_diagonal(matrix, diagonal)
    return matrix


def contributions_data(n: int = L) -> dict:
    depth = np.arange(n)
    rel = np.where(depth < n // 2, 0.4, 0.08)
    rel[0] = 2.5  # layer 0 often exceeds the 1.5 cap of the paper's ylim rule
    cos = np.where(depth < n // 2, -0.2, 0.3)
    norms = 1.0 + depth * 3.0
    return {
        "rel_att": rel * 0.6,
        "rel_mlp": rel * 0.7,
        "rel_layer": rel,
        "cos_att": cos * 0.5,
        "cos_mlp": cos * 0.8,
        "cos_layer": cos,
        "cos_io": np.full(n, 0.97),
        "max_rel_att": rel * 2,
        "max_rel_mlp": rel * 3,
        "max_rel_layer": rel * 3,
        "mean_norm_att": norms * 0.1,
        "mean_norm_mlp": norms * 0.2,
        "mean_norm_resid": norms,
        "max_norm_att": norms * 0.5,
        "max_norm_mlp": norms,
        "max_norm_resid": norms * 10,
    }


def effect_block(n: int, seed: int, diagonal: float) -> dict:
    effect = upper_effect(n, seed, diagonal)
    output = np.linspace(0.9, 0.2, n)
    return {
        "effect": effect,
        "output_change": output,
        "effect_max": effect,
        "effect_mean": effect / 2,
        "output_change_max": output,
        "output_change_mean": output / 2,
        "per_prompt": [
            {
                "prompt": p,
                "effect": upper_effect(n, seed + p + 1, diagonal),
                "output_change": output,
            }
            for p in range(2)
        ],
    }


def effects_data(n: int = L, diagonal: float = 1.0) -> dict:
    data = effect_block(n, 1, diagonal)
    data["attention"] = effect_block(n, 2, 0.4)
    data["mlp"] = effect_block(n, 3, 0.6)
    data["split_points"] = {"0": [8, 16], "1": [8]}
    data["skipped_prompts"] = []
    return data


def local_data(n: int = L) -> dict:
    current, future = upper_effect(n, 4, 0.0), upper_effect(n, 5, 0.0)
    return {
        "current": current,
        "current_max": current,
        "current_mean": current / 2,
        "future": future,
        "future_max": future,
        "future_mean": future / 2,
        "split_points": {"0": [8]},
    }


def logit_lens_data(n: int = L) -> dict:
    return {"kl": np.linspace(6.0, 0.1, n), "topk_overlap": np.linspace(0.05, 0.95, n)}


def token_maps(rows: int, seed: int, signed: bool) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(2):
        values = (
            rng.normal(0, 0.1, (rows, len(TOKENS)))
            if signed
            else rng.uniform(0, 0.2, (rows, len(TOKENS)))
        )
        values[:, 0] = 50.0  # BOS column: must not set the colour scale
        values[:, -1] = 0.0  # the last token predicts nothing measured
        maps.append(values)
    return maps


def igrad_data(n: int = L) -> dict:
    maps = token_maps(n, 6, signed=True)
    return {
        "prompts": [0, 1],
        "tokens": [TOKENS, TOKENS],
        "answer_tokens": [1, 1],
        "skipped_prompts": [],
        "attribution": maps,
        "completeness_gap": [np.full(n, 0.01), np.full(n, 0.02)],
        "f_input": [0.8, 0.6],
        "f_baseline": [np.full(n, 0.1), np.full(n, 0.1)],
        "mlp": {
            "attribution": token_maps(n, 7, signed=True),
            "completeness_gap": [np.zeros(n), np.zeros(n)],
            "f_input": [0.8, 0.6],
            "f_baseline": [np.zeros(n), np.zeros(n)],
        },
    }


def erasure_data(n: int = L) -> dict:
    return {
        "effect": token_maps(n + 1, 8, signed=False),
        "tokens": [TOKENS, TOKENS],
        "answer_tokens": [1, 1],
        "prompts": [0, 1],
        "skipped_prompts": [],
        "n_baseline_prompts": 10,
        "baseline_source": "builtin:arith-words",
    }


def depth_level(n: int, seed: int, accuracy: float) -> dict:
    effect = np.triu(upper_effect(n, seed, 0.0), k=1)
    importance = effect.sum(axis=1) / np.maximum(n - 1 - np.arange(n), 1)
    output = np.linspace(0.8, 0.1, n)
    score = lambda e: float((np.arange(n) * e).sum() / e.sum())  # noqa: E731
    entry = {"accuracy": accuracy, "n_examples": 20}
    for agg, scale in (("max", 1.0), ("mean", 0.5)):
        entry[f"effect_{agg}"] = effect * scale
        entry[f"output_{agg}"] = output * scale
        entry[f"importance_layer_{agg}"] = importance * scale
        entry[f"importance_output_{agg}"] = output * scale
        entry[f"depth_score_layer_{agg}"] = score(importance)
        entry[f"depth_score_output_{agg}"] = score(output)
    for name in (
        "importance_layer",
        "importance_output",
        "depth_score_layer",
        "depth_score_output",
    ):
        entry[name] = entry[f"{name}_max"]
    return entry


def depth_score_data(n: int = L) -> dict:
    levels = {str(h): depth_level(n, 10 + h, 0.9 - 0.2 * h) for h in (2, 3, 4)}
    return {"levels": levels, "split_points": {}, "skipped_prompts": []}


def linear_map_data(m: int = 4, n: int = 8) -> dict:
    """Relative error (M+1)×(L+1), lowest where relative depths match, no zero anywhere."""
    source = np.arange(m + 1)[:, None] / m
    target = np.arange(n + 1)[None, :] / n
    rel = 0.15 + 0.8 * np.abs(source - target)
    return {
        "rel_err": rel,
        "r2": 1 - rel,
        "best_target": rel.argmin(axis=1),
        "source_model": "Shallow-0.5B",
        "target_model": "Deep-3B",
    }


BUILDERS = {
    "contributions": (contributions_data, {}),
    "current-effects": (effects_data, {"aggregate": "max", "parts": ["layer", "attention", "mlp"]}),
    "future-effects": (
        lambda: effects_data(diagonal=0.0),
        {"aggregate": "max", "n_splits": 4, "parts": ["layer", "attention", "mlp"]},
    ),
    "local-effects": (local_data, {"aggregate": "max"}),
    "logit-lens": (logit_lens_data, {"k": 5, "kl_direction": "lens||final"}),
    "igrad": (igrad_data, {"steps": 32, "targets": ["layer", "mlp"]}),
    "erasure": (erasure_data, {"baseline_n": 10}),
    "depth-score": (depth_score_data, {"aggregate": "max"}),
    "linear-map": (linear_map_data, {}),
}

EXPECTED = {
    "contributions": [
        "mean_norms",
        "max_norms",
        "mean_relative_contribution",
        "max_relative_contribution",
        "avg_cossims",
        "avg_io_cossims",
    ],
    "current-effects": [
        "effect_layer",
        "output_change_layer",
        "effect_attention",
        "output_change_attention",
        "effect_mlp",
        "output_change_mlp",
        "per_prompt_layer",
    ],
    "local-effects": ["current", "future"],
    "logit-lens": ["kl_div", "topk_overlaps"],
    "igrad": ["layer_prompt0", "layer_prompt1", "mlp_prompt0", "mlp_prompt1"],
    "erasure": ["prompt0", "prompt1"],
    "depth-score": [
        "effect_level_2",
        "effect_level_3",
        "effect_level_4",
        "importance_layer_max",
        "importance_output_max",
        "summary_max",
        "importance_layer_mean",
        "importance_output_mean",
        "summary_mean",
    ],
    "linear-map": ["rel_err", "best_match"],
}
EXPECTED["future-effects"] = EXPECTED["current-effects"]


def make_result(analysis: str, model: str = "tiny-model", **extra: object) -> Result:
    build, settings = BUILDERS[analysis]
    result = Result(
        analysis=analysis,
        model={"name": model, "n_layers": L, "family": "llama"},
        settings=dict(settings),
        n_prompts=10,
        n_tokens=345,
        data=build(),
        extra={"seconds": 1.5, "data_source": "builtin:hops", **extra},
    )
    return roundtrip(result)


def roundtrip(result: Result) -> Result:
    """Through JSON, as the report sees it (arrays become nested lists, NaN becomes null)."""
    doc = json.loads(json.dumps(result.to_json()))
    fields = ("analysis", "model", "settings", "n_prompts", "n_tokens", "data")
    extra = {k: v for k, v in doc.items() if k not in (*fields, "schema_version")}
    return Result(**{k: doc[k] for k in fields}, extra=extra)


def save(result: Result, run_dir: Path) -> Path:
    path = run_dir / "results" / f"{result.analysis}.json"
    result.save(path)
    return path


def write_run(run_dir: Path) -> Path:
    """A run directory with every analysis's result and a realistic run.json."""
    for analysis in BUILDERS:
        save(make_result(analysis), run_dir)
    run = {
        "status": "finished",
        "model": {"name": "tiny-model", "family": "llama", "n_layers": L, "d_model": 32},
        "data": {"source": "builtin:arith-words", "n_requested": 10},
        "n_prompts": 10,
        "n_tokens": 345,
        "timings": {"contributions": 0.25, "future-effects": 12.5},
        "settings": {"contributions": {"eps": 1e-6}},
        "versions": {"depthscope": "0.1.0"},
    }
    (run_dir / "run.json").write_text(json.dumps(run))
    return run_dir


@pytest.fixture(scope="module")
def plotted_run(tmp_path_factory) -> tuple[Path, list[Path]]:
    """Every analysis drawn once (PDF output is the slow part), shared by the file tests."""
    run_dir = write_run(tmp_path_factory.mktemp("run"))
    return run_dir, plot_run(run_dir)


def image_of(fig) -> AxesImage:
    images = [image for ax in fig.axes for image in ax.images]
    assert len(images) >= 1
    return images[0]


def assert_valid_files(paths: list[Path]) -> None:
    for path in paths:
        data = path.read_bytes()
        assert len(data) > 1000, path
        magic = PNG_MAGIC if path.suffix == ".png" else b"%PDF-"
        assert data.startswith(magic), path


# ---------------------------------------------------------------- files


def test_plot_run_writes_png_and_pdf_for_every_figure(plotted_run) -> None:
    run_dir, written = plotted_run
    expected = {
        run_dir / "figures" / f"{analysis}_{what}.{suffix}"
        for analysis, names in EXPECTED.items()
        for what in names
        for suffix in ("png", "pdf")
    }
    assert set(written) == expected
    assert_valid_files(written)
    assert not [
        p for p in (run_dir / "figures").iterdir() if p.name.startswith(".")
    ]  # no temp files
    index = json.loads((run_dir / "figures" / "index.json").read_text())
    assert index["contributions"][0] == "contributions_mean_norms"  # drawing order is kept


def test_empty_run_dir_is_a_one_line_error(tmp_path: Path) -> None:
    for case in (tmp_path, tmp_path / "empty"):
        (tmp_path / "empty" / "results").mkdir(parents=True, exist_ok=True)
        with pytest.raises(DepthscopeError) as error:
            plot_run(case)
        assert "\n" not in str(error.value) and "depthscope analyze" in str(error.value)


def test_unknown_and_broken_results_are_skipped_with_a_warning(tmp_path: Path, capsys) -> None:
    save(make_result("logit-lens"), tmp_path)
    mystery = Result("mystery", {"name": "m"}, {}, 1, 1, {"x": [1]})
    save(mystery, tmp_path)
    broken = make_result("contributions")
    del broken.data["rel_att"]
    save(broken, tmp_path)
    written = plot_run(tmp_path)
    err = capsys.readouterr().err
    assert "mystery" in err and "contributions" in err and "rel_att" in err
    assert {p.name for p in written} == {
        f"logit-lens_{w}.{s}" for w in ("kl_div", "topk_overlaps") for s in ("png", "pdf")
    }
    with pytest.raises(DepthscopeError, match="rel_att"):
        plot_result(broken, tmp_path / "figures")


def test_redrawing_removes_figures_that_no_longer_exist(tmp_path: Path) -> None:
    result = make_result("erasure")
    save(result, tmp_path)
    plot_run(tmp_path)
    for key in ("effect", "tokens", "answer_tokens", "prompts"):
        result.data[key] = result.data[key][:1]
    save(result, tmp_path)
    plot_run(tmp_path)
    names = sorted(p.name for p in (tmp_path / "figures").glob("erasure_*"))
    assert names == ["erasure_prompt0.pdf", "erasure_prompt0.png"]


# ---------------------------------------------------------------- what is plotted


@pytest.mark.parametrize("analysis", ["current-effects", "future-effects"])
def test_effect_heatmap_shows_the_saved_matrix_on_a_fixed_scale(analysis: str) -> None:
    result = make_result(analysis)
    figures = draw(result)
    for part, block in (("layer", result.data), ("attention", result.data["attention"])):
        image = image_of(figures[f"effect_{part}"])
        np.testing.assert_allclose(np.asarray(image.get_array()), np.asarray(block["effect"]))
        assert image.get_clim() == (0, 1) and image.get_cmap().name == "viridis"
        ax = image.axes
        assert ax.get_xlabel() == "Effect @ layer"
        assert "tiny-model" in ax.get_title() and "max over 10 prompts" in ax.get_title()
        colorbar_labels = [a.get_ylabel() for a in figures[f"effect_{part}"].axes]
        assert "Relative change" in colorbar_labels
    assert image_of(figures["effect_layer"]).axes.get_ylabel() == "Layer skipped"
    bars = figures["output_change_layer"].axes[0]
    heights = [patch.get_height() for patch in bars.patches]
    np.testing.assert_allclose(heights, result.data["output_change"])
    assert bars.get_ylabel() == "Output change norm" and bars.get_xlim() == (-1, L)


def test_local_effects_two_heatmaps_of_the_saved_matrices() -> None:
    result = make_result("local-effects")
    figures = draw(result)
    for variant in ("current", "future"):
        np.testing.assert_allclose(image_of(figures[variant]).get_array(), result.data[variant])


def test_linear_map_heatmap_drops_embeddings_without_zero_padding() -> None:
    result = make_result("linear-map")
    figures = draw(result)
    shown = np.asarray(image_of(figures["rel_err"]).get_array())
    rel = np.asarray(result.data["rel_err"])
    assert shown.shape == (rel.shape[0] - 1, rel.shape[1] - 1)
    np.testing.assert_allclose(shown, rel[1:, 1:])
    assert (shown != 0).any(axis=1).all() and (shown != 0).any(axis=0).all()  # Fig. 8, no padding
    ax = image_of(figures["rel_err"]).axes
    assert "Shallow-0.5B" in ax.get_ylabel() and "Deep-3B" in ax.get_xlabel()
    best = figures["best_match"].axes[0]
    diagonal, curve = best.lines[:2]
    np.testing.assert_allclose(diagonal.get_xydata(), [[0, 0], [1, 1]])
    np.testing.assert_allclose(curve.get_ydata(), np.asarray(result.data["best_target"][1:]) / 8)


def test_token_maps_drop_the_last_token_and_keep_bos_out_of_the_scale() -> None:
    igrad = draw(make_result("igrad"))["layer_prompt0"]
    image = image_of(igrad)
    shown = np.asarray(image.get_array())
    data = np.asarray(make_result("igrad").data["attribution"][0])
    np.testing.assert_allclose(shown, data[:, :-1])
    scale = np.abs(data[:, 1:-1]).max()
    assert image.get_clim() == pytest.approx((-scale, scale)) and image.get_cmap().name == "seismic"
    assert image.origin == "lower"  # layer 0 at the bottom
    labels = [t.get_text() for t in image.axes.get_xticklabels()]
    assert labels == ["BOS", "5", "_+", "_7", "_=", r"_\$"]
    erasure = image_of(draw(make_result("erasure"))["prompt1"])
    data = np.asarray(make_result("erasure").data["effect"][1])
    assert erasure.get_array().shape == (L + 1, len(TOKENS) - 1)
    assert erasure.get_clim() == pytest.approx((0, data[:, 1:-1].max()))


def test_contribution_bars_follow_the_paper_style() -> None:
    figures = draw(make_result("contributions"))
    rel = figures["mean_relative_contribution"].axes[0]
    assert rel.get_ylim() == (0, 1.5)  # a value above 1.5 caps the axis (paper Fig. 2a)
    assert any("2.5" in t.get_text() for t in rel.texts)  # the clipped value is written
    assert figures["max_relative_contribution"].axes[0].get_ylim() == (0, 2)
    assert rel.get_xlim() == (-0.5, L - 0.5)
    at_zero = [p for p in rel.patches if abs(p.get_x() + p.get_width() / 2) < 1e-9]
    by_height = sorted(at_zero, key=lambda p: abs(p.get_height()))
    assert [p.get_zorder() for p in by_height] == sorted(
        (p.get_zorder() for p in at_zero), reverse=True
    )
    assert by_height[0].get_width() == pytest.approx(1.1)
    legend = [t.get_text() for t in rel.get_legend().get_texts()]
    assert legend == [r"$\|a_l\|/\|h_l\|$", r"$\|m_l\|/\|h_l+a_l\|$", r"$\|a_l+m_l\|/\|h_l\|$"]
    small = make_result("contributions")
    small.data["rel_layer"] = [0.5] * L
    small.data["rel_att"] = [0.3] * L
    small.data["rel_mlp"] = [0.4] * L
    assert draw(small)["mean_relative_contribution"].axes[0].get_ylim()[1] < 1.5


def test_depth_score_summary_and_importance() -> None:
    result = make_result("depth-score")
    figures = draw(result)
    summary = figures["summary_max"].axes[0]
    heights = [p.get_height() for p in summary.patches]
    levels = result.data["levels"]
    expected = [levels[k]["depth_score_layer_max"] for k in levels] + [
        levels[k]["depth_score_output_max"] for k in levels
    ]
    np.testing.assert_allclose(heights, expected)
    assert [t.get_text() for t in summary.get_xticklabels()] == ["2 hops", "3 hops", "4 hops"]
    assert any("acc 50%" in t.get_text() for t in summary.texts)
    np.testing.assert_allclose(
        image_of(figures["effect_level_3"]).get_array(), levels["3"]["effect_max"]
    )


def test_dollar_signs_in_names_never_start_mathtext(tmp_path: Path) -> None:
    result = make_result("logit-lens", model="odd$name_with$dollars")
    written = plot_result(result, tmp_path)
    assert_valid_files(written)


def test_many_layers_get_thinned_ticks() -> None:
    result = make_result("current-effects")
    n = 80
    result.data = effects_data(n)
    figure = draw(result)["effect_layer"]
    ax = image_of(figure).axes
    assert 5 <= len(ax.get_xticks()) <= 12 and ax.get_xticks()[0] == 0


# ---------------------------------------------------------------- report


def test_report_is_standalone_with_key_numbers(plotted_run) -> None:
    run_dir, written = plotted_run
    report = write_report(run_dir)
    text = report.read_text()
    pngs = [p for p in written if p.suffix == ".png"]
    # and the verdict's evidence and the sensitivity of its thresholded numbers
    assert text.count("data:image/png;base64,") == len(pngs) + 2
    assert text.index("verdict_evidence") < text.index("<h2>Analyses</h2>")  # they lead
    assert text.index("verdict_sensitivity") < text.index("<h2>Analyses</h2>")
    assert "tiny-model" in text and "builtin:arith-words" in text and "12.5" in text
    assert "top-5 overlap with the final prediction first exceeds 0.5 at layer 3" in text
    assert "drops below half of the first-half mean at layer 3" in text
    assert re.search(r"layer: mean effect on later layers .* first-half vs second-half", text)
    assert "level 2: depth score" in text
    assert "<script" not in text


def test_report_without_run_json_or_figures_draws_what_it_needs(tmp_path: Path) -> None:
    save(make_result("future-effects"), tmp_path)
    report = write_report(tmp_path)
    text = report.read_text()
    assert text.count("data:image/png;base64,") == len(EXPECTED["future-effects"]) + 2
    assert "no readable run.json" in text
    (tmp_path / "run.json").write_text(
        json.dumps({"model": {"name": "partial"}})
    )  # most keys missing
    assert "depthscope: partial" in write_report(tmp_path).read_text()


def test_key_numbers() -> None:
    numbers = " ".join(key_numbers(make_result("future-effects")))
    assert "first-half vs second-half" in numbers and "output change" in numbers
    numbers = " ".join(key_numbers(make_result("linear-map")))
    assert "mean |difference|" in numbers
    matrix = np.zeros((4, 5))
    matrix[:, 0] = 9.0  # column 0 never counts
    matrix[:3, 2] = 1.0
    matrix[3, 3] = 5.0  # answer column (answer_len=2 → columns 3, 4)
    assert deepest_row(matrix, answer_len=2) == 2


# ---------------------------------------------------------------- real results


def test_figures_from_a_tiny_model_run(tmp_path: Path) -> None:
    from tiny_models import random_ids, tiny_model

    import depthscope as ds

    lm = tiny_model("llama")
    prompts = random_ids([20, 15])
    for name in (
        "contributions",
        "current-effects",
        "future-effects",
        "local-effects",
        "logit-lens",
    ):
        data = ds.analyze(lm, name, prompts).data
        result = Result(name, {"name": "tiny", "n_layers": lm.n_layers}, {}, 2, 35, data)
        save(result, tmp_path)
    written = plot_run(tmp_path)
    assert_valid_files(written)
    saved = Result.load(tmp_path / "results" / "future-effects.json")
    image = image_of(draw(saved)["effect_layer"])
    np.testing.assert_allclose(np.asarray(image.get_array()), np.asarray(saved.data["effect"]))
    assert write_report(tmp_path).stat().st_size > 10_000


# ---------------------------------------------------------------- honest figures


def title_of(fig) -> str:
    return " ".join(ax.get_title() for ax in fig.axes) + (
        fig._suptitle.get_text() if fig._suptitle else ""
    )


def test_heatmaps_say_when_values_exceed_the_colour_cap() -> None:
    result = make_result("future-effects")
    calm = draw(result)["effect_layer"]
    assert "shown at the cap" not in title_of(calm)
    assert image_of(calm).colorbar is None or image_of(calm).colorbar.extend == "neither"
    loud = make_result("future-effects")
    matrix = np.asarray(loud.data["effect"], dtype=float)
    matrix[0, 1:4] = [1.5, 2.0, 3.0]  # 3 of the 36 cells exceed the 0..1 scale
    loud.data["effect"] = matrix.tolist()
    fig = draw(loud)["effect_layer"]
    assert "8% of cells above 1 are shown at the cap (max 3)" in title_of(fig)
    assert image_of(fig).colorbar.extend == "max"
    np.testing.assert_allclose(np.asarray(image_of(fig).get_array()), matrix)  # data unchanged


def test_norms_spanning_orders_of_magnitude_get_a_log_axis() -> None:
    result = make_result("contributions")
    for key in ("mean_norm_att", "mean_norm_mlp", "mean_norm_resid"):
        result.data[key] = np.linspace(1, 20, L).tolist()  # within a factor of 20
    assert draw(result)["mean_norms"].axes[0].get_yscale() == "linear"
    result.data["mean_norm_resid"] = (np.logspace(0, 4, L)).tolist()  # 1 .. 10 000
    fig = draw(result)["mean_norms"]
    assert fig.axes[0].get_yscale() == "log" and "log scale" in title_of(fig)


def test_clipped_bars_carry_their_own_value_at_their_position() -> None:
    result = make_result("contributions")
    rel = draw(result)["mean_relative_contribution"].axes[0]
    labels = {round(t.get_position()[0]): t.get_text() for t in rel.texts}
    tallest = np.max(
        [np.asarray(result.data[k], dtype=float) for k in ("rel_att", "rel_mlp", "rel_layer")],
        axis=0,
    )
    assert labels == {x: f"{v:.3g}" for x, v in enumerate(tallest) if v > 1.5}


def test_per_prompt_figures_say_which_prompts_they_show() -> None:
    result = make_result("future-effects")
    fig = draw(result)["per_prompt_layer"]
    assert "single prompts (all 2 prompts)" in title_of(fig)
    many = make_result("future-effects")
    entry = many.data["per_prompt"][0]
    many.data["per_prompt"] = [{**entry, "prompt": p} for p in (3, 5, 8, 9, 12, 20)]
    assert "prompts 3, 5, 8, 9 of 6" in title_of(draw(many)["per_prompt_layer"])


def test_bar_charts_over_layers_share_one_width() -> None:
    widths = set()
    for analysis, keys in (
        ("contributions", ("mean_norms", "avg_cossims")),
        ("future-effects", ("output_change_layer",)),
        ("logit-lens", ("kl_div", "topk_overlaps")),
    ):
        figures = draw(make_result(analysis))
        widths |= {figures[key].get_figwidth() for key in keys}
    assert widths == {6.0}


def test_every_figure_has_a_how_to_read_caption() -> None:
    from depthscope.core.registry import card

    for analysis in BUILDERS:
        info = card(analysis)
        for key in draw(make_result(analysis)):
            assert info.caption(key), f"{analysis}: figure {key} has no caption"


def test_report_shows_the_captions(tmp_path: Path) -> None:
    make_result("logit-lens").save(tmp_path / "results" / "logit-lens.json")
    page = write_report(tmp_path).read_text()
    assert "falls where layers only refine the prediction" in page
