"""Model identity: content hashes (cached), fingerprints, load-time checks, context window, hub probe."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
import torch
from tiny_models import SAVED_CONTEXT

from depthscope.core.errors import DepthscopeError
from depthscope.models.loading import context, identity
from depthscope.models.loading import hub as hub_access
from depthscope.models.loading.checks import check_folder, safetensors_problem
from depthscope.models.loading.loader import load_model


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    """A private copy of the tiny model folder that a test may damage."""
    return shutil.copytree(tiny_model_dir, tmp_path / "model")


def _flip_last_byte(path) -> None:
    """Change the file's content, keep its size and restore its mtime (the sneakiest edit)."""
    info = os.stat(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert os.stat(path).st_size == info.st_size and os.stat(path).st_mtime_ns == info.st_mtime_ns


def test_file_hash_is_sha256_and_cached(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"weights" * 1000)
    assert identity.file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    calls = []
    real = identity._sha256
    monkeypatch.setattr(identity, "_sha256", lambda p: calls.append(p) or real(p))
    identity.file_sha256(path)
    assert calls == []  # unchanged file: answered from the cache
    _flip_last_byte(path)
    assert identity.file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(calls) == 1


def test_damaged_hash_cache_is_rebuilt(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"abc")
    (identity.cache_dir() / identity._HASH_CACHE).write_text("{not json")
    assert identity.file_sha256(path) == hashlib.sha256(b"abc").hexdigest()
    cached = json.loads((identity.cache_dir() / identity._HASH_CACHE).read_text())
    assert str(path.resolve()) in cached


def test_same_size_weight_edit_changes_fingerprint(model_copy):
    before = load_model(str(model_copy), progress=False)
    _flip_last_byte(model_copy / "model.safetensors")
    after = load_model(str(model_copy), progress=False)
    assert before.fingerprint != after.fingerprint
    assert (
        before.identity["files_sha256"]["model.safetensors"]
        != after.identity["files_sha256"]["model.safetensors"]
    )
    assert (
        before.identity["files_sha256"]["config.json"]
        == after.identity["files_sha256"]["config.json"]
    )


def test_fingerprint_covers_what_changes_numbers_only(model_copy, tmp_path):
    files = identity.folder_sha256(model_copy)
    assert set(files) >= {"config.json", "model.safetensors", "tokenizer.json"}
    base = {
        "name": "m",
        "source": f"folder:{model_copy}",
        "path": str(model_copy),
        "files_sha256": files,
        "dtype": "float32",
        "family": "llama",
        "device": "cpu",
        "load_seconds": 1.0,
    }
    fp = identity.model_fingerprint(base)
    moved = {**base, "name": "n", "source": "folder:/elsewhere", "path": "/elsewhere"}
    assert identity.model_fingerprint({**moved, "device": "cuda:0", "load_seconds": 9}) == fp
    for key, value in [("dtype", "bfloat16"), ("adapter", "custom"), ("revision", "abc")]:
        assert identity.model_fingerprint({**base, key: value}) != fp, key
    config = json.loads((model_copy / "config.json").read_text())
    config["rms_norm_eps"] = config["rms_norm_eps"] * 10
    (model_copy / "config.json").write_text(json.dumps(config))
    assert (
        identity.model_fingerprint({**base, "files_sha256": identity.folder_sha256(model_copy)})
        != fp
    )
    hub = {"source": "hf:org/m", "revision": "a" * 40, "dtype": "float32", "family": "llama"}
    assert identity.model_fingerprint(hub) != identity.model_fingerprint(
        {**hub, "revision": "b" * 40}
    )
    assert identity.model_fingerprint(hub) != identity.model_fingerprint(
        {**hub, "source": "hf:org/n"}
    )


def test_fingerprint_known_before_the_weights_load(model_copy, monkeypatch):
    """A run decides what is up to date from inspect_model, without loading any weights."""
    from depthscope.models.loading import loader as loading

    info = loading.inspect_model(str(model_copy), dtype="float32")
    assert info.fingerprint == load_model(str(model_copy)).fingerprint
    assert info.vocab_size == 183 and info.context_limit == SAVED_CONTEXT
    bf16 = loading.inspect_model(str(model_copy), dtype="bfloat16")
    assert bf16.fingerprint != info.fingerprint
    monkeypatch.setattr(loading, "_load_weights", lambda *a: pytest.fail("weights were read"))
    loading.inspect_model(str(model_copy))


def test_loaded_identity_records_hashes_and_context(model_copy):
    lm = load_model(str(model_copy), progress=False)
    assert lm.identity["fingerprint"] == identity.model_fingerprint(lm.identity) == lm.fingerprint
    assert (
        lm.identity["files_sha256"]["model.safetensors"]
        == hashlib.sha256((model_copy / "model.safetensors").read_bytes()).hexdigest()
    )
    assert lm.identity["context_limit"] == lm.context_limit == SAVED_CONTEXT


# ---------------------------------------------------------------- load-time refusals


def _damage(folder, how: str) -> None:
    weights = folder / "model.safetensors"
    if how == "truncated":
        with weights.open("r+b") as handle:
            handle.truncate(weights.stat().st_size // 2)
    elif how == "garbage":
        weights.write_bytes(b"\x00" * 64)
    elif how == "trailing":
        with weights.open("ab") as handle:
            handle.write(b"junk")
    elif how == "empty-config":
        (folder / "config.json").write_text("")
    elif how == "corrupt-config":
        (folder / "config.json").write_text('{"model_type": "llama",')
    elif how == "no-tokenizer":
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (folder / name).unlink()
    elif how == "no-weights":
        weights.unlink()


@pytest.mark.parametrize(
    ("how", "fragments"),
    [
        ("truncated", ("model.safetensors", "truncated")),
        ("garbage", ("model.safetensors", "damaged")),
        ("trailing", ("model.safetensors", "trailing")),
        ("empty-config", ("config.json", "empty")),
        ("corrupt-config", ("config.json", "not valid JSON")),
        ("no-tokenizer", ("no tokenizer files", "save_pretrained")),
        ("no-weights", ("no weights",)),
    ],
)
def test_broken_folder_refused_before_loading(model_copy, how, fragments):
    _damage(model_copy, how)
    with pytest.raises(DepthscopeError) as caught:
        check_folder(model_copy)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_intact_folder_passes_checks(model_copy):
    assert check_folder(model_copy)["model_type"] == "llama"
    assert safetensors_problem(model_copy / "model.safetensors") is None


def test_missing_shard_named(model_copy):
    (model_copy / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}})
    )
    with pytest.raises(DepthscopeError, match="model-00001-of-00002.safetensors"):
        check_folder(model_copy)


