"""Layer pruning: the skip path equals a model with the layers deleted, saved models reload equal,
criteria follow their definitions, and `depthscope prune` works end to end with clear errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from tiny_models import random_ids, tiny_model

from depthscope.core.progress import Progress
from depthscope.engine.batch import pad_batch
from depthscope.engine.interventions import SkipLayers
from depthscope.engine.replay import replay
from depthscope.engine.trace import trace
from depthscope.experiments.prune.evaluate import EvalData, evaluate, evaluate_naive
from depthscope.experiments.prune.surgery import pruned_copy, save_pruned

FAMILIES = ("llama", "gemma3", "gpt_neox", "gpt2", "qwen2", "gptj")
ATOL = 1e-5


def skip_logits(lm, ids: list[int], removed_sets: list[tuple[int, ...]]) -> torch.Tensor:
    """Logits ``[n, T, V]`` of the skip path (trace once, replay from the first removed layer)."""
    traced = trace(lm.adapter, pad_batch([ids], pad_id=0), sublayers=False)
    skipped = torch.zeros(len(removed_sets), lm.n_layers, dtype=torch.bool)
    for row, removed in enumerate(removed_sets):
        skipped[row, list(removed)] = True
    skip = SkipLayers(skipped)
    finals = replay(lm.adapter, traced, 0, skip.starts(), intervention=skip)
    return lm.adapter.logits(finals)


def removal_sets(n_layers: int) -> list[tuple[int, ...]]:
    """Single layers, a non-contiguous pair, a contiguous block, nothing."""
    return [(0,), (n_layers - 1,), (0, n_layers - 1), tuple(range(1, n_layers)), ()]


@pytest.mark.parametrize("family", FAMILIES)
def test_skip_path_equals_model_with_layers_deleted(family):
    lm = tiny_model(family)
    ids = random_ids([13])[0]
    sets = removal_sets(lm.n_layers)
    fast = skip_logits(lm, ids, sets)
    for row, removed in enumerate(sets):
        model = pruned_copy(lm, removed)
        assert len(list(model.parameters())) < len(list(lm.model.parameters())) or not removed
        naive = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
        assert torch.allclose(fast[row], naive, atol=ATOL, rtol=1e-5), (family, removed)
    full = lm.model(input_ids=torch.tensor([ids])).logits[0]
    assert not torch.allclose(fast[0], full, atol=1e-3)  # removing a layer changes something
    assert torch.allclose(fast[-1], full, atol=ATOL)  # removing nothing changes nothing


def test_skip_layers_starts_at_first_removed_layer():
    skipped = torch.tensor([[False, True, True], [False, False, False], [True, False, True]])
    assert SkipLayers(skipped).starts().tolist() == [1, 3, 0]


@pytest.mark.parametrize("family", ("llama", "gemma3", "gpt_neox", "qwen2"))
def test_saved_pruned_model_reloads_and_matches_skip_path(family, tmp_path):
    from transformers import AutoModelForCausalLM

    lm = tiny_model(family)
    removed = (1,) if lm.n_layers == 3 else (1, 2)
    folder = save_pruned(lm, removed, tmp_path / "pruned")
    reloaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert reloaded.config.num_hidden_layers == lm.n_layers - len(removed)
    original_types = getattr(lm.model.config, "layer_types", None)
    if original_types is not None:
        kept = [t for i, t in enumerate(original_types) if i not in removed]
        assert list(reloaded.config.layer_types) == kept
    ids = random_ids([12])[0]
    with torch.no_grad():
        logits = reloaded(input_ids=torch.tensor([ids])).logits[0]
    assert torch.allclose(logits, skip_logits(lm, ids, [removed])[0], atol=ATOL, rtol=1e-5)
    assert json.loads((folder / "config.json").read_text())["depthscope_pruning"][
        "removed_layers"
    ] == list(removed)


def test_gemma3_keeps_each_layers_attention_type(tmp_path):
    """Deleting a sliding layer must not shift the full-attention layers' types."""
    lm = tiny_model("gemma3")
    types = list(lm.model.config.layer_types)
    assert len(set(types)) == 2  # the tiny model mixes sliding and full attention
    model = pruned_copy(lm, (0,))
    assert list(model.config.layer_types) == types[1:]
    assert [layer.self_attn.layer_type for layer in model.model.layers] == types[1:]


