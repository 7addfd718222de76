"""The public API: ``import depthscope as ds``, Result methods, wrapping and adapters, export."""

from __future__ import annotations

import csv
import dataclasses

import pytest
import torch
from tiny_models import tiny_model

import depthscope as ds
from depthscope.cli import main
from depthscope.core.errors import DepthscopeError
from depthscope.core.result import TIDY_COLUMNS, Result
from depthscope.models.adapters import ADAPTERS

TEXT = "Problem: Sara has 12 apples. She buys 7 more. How many apples does she have now?"


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    return ds.load_model(str(tiny_model_dir), progress=False)


def test_three_lines_on_a_string(lm):
    result = ds.analyze(lm, "future-effects", TEXT, parts=("layer",))
    assert isinstance(result, Result) and result.n_prompts == 1
    assert result.n_tokens == len(lm.tokenizer(TEXT)["input_ids"])
    n = lm.n_layers
    assert len(result.data["effect"]) == n and len(result.data["output_change"]) == n
    assert list(result.plot()) == [
        "effect_layer_position_mean",
        "effect_layer",
        "output_change_layer",
        "output_change_layer_position_mean",
        "per_prompt_layer",
    ]
    assert any("first-half vs second-half" in line for line in result.numbers())
    assert "<img" in result._repr_html_() and "Skipping a layer" in result._repr_html_()


def test_a_tuple_setting_accepts_a_string_like_the_command_line(lm):
    one = ds.analyze(lm, "future-effects", TEXT, parts="layer")
    two = ds.analyze(lm, "future-effects", TEXT, parts="layer,mlp")
    assert tuple(one.settings["parts"]) == ("layer",)
    assert tuple(two.settings["parts"]) == ("layer", "mlp")
    with pytest.raises(DepthscopeError, match="parts must be among"):
        ds.analyze(lm, "future-effects", TEXT, parts="layers")