def test_tokenizer_larger_than_embedding_refused(model_copy):
    config = json.loads((model_copy / "config.json").read_text())
    config["vocab_size"] = 100  # the tokenizer has 183 tokens
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(DepthscopeError, match="183 tokens but the model's embedding only 100"):
        load_model(str(model_copy), progress=False)


def test_weights_not_matching_config_refused(model_copy):
    config = json.loads((model_copy / "config.json").read_text())
    config["num_hidden_layers"] = 5  # layers 3 and 4 would be randomly initialised
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(DepthscopeError, match="would be random"):
        load_model(str(model_copy), progress=False)


def test_a_file_is_not_a_model_folder(model_copy):
    with pytest.raises(DepthscopeError, match="is a file"):
        load_model(str(model_copy / "config.json"), progress=False)


# ---------------------------------------------------------------- context window


def test_context_limit_of_families():
    from tiny_models import tiny_model

    assert context.context_limit(tiny_model("llama")) == 128
    assert context.context_limit(tiny_model("gpt2")) == 128  # n_positions / n_ctx
    assert context.context_limit(tiny_model("gemma2")) == 128  # sliding window 4 is no limit
    assert context.context_limit(tiny_model("gpt_neox")) == 2048  # the config's default
    assert context.context_limit(object()) is None


def test_check_prompt_lengths():
    assert context.check_prompt_lengths([5, 128], 128) is None
    assert context.check_prompt_lengths([10**6], None) is None
    with pytest.raises(DepthscopeError) as caught:
        context.check_prompt_lengths([5, 200, 300], 128)
    assert "2 of 3 prompts" in str(caught.value) and "prompt 2: 200" in str(caught.value)
    notice = context.check_prompt_lengths([5, 200], 128, truncate=True)
    assert "1 of 2" in notice and "first 128 tokens" in notice


# ---------------------------------------------------------------- the hub


def test_offline_env_means_no_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_access.offline_requested() and not hub_access.hub_available()


def test_nearest_builtin_for_typos():
    assert hub_access.nearest_builtin("smollm2-999m") == "smollm2-135m"
    assert hub_access.nearest_builtin("gemma3-27Om") == "gemma3-270m"
    assert hub_access.nearest_builtin("meta-llama/Llama-3.1-8B") is None


def test_models_in_memory_are_told_apart_by_their_tensors():
    from tiny_models import tiny_model

    from depthscope.models.loading.loader import LoadedModel

    a = LoadedModel.from_model(tiny_model("llama", seed=0).model, None, name="m")
    b = LoadedModel.from_model(tiny_model("llama", seed=1).model, None, name="m")
    again = LoadedModel.from_model(tiny_model("llama", seed=0).model, None, name="other")
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == again.fingerprint  # same numbers, same model
    with torch.no_grad():
        next(a.model.parameters()).view(-1)[0] += 1.0
    changed = LoadedModel.from_model(a.model, None, name="m")
    assert changed.fingerprint != again.fingerprint