def test_fast_evaluation_equals_naive_copies():
    lm = tiny_model("llama")
    text = EvalData("text", "text", random_ids([15, 9], seed=3))
    task_ids = random_ids([10, 12], seed=4)
    task = EvalData("task", "task", task_ids, [2, 3])
    sets = removal_sets(lm.n_layers)
    fast = evaluate(lm, sets, [text, task], batch_size=2)
    naive = evaluate_naive(lm, sets, [text, task])
    for f, n in zip(fast, naive, strict=True):
        for source in ("text", "task"):
            assert math.isclose(f[source].nll, n[source].nll, rel_tol=1e-5, abs_tol=1e-5)
            assert f[source].tokens == n[source].tokens
            assert f[source].correct == n[source].correct
    assert fast[0]["text"].tokens == 14 + 8 and fast[0]["task"].tokens == 5
    assert fast[0]["task"].examples == 2
    perplexities = {f["text"].metrics("text")["perplexity"] for f in fast}
    assert len(perplexities) == len(sets)  # every set changes the text's likelihood


# ------------------------------------------------------------------------------ criteria


def test_block_influence_and_angular_distance_follow_their_definitions():
    from depthscope.experiments.prune.criteria import angular_block, calibrate

    lm = tiny_model("llama")
    prompts = random_ids([9, 14, 6], seed=5)
    calibration = calibrate(lm, prompts)
    hidden = [
        torch.stack(
            lm.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        )
        for ids in prompts
    ]  # each [L+1, 1, T, d]; the last entry is after the final norm, so use the trace's rule:
    n = lm.n_layers
    residuals = [skip_residuals(lm, ids) for ids in prompts]  # [L+1, T, d] each
    cos_sum, tokens = np.zeros(n), 0
    for ids, states, resid in zip(prompts, hidden, residuals, strict=True):
        for layer in range(n):
            cos_sum[layer] += torch.cosine_similarity(resid[layer], resid[layer + 1], dim=-1).sum()
        tokens += len(ids)
        assert torch.allclose(resid[:n], states[:n, 0], atol=1e-5)
    assert np.allclose(calibration.block_influence, 1 - cos_sum / tokens, atol=1e-6)
    for size in (1, 2, 3):
        naive = []
        for start in range(n - size + 1):
            angles = []
            for resid in residuals:
                cos = torch.cosine_similarity(resid[start, -1], resid[start + size, -1], dim=0)
                angles.append(math.acos(max(-1.0, min(1.0, float(cos)))) / math.pi)
            naive.append(np.mean(angles))
        assert np.allclose(calibration.angular_distance(size), naive, atol=1e-6)
        best = int(np.argmin(naive))
        assert angular_block(calibration, size) == list(range(best, best + size))


def skip_residuals(lm, ids: list[int]) -> torch.Tensor:
    """Residual entering each layer and the last layer's output (before the final norm)."""
    states = {}
    handles = []
    for index, layer in enumerate(lm.adapter.layers):

        def pre(module, args, kwargs, index=index):
            states[index] = (args[0] if args else kwargs["hidden_states"])[0].clone()

        def post(module, args, output, index=index):
            states[index + 1] = (output[0] if isinstance(output, tuple) else output)[0].clone()

        handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(layer.register_forward_hook(post))
    with torch.no_grad():
        lm.model(input_ids=torch.tensor([ids]))
    for handle in handles:
        handle.remove()
    return torch.stack([states[i] for i in range(lm.n_layers + 1)])


def test_rankings_remove_the_lowest_scores_first():
    from depthscope.experiments.prune.criteria import random_ranking, ranking, removal_sets

    order = ranking([0.5, 0.1, 0.9, 0.1])
    assert order == [1, 3, 0, 2]  # ties keep layer order
    assert removal_sets("block-influence", 3, order=order, calibration=None) == {
        1: [1],
        2: [1, 3],
        3: [0, 1, 3],
    }
    assert sorted(random_ranking(6, seed=1)) == list(range(6))
    assert random_ranking(6, seed=1) == random_ranking(6, seed=1) != random_ranking(6, seed=2)


# ------------------------------------------------------------------------------ the command


