"""Bad-input catalogue, part 1: the MODEL argument (issue 11).

Broken folders, wrong architectures, unreachable hubs, typos, mismatched tokenizers and planted
pickles: each is one ``depthscope: error:`` line with the fix, exit 2, nothing written.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import time

import pytest
import torch
import transformers as tf
from bad_input_support import (
    CHEAP,
    assert_error,
    cli_env,
    copy_model,
    result_doc,
    run_cli,
    snapshot,
)

from depthscope.core import hub_access


@pytest.fixture
def model(tiny_model_dir, tmp_path):
    """A private copy of the tiny model that the case may break."""
    return copy_model(tiny_model_dir, tmp_path / "model")


def refuse(capsys, tmp_path, spec, *fragments, extra=()):
    """Run ``analyze SPEC``, expect one error line, and no run directory created."""
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "analyze", spec, "--out", out, *CHEAP, *extra)
    line = assert_error(code, stdout, err, *fragments)
    assert not out.exists(), "a refused model must not create the run directory"
    return line


def test_missing_model_path(capsys, tmp_path):
    refuse(capsys, tmp_path, str(tmp_path / "nope"), "does not exist")


def test_model_path_is_a_file(capsys, tmp_path, model):
    refuse(capsys, tmp_path, str(model / "config.json"), "is a file")


def test_empty_model_folder(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    refuse(capsys, tmp_path, str(tmp_path / "empty"), "no config.json")


def test_empty_config(capsys, tmp_path, model):
    (model / "config.json").write_text("")
    refuse(capsys, tmp_path, str(model), "config.json", "empty")


def test_corrupt_config(capsys, tmp_path, model):
    (model / "config.json").write_text('{"model_type": "llama", "hidden_size": ')
    refuse(capsys, tmp_path, str(model), "config.json", "not valid json")


def test_config_without_model_type(capsys, tmp_path, model):
    (model / "config.json").write_text('{"hidden_size": 32}')
    refuse(capsys, tmp_path, str(model), "model_type")


def test_bert_is_not_causal(capsys, tmp_path, tiny_model_dir):
    config = tf.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    tf.BertModel(config).save_pretrained(tmp_path / "bert")
    tf.AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "bert")
    refuse(capsys, tmp_path, str(tmp_path / "bert"), "not a causal")


def test_encoder_decoder_is_not_decoder_only(capsys, tmp_path, tiny_model_dir):
    config = tf.T5Config(
        vocab_size=200,
        d_model=16,
        d_kv=4,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        decoder_start_token_id=0,
    )
    tf.T5ForConditionalGeneration(config).save_pretrained(tmp_path / "t5")
    tf.AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "t5")
    refuse(capsys, tmp_path, str(tmp_path / "t5"), "not a causal")


def test_unsupported_architecture(capsys, tmp_path, tiny_model_dir):
    config = tf.BloomConfig(vocab_size=183, hidden_size=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    tf.BloomForCausalLM(config).save_pretrained(tmp_path / "bloom")
    tf.AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "bloom")
    refuse(capsys, tmp_path, str(tmp_path / "bloom"), "unsupported architecture", "llama")


def test_truncated_safetensors_named(capsys, tmp_path, model):
    weights = model / "model.safetensors"
    with weights.open("r+b") as handle:
        handle.truncate(weights.stat().st_size - 100)
    refuse(capsys, tmp_path, str(model), str(weights), "truncated")


def test_garbage_safetensors_named(capsys, tmp_path, model):
    (model / "model.safetensors").write_bytes(b"<html>404 not found</html>")
    refuse(capsys, tmp_path, str(model), "model.safetensors", "damaged")


def test_missing_weights(capsys, tmp_path, model):
    (model / "model.safetensors").unlink()
    refuse(capsys, tmp_path, str(model), "no weights")


def test_missing_weight_shard(capsys, tmp_path, model):
    index = {"metadata": {}, "weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}
    (model / "model.safetensors.index.json").write_text(json.dumps(index))
    refuse(capsys, tmp_path, str(model), "model-00002-of-00002.safetensors")


def test_missing_tokenizer_files(capsys, tmp_path, model):
    (model / "tokenizer.json").unlink()
    (model / "tokenizer_config.json").unlink()
    refuse(capsys, tmp_path, str(model), "tokenizer", "save_pretrained")


def test_tokenizer_bigger_than_embedding(capsys, tmp_path, model):
    config = json.loads((model / "config.json").read_text())
    config["vocab_size"] = 64  # the tokenizer emits ids up to 182: an IndexError in the embedding
    (model / "config.json").write_text(json.dumps(config))
    refuse(capsys, tmp_path, str(model), "tokenizer", "embedding")


def test_config_with_more_layers_than_weights(capsys, tmp_path, model):
    config = json.loads((model / "config.json").read_text())
    config["num_hidden_layers"] = 4  # layer 3 would be randomly initialised: a wrong result
    (model / "config.json").write_text(json.dumps(config))
    refuse(capsys, tmp_path, str(model), "random")


def test_config_with_other_shapes_than_weights(capsys, tmp_path, model):
    config = json.loads((model / "config.json").read_text())
    config["intermediate_size"] = 48
    (model / "config.json").write_text(json.dumps(config))
    refuse(capsys, tmp_path, str(model), "config.json")


class _Planted:
    """Unpickling this creates a file: proof that code from a data file ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_weights_never_execute(capsys, tmp_path, model):
    sentinel = tmp_path / "PWNED"
    (model / "model.safetensors").unlink()
    with (model / "pytorch_model.bin").open("wb") as handle:
        pickle.dump({"model.embed_tokens.weight": _Planted(sentinel)}, handle)
    refuse(capsys, tmp_path, str(model), "pickle")
    assert not sentinel.exists(), "a planted pickle in the model folder ran code"