def test_api_result_equals_what_the_cli_saves(lm, tiny_model_dir, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text(TEXT + "\nThe neighbour of Brelo is Quist. 5 + 7 + 5 + 3 = 20.\n")
    out = tmp_path / "run"
    code = main(
        [
            "analyze",
            str(tiny_model_dir),
            "--data",
            f"file:{prompts}",
            "--analyses",
            "logit-lens",
            "--out",
            str(out),
            "--no-plots",
        ]
    )
    assert code == 0
    saved = Result.load(out / "results" / "logit-lens.json")
    api = ds.analyze(lm, "logit-lens", prompts.read_text().splitlines())
    assert api.to_json()["data"] == saved.data
    assert api.n_tokens == saved.n_tokens and api.settings == saved.settings


def test_examples_with_answers_and_prompt_sets(lm):
    examples = [ds.Example("5 + 7 + 5 + 3 + 1 + 7 =", " 28"), ds.Example("2 + 2 =", " 4")]
    result = ds.analyze(lm, "erasure", examples, baseline_n=2)
    assert result.n_prompts == 2 and result.data["answer_tokens"] == [
        len(lm.tokenizer(" 28", add_special_tokens=False)["input_ids"]),
        len(lm.tokenizer(" 4", add_special_tokens=False)["input_ids"]),
    ]
    by_set = ds.analyze(lm, "contributions", ds.PromptSet.from_examples(lm.tokenizer, examples))
    by_ids = ds.analyze(lm, "contributions", by_set_ids(lm, examples))
    assert by_set.to_json()["data"] == by_ids.to_json()["data"]


def by_set_ids(lm, examples):
    return [lm.tokenizer(e.text)["input_ids"] for e in examples]


def test_tidy_frame_has_one_row_per_number(lm):
    result = ds.analyze(lm, "current-effects", TEXT, parts=("layer",))
    frame = result.to_pandas()
    assert list(frame.columns) == list(TIDY_COLUMNS)
    n = lm.n_layers
    effect = frame[(frame.quantity == "effect") & frame.prompt.isna()]
    assert len(effect) == n * n and effect.layer2.notna().all()
    cell = effect[(effect.layer == 0) & (effect.layer2 == 1)].value.item()
    assert cell == pytest.approx(result.data["effect"][0][1].item())


def test_per_position_logit_lens(lm):
    result = ds.analyze(lm, "logit-lens", TEXT, top_tokens=3)
    table = result.data["top_tokens"][0]
    length = len(lm.tokenizer(TEXT)["input_ids"])
    assert len(table["tokens"]) == lm.n_layers + 1 and len(table["tokens"][0]) == length
    assert all(len(cell) == 3 for row in table["tokens"] for cell in row)
    probs = torch.as_tensor(table["probs"])
    assert torch.all(probs[..., :-1] >= probs[..., 1:])  # ranked
    final = lm.model(torch.tensor([lm.tokenizer(TEXT)["input_ids"]])).logits[0].softmax(-1)
    top = final.topk(3, dim=-1)
    assert torch.allclose(probs[-1], top.values, atol=1e-5)  # last row is the model's output
    assert any(key.startswith("tokens") for key in result.plot())


def test_wrap_a_model_in_memory_and_register_an_adapter():
    loaded = tiny_model("llama")
    ids = [[5, 9, 14, 3, 22, 7, 41, 8, 19, 2, 33, 12, 17, 6]]
    reference = ds.analyze(loaded, "contributions", ids)
    model = loaded.model
    model.config.model_type = "house-llama"  # a model type the table does not know ...
    by_class = ds.LoadedModel.from_model(model, None)  # ... but its class is the table's llama
    assert by_class.identity["load_check"]["adapter"] == {"family": "llama", "source": "table"}
    llama = next(a for a in ADAPTERS if a.family == "llama")
    ds.register_adapter(dataclasses.replace(llama, family="house", model_types=("house-llama",)))
    wrapped = ds.LoadedModel.from_model(model, None, name="house")  # registered beats the table
    assert wrapped.adapter.family == "house"
    assert wrapped.identity["load_check"]["adapter"] == {"family": "house", "source": "registered"}
    assert (
        ds.analyze(wrapped, "contributions", ids).to_json()["data"] == reference.to_json()["data"]
    )


def test_bad_api_input_is_one_clear_line(lm):
    with pytest.raises(DepthscopeError, match="has no setting"):
        ds.analyze(lm, "logit-lens", TEXT, kk=3)
    with pytest.raises(DepthscopeError, match="no prompts"):
        ds.analyze(lm, "logit-lens", [])
    with pytest.raises(DepthscopeError, match="unknown analysis"):
        ds.analyze(lm, "nope", TEXT)
    with pytest.raises(DepthscopeError, match="bad setting"):
        ds.analyze(lm, "logit-lens", TEXT, k=0)


def test_save_then_plot_and_export(lm, tmp_path, capsys):
    result = ds.analyze(lm, "contributions", [TEXT, "2 + 2 = 4"])
    path = result.save(tmp_path / "run")
    assert path == tmp_path / "run" / "results" / "contributions.json"
    assert (tmp_path / "run" / "figures" / "contributions_avg_cossims.png").exists()
    assert main(["plot", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "report.html").exists()
    assert main(["export", str(tmp_path / "run")]) == 0
    with open(tmp_path / "run" / "export" / "contributions.csv") as handle:
        rows = list(csv.DictReader(handle))
    rel = [r for r in rows if r["quantity"] == "rel_layer"]
    assert len(rel) == lm.n_layers
    assert float(rel[1]["value"]) == pytest.approx(result.data["rel_layer"][1].item(), rel=1e-6)
    assert main(["export", str(tmp_path / "run"), "--format", "parquet"]) == 0
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "run" / "export" / "contributions.parquet")
    assert len(frame) == len(rows)
    capsys.readouterr()
    assert main(["export", str(tmp_path / "nothing")]) == 2
    assert "no results" in capsys.readouterr().err