def run_cli(capsys, *args) -> tuple[int, str, str]:
    from depthscope.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("depthscope: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


SMALL = ("--text-n", "2", "--max-tokens", "24", "--task-n", "1", "--calib-n", "2")


def test_prune_command_end_to_end(tiny_model_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from depthscope.models.loading.loader import load_model

    out, saved = tmp_path / "prune", tmp_path / "pruned"
    code, stdout, err = run_cli(
        capsys,
        "prune",
        tiny_model_dir,
        "--max-drop",
        "2",
        "--criteria",
        "future-effect,current-effect,block-influence,angular",
        *SMALL,
        "--random-seeds",
        "2",
        "--out",
        out,
        "--save",
        saved,
    )
    assert code == 0, err
    doc = json.loads((out / "prune.json").read_text())
    assert doc["n_layers"] == 3 and doc["max_drop"] == 2
    assert set(doc["metrics"]) == {
        "future-effect",
        "current-effect",
        "block-influence",
        "angular",
        "random",
    }
    for name, entry in doc["criteria"].items():
        assert [len(entry["removed"][k]) for k in ("1", "2")] == [1, 2], name
        if entry["ranking"] is not None:
            assert entry["removed"]["2"] == sorted(entry["ranking"][:2])
            assert entry["ranking"][0] == int(np.argmin(entry["scores"]))
    future = doc["criteria"]["future-effect"]
    assert (
        future["ranking"][0] == 2
    )  # skipping the last layer on past tokens changes no future token
    text, task = (d["source"] for d in doc["data"])
    clean = doc["metrics"]["angular"][text]["perplexity"][0]
    assert all(m[text]["perplexity"][0] == pytest.approx(clean) for m in doc["metrics"].values())
    seeds = doc["random"]["metrics_per_seed"].values()
    mean = np.mean([s[task]["accuracy"] for s in seeds], axis=0)
    assert np.allclose(doc["metrics"]["random"][task]["accuracy"], mean)
    best = doc["best"]
    values = {c: doc["metrics"][c][text]["perplexity"][2] for c in doc["criteria"]}
    assert best["value"] == pytest.approx(min(values.values()))
    assert (out / "figures" / "prune_metrics.png").read_bytes()[:4] == b"\x89PNG"
    assert "perplexity on builtin:text" in stdout
    # the best criterion is named only where its lead exceeds the paired interval
    named = f"best at k=2: {best['criterion']} ("
    assert (named in stdout) == best["clear"]
    if not best["clear"]:
        assert "no criterion leads beyond" in stdout and best["not_separated_from"]
    pairs = doc["differences"][text]["2"]
    assert len(pairs) == 4 * 3 // 2 and all(len(r["interval"]) == 2 for r in pairs)
    for row in pairs:  # a difference and its paired interval, from the same resampled texts
        low, high = row["interval"]
        assert row["real"] == (low > 0 or high < 0)
    low, high = doc["metrics"]["angular"][text]["perplexity_interval"][0]
    assert low <= clean <= high
    assert all(line in stdout for line in doc["table"])
    removed = doc["saved"]["removed"]
    assert removed == doc["criteria"][best["criterion"]]["removed"]["2"]
    reloaded = AutoModelForCausalLM.from_pretrained(saved)
    assert reloaded.config.num_hidden_layers == 1
    lm = load_model(str(tiny_model_dir), progress=False)
    ids = lm.tokenizer("5 + 7 =")["input_ids"]
    with torch.no_grad():
        logits = reloaded(input_ids=torch.tensor([ids])).logits[0]
    assert torch.allclose(logits, skip_logits(lm, ids, [tuple(removed)])[0], atol=ATOL)
    assert load_model(str(saved), progress=False).tokenizer("5 + 7 =")["input_ids"] == ids


def test_prune_uses_a_runs_future_effects(tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli(
        capsys,
        "analyze",
        tiny_model_dir,
        "-n",
        "2",
        "--analyses",
        "future-effects",
        "--out",
        run,
        "--no-plots",
    )
    assert code == 0, err
    code, _, err = run_cli(
        capsys,
        "prune",
        tiny_model_dir,
        "--run",
        run,
        "--max-drop",
        "1",
        "--criteria",
        "future-effect",
        *SMALL,
        "--random-seeds",
        "0",
        "--out",
        tmp_path / "p",
        "--no-plots",
    )
    assert code == 0, err
    doc = json.loads((tmp_path / "p" / "prune.json").read_text())
    saved = json.loads((run / "results" / "future-effects.json").read_text())
    assert doc["criteria"]["future-effect"]["scores"] == pytest.approx(
        saved["data"]["output_change"]
    )
    assert set(doc["metrics"]) == {"future-effect"}


def test_prune_bad_input_is_one_line(tiny_model_dir, tmp_path, capsys):
    not_a_run = tmp_path / "not-a-run"
    not_a_run.mkdir()
    empty_run = tmp_path / "empty-run"
    (empty_run / "results").mkdir(parents=True)
    cases = [
        (("--max-drop", "3"), "must be smaller than the model's 3 layers"),
        (("--max-drop", "0"), "--max-drop must be at least 1"),
        (("--criteria", "future-effect,magnitude"), "unknown criterion magnitude"),
        (("--run", not_a_run), "is not a run directory"),
        (("--run", empty_run), "has no future-effects result"),
        (("--text", "builtin:nope"), "unknown data source"),
        (("--text", "none", "--task", "none"), "nothing to validate on"),
    ]
    for extra, fragment in cases:
        code, _, err = run_cli(capsys, "prune", tiny_model_dir, *extra, "--out", tmp_path / "o")
        assert code == 2, (extra, err)
        assert fragment in one_error_line(err), (extra, err)


def test_sleb_removes_the_layer_whose_removal_costs_least_and_rescores():
    """SLEB by its definition: at each step, the layer whose removal (with those already removed)
    gives the lowest calibration NLL, measured here with pruned model copies (the naive path)."""
    from depthscope.experiments.prune.evaluate import EvalData, evaluate_naive
    from depthscope.experiments.prune.pipeline import sleb_removals
    from depthscope.experiments.prune.settings import PruneSettings

    lm = tiny_model("llama")
    calibration = random_ids([12, 9, 15], seed=4)
    settings = PruneSettings(max_drop=2, batch_size=3)
    sets, nll = sleb_removals(lm, settings, calibration, Progress())
    data = [EvalData("calibration", "text", calibration)]
    removed: list[int] = []
    for k in (1, 2):
        options = [
            tuple(sorted([*removed, layer])) for layer in range(lm.n_layers) if layer not in removed
        ]
        tallies = evaluate_naive(lm, options, data)
        scores = [t["calibration"].nll / t["calibration"].tokens for t in tallies]
        removed = list(options[int(np.argmin(scores))])
        assert sets[k] == removed and nll[k - 1] == pytest.approx(min(scores), rel=1e-4)


def test_future_then_current_breaks_near_ties_by_the_current_effect():
    from depthscope.experiments.prune.pipeline import _lexicographic

    future = [0.5, 0.1234, 0.1231, 0.9]  # layers 1 and 2 tie at two significant digits
    current = [0.2, 0.9, 0.3, 0.1]
    assert _lexicographic(future, current) == [2, 1, 0, 3]


def test_healing_lowers_the_loss_and_merges_into_plain_weights(tiny_model_dir, tmp_path):
    from depthscope.experiments.prune.heal import HealSettings, heal, heal_windows
    from depthscope.models.loading.loader import load_model

    text = tmp_path / "text.txt"
    text.write_text("\n".join(f"{i} plus {i + 1} makes {2 * i + 1}." for i in range(200)) + "\n")
    lm = load_model(str(tiny_model_dir), progress=False)
    settings = HealSettings(steps=30, data=f"file:{text}", seq_len=16, batch=4, lr=5e-3)
    model, losses = heal(lm, (1,), heal_windows(lm, settings), settings, Progress())
    assert len(losses) == 30 and np.mean(losses[-5:]) < np.mean(losses[:5])
    assert not any("lora" in name for name, _ in model.named_parameters())  # merged
    assert model.config.num_hidden_layers == lm.n_layers - 1
    ids = torch.tensor([lm.tokenizer("3 plus 4 makes")["input_ids"]])
    with torch.no_grad():
        healed = model(input_ids=ids).logits
        pruned = pruned_copy(lm, (1,))(input_ids=ids).logits
    assert not torch.allclose(healed, pruned)


def test_healing_never_trains_on_the_held_out_texts(tiny_model_dir):
    """The default heal data and held-out text are both builtin:text: the passages drawn for
    perplexity are left out of the training windows."""
    from depthscope.data.sources import load_examples
    from depthscope.experiments.prune.heal import HealSettings, heal_texts, heal_windows
    from depthscope.experiments.prune.pipeline import heal_settings
    from depthscope.experiments.prune.settings import PruneSettings
    from depthscope.models.loading.loader import load_model

    settings = heal_settings(PruneSettings(max_drop=1, text_n=20, heal="lora"))
    assert settings.held_out == [["builtin:text", 20]]
    held_out = {e.text for e in load_examples("builtin:text", 20, seed=settings.seed)}
    trained = heal_texts(settings)
    everything = heal_texts(HealSettings(data=settings.data, seed=settings.seed))
    assert not held_out & set(trained) and held_out <= set(everything)
    assert len(trained) < len(everything)
    lm = load_model(str(tiny_model_dir), progress=False)
    unrestricted = heal_windows(lm, HealSettings(data=settings.data, seed=settings.seed))
    assert len(heal_windows(lm, settings)) < len(unrestricted)


def test_prune_heals_every_candidate_and_resumes(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from transformers import AutoModelForCausalLM

    from depthscope.experiments.prune import heal as healing

    text = tmp_path / "text.txt"
    text.write_text("\n".join(f"{i} plus {i + 1} makes {2 * i + 1}." for i in range(200)) + "\n")
    out, saved = tmp_path / "prune", tmp_path / "healed"
    args = [
        "prune",
        tiny_model_dir,
        "--max-drop",
        "2",
        "--criteria",
        "block-influence,angular",
        *SMALL,
        "--random-seeds",
        "1",
        "--heal",
        "lora",
        "--heal-steps",
        "2",
        "--heal-data",
        f"file:{text}",
        "--out",
        out,
    ]
    code, stdout, err = run_cli(capsys, *args, "--save", saved)
    assert code == 0, err
    doc = json.loads((out / "prune.json").read_text())
    healed = doc["healed"]["metrics"]
    text_source = doc["data"][0]["source"]
    for name in ("block-influence", "angular"):
        assert len(healed[name][text_source]["perplexity"]) == 3
    assert "healed" in stdout and json.loads((out / "heal.json").read_text())["healed"]
    assert AutoModelForCausalLM.from_pretrained(saved).config.num_hidden_layers == 1
    calls = []
    monkeypatch.setattr(healing, "heal", lambda *a, **k: calls.append(a) or (None, []))
    assert run_cli(capsys, *args, "--out", out)[0] == 0
    assert calls == []  # every candidate was already healed: resumed from heal.json


TINY_TASK = """\
task: tiny_sums
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}} ="
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
"""


def test_lm_eval_runs_a_local_task_through_the_real_harness(tiny_model_dir, tmp_path, monkeypatch):
    """A multiple-choice task given as local files in the harness's own format, run offline on
    the unpruned and the pruned tiny model; a named task whose data cannot be reached is refused."""
    from depthscope.core.errors import DepthscopeError
    from depthscope.experiments.prune.harness import run_tasks
    from depthscope.models.loading.loader import load_model

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = [
        {"question": f"{a} + {b}", "choices": [str(a + b), str(a + b + 1)], "answer": 0}
        for a, b in ((1, 2), (3, 4), (2, 2), (5, 1))
    ]
    data = tmp_path / "tiny_sums.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tiny_sums.yaml").write_text(TINY_TASK.format(data=data))
    lm = load_model(str(tiny_model_dir), progress=False)
    scores = run_tasks(lm, lm.model, ["tiny_sums"], include=tasks)
    assert 0.0 <= scores["tiny_sums"]["acc,none"] <= 1.0
    pruned = run_tasks(lm, pruned_copy(lm, (1,)), ["tiny_sums"], include=tasks)
    assert set(pruned["tiny_sums"]) == set(scores["tiny_sums"])
    with pytest.raises(DepthscopeError, match="cannot be reached"):
        run_tasks(lm, lm.model, ["boolq"], include=tasks)


def test_iterative_block_influence_re_measures_the_pruned_model():
    """Round 1 is the one-shot Block Influence; round 2 is BI measured on the model without the
    first removed layer (a full forward pass of the pruned copy), not the one-shot ranking."""
    from depthscope.experiments.prune.criteria import calibrate, iterative_block_influence

    lm = tiny_model("llama")
    prompts = random_ids([12, 9], seed=5)
    sets, rounds = iterative_block_influence(lm, prompts, 2, Progress())
    one_shot = calibrate(lm, prompts).block_influence
    assert np.allclose(rounds[0], one_shot, atol=1e-5)
    first = int(np.argmin(one_shot))
    assert sets[1] == [first] and len(rounds[1]) == lm.n_layers - 1
    from depthscope.models.loading.loader import LoadedModel

    without = LoadedModel.from_model(pruned_copy(lm, [first]), None)
    assert np.allclose(rounds[1], calibrate(without, prompts).block_influence, atol=1e-5)
    assert not np.allclose(rounds[1], np.delete(one_shot, first), atol=1e-3)  # really re-measured
    assert sets[2][0] != sets[2][1]