def test_missing_gguf(capsys, tmp_path):
    refuse(capsys, tmp_path, str(tmp_path / "model.gguf"), "does not exist")


def test_garbage_gguf(capsys, tmp_path):
    (tmp_path / "fake.gguf").write_bytes(b"GGUF\x03\x00\x00\x00 cut short")
    refuse(capsys, tmp_path, str(tmp_path / "fake.gguf"), "gguf")


def test_hub_id_offline(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    refuse(capsys, tmp_path, "nobody/no-such-model-xyz", "HF_HUB_OFFLINE", "local folder")


@pytest.fixture
def unreachable_hub(monkeypatch):
    """A hub endpoint whose name does not resolve: what a machine without network sees."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    hub_access._reachable.cache_clear()
    yield
    hub_access._reachable.cache_clear()


def test_unreachable_hub_answers_in_seconds(capsys, tmp_path, unreachable_hub):
    started = time.monotonic()
    refuse(capsys, tmp_path, "nobody/no-such-model-xyz", "unreachable", "local folder")
    assert time.monotonic() - started < 10  # not 10 retries over 28 s


def test_builtin_typo_suggests_the_name(capsys, tmp_path, unreachable_hub):
    refuse(capsys, tmp_path, "smollm2-999m", "did you mean", "smollm2-135m")


def test_model_checked_before_out_is_written(capsys, tmp_path):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    before = snapshot(out)
    code, stdout, err = run_cli(capsys, "analyze", str(tmp_path / "nope"), "--out", out, *CHEAP)
    assert_error(code, stdout, err, "does not exist")
    assert snapshot(out) == before


def test_cached_hub_model_loads_without_network(tiny_model_dir, tmp_path):
    """An unreachable hub is no reason to refuse a model already in the Hugging Face cache."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-llama"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = cli_env()
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TRANSFORMERS_OFFLINE", None)
    env.update(HF_HUB_CACHE=str(tmp_path / "hub"), HF_ENDPOINT="https://hub.invalid")
    out = tmp_path / "run"
    main = "import sys; from depthscope.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", main, "analyze", "someone/tiny-llama", "--out", str(out), *CHEAP],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    model = result_doc(out)["model"]
    assert model["source"] == "hf:someone/tiny-llama" and model["revision"] == commit
